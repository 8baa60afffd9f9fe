// The job's events, newest first; metrics events (one per step) only when asked for.
import { useMemo, useState } from "preact/hooks";
import { clock } from "../format";
import type { JobEvent } from "../types";

const SHOWN = 200;

export function EventsLog({ events, version }: { events: JobEvent[]; version: number }) {
  const [metrics, setMetrics] = useState(false);
  const [all, setAll] = useState(false);
  const picked = useMemo(
    () => events.filter((e) => metrics || e.type !== "metrics").reverse(),
    [events, version, metrics],
  );
  const rows = all ? picked : picked.slice(0, SHOWN);
  return (
    <div class="events">
      <div class="toolbar">
        <label class="check">
          <input type="checkbox" checked={metrics} onChange={(e) => setMetrics(e.currentTarget.checked)} />
          Show metrics events
        </label>
        <span class="muted">
          {picked.length} of {events.length} events
        </span>
      </div>
      <ol class="event-list" aria-label="Events, newest first">
        {rows.map((e) => (
          <li key={e.id} class={`level-${e.level}`}>
            <time dateTime={new Date(e.created_at * 1000).toISOString()}>{clock(e.created_at)}</time>
            <span class="level">{e.level}</span>
            <span class="message">{e.message}</span>
          </li>
        ))}
      </ol>
      {!all && picked.length > SHOWN && (
        <button type="button" onClick={() => setAll(true)}>
          Show all {picked.length} events
        </button>
      )}
    </div>
  );
}
