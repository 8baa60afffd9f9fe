// One job: facts, controls, live curves from the event stream, checkpoints, options, events.
import { useEffect, useRef, useState } from "preact/hooks";
import type { Api } from "../api";
import { ErrorNote, JobProgress, StatusBadge, useLoad } from "../components/bits";
import { Checkpoints } from "../components/Checkpoints";
import { EventsLog } from "../components/EventsLog";
import { JobCharts, StabilityChart } from "../components/JobCharts";
import { OptionsList } from "../components/OptionsList";
import { eta, num, when } from "../format";
import { useJobStream } from "../jobStream";
import { href } from "../router";
import { TERMINAL, type ApiList, type Checkpoint, type Job } from "../types";

const POLL_MS = 5000;

type Action = "pause" | "resume" | "cancel";
const ACTIONS: Record<Action, { label: string; from: string[] }> = {
  pause: { label: "Pause", from: ["queued", "running"] },
  resume: { label: "Resume", from: ["paused"] },
  cancel: { label: "Cancel", from: ["validating_files", "queued", "running", "paused"] },
};

export function JobPage({ api, id }: { api: Api; id: string }) {
  const path = `/fine_tuning/jobs/${encodeURIComponent(id)}`;
  const job = useLoad((signal) => api.get<Job>(path, signal), [api, id]);
  const checkpoints = useLoad(
    (signal) => api.get<ApiList<Checkpoint>>(`${path}/checkpoints?limit=100`, signal),
    [api, id],
  );
  const pending = useRef(0);
  const refresh = () => {
    clearTimeout(pending.current);
    pending.current = window.setTimeout(() => {
      void job.reload();
      void checkpoints.reload();
    }, 250);
  };
  const stream = useJobStream(api, id, refresh);
  const [note, setNote] = useState("");
  const [actionError, setActionError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const current = job.data;
  const live = current !== undefined && !TERMINAL.has(current.status);
  useEffect(() => {
    if (!live) return undefined;
    const timer = setInterval(() => void job.reload(), POLL_MS);
    return () => clearInterval(timer);
  }, [live]);

  const run = async (what: () => Promise<string>) => {
    setBusy(true);
    setActionError(null);
    setNote("");
    try {
      setNote(await what());
    } catch (e) {
      setActionError(e);
    } finally {
      setBusy(false);
    }
  };
  const act = (action: Action) =>
    run(async () => {
      const updated = await api.post<Job>(`${path}/${action}`);
      refresh();
      return `${ACTIONS[action].label} requested: the job is ${updated.status.replaceAll("_", " ")}.`;
    });
  const download = (query: string, name: string) =>
    run(async () => `Downloaded ${await api.download(`${path}/adapter${query}`, name)}.`);

  if (!current) {
    return (
      <section>
        <h1 id="page-title" tabIndex={-1}>
          Job <code>{id}</code>
        </h1>
        {job.error ? <ErrorNote error={job.error} /> : <p>Loading…</p>}
      </section>
    );
  }
  const { series } = stream;
  const step = series.length ? series.steps[series.length - 1] : (current.progress?.step ?? 0);
  const total = series.totalSteps ?? current.progress?.total_steps ?? null;
  const shown: Job = {
    ...current,
    progress: { step, total_steps: total, epoch: current.progress?.epoch ?? null },
  };
  const succeeded = current.status === "succeeded";

  return (
    <section aria-labelledby="page-title">
      <p class="crumbs">
        <a href={href("/jobs")}>Jobs</a> /
      </p>
      <div class="page-head">
        <h1 id="page-title" tabIndex={-1}>
          Job <code>{current.id}</code>
        </h1>
        <span role="status" aria-live="polite">
          <StatusBadge status={current.status} />
        </span>
      </div>
      {current.error && (
        <div class="error-note" role="alert">
          <strong>{current.error.code}</strong>: {current.error.message}
          {current.error.param && ` (${current.error.param})`}
        </div>
      )}
      <div class="toolbar" role="group" aria-label="Job actions">
        {(Object.keys(ACTIONS) as Action[]).map((action) => (
          <button
            type="button"
            disabled={busy || !ACTIONS[action].from.includes(current.status)}
            onClick={() => act(action)}
          >
            {ACTIONS[action].label}
          </button>
        ))}
        <button
          type="button"
          class="primary"
          disabled={busy || !succeeded}
          onClick={() => download("", `${id}-adapter.tar.gz`)}
        >
          Download adapter
        </button>
        <button
          type="button"
          disabled={busy || !succeeded}
          onClick={() => download("?format=merged", `${id}-merged.tar.gz`)}
        >
          Export merged model
        </button>
        {current.fine_tuned_model && (
          <a
            class="button"
            href={href(
              `/playground?model=${encodeURIComponent(current.fine_tuned_model)}&compare=${encodeURIComponent(current.model)}`,
            )}
          >
            Try in playground
          </a>
        )}
      </div>
      <p class="action-note" role="status" aria-live="polite">
        {note}
      </p>
      <ErrorNote error={actionError} />

      <dl class="stats">
        <div>
          <dt>Progress</dt>
          <dd>
            <JobProgress job={shown} />
          </dd>
        </div>
        <div>
          <dt>ETA</dt>
          <dd>{eta(current.estimated_finish, current.status)}</dd>
        </div>
        <div>
          <dt>Training loss</dt>
          <dd>{num(series.latest.train_loss)}</dd>
        </div>
        <div>
          <dt>Validation loss</dt>
          <dd>{num(series.latest.valid_loss)}</dd>
        </div>
        <div>
          <dt>Learning rate</dt>
          <dd>{num(series.latest.learning_rate, 3)}</dd>
        </div>
        <div>
          <dt>Tokens/s</dt>
          <dd>{num(series.latest.tokens_per_second, 4)}</dd>
        </div>
        <div>
          <dt>Trained tokens</dt>
          <dd>{current.trained_tokens ?? "—"}</dd>
        </div>
      </dl>

      <h2>Curves</h2>
      <p class="muted" aria-live="polite">
        {
          {
            connecting: "Connecting to the event stream…",
            live: "Following the event stream live.",
            ended: "The job has ended; all its events are shown.",
            retrying: "The event stream was interrupted; reconnecting…",
            failed: "The event stream is unavailable.",
          }[stream.state]
        }
      </p>
      <ErrorNote error={stream.error} />
      <JobCharts series={series} version={stream.version} />

      <h2>Outlier stability</h2>
      {current.outlier_stability?.length ? (
        <StabilityChart points={current.outlier_stability} />
      ) : (
        <p class="muted">No stability measurements for this job (yet).</p>
      )}
      {current.outlier_map && (
        <p>
          Outlier map:{" "}
          <a href={href(`/maps/${current.outlier_map}`)}>
            <code>{current.outlier_map}</code>
          </a>
        </p>
      )}

      <h2>Checkpoints</h2>
      <ErrorNote error={checkpoints.error} />
      <Checkpoints
        items={checkpoints.data?.data ?? []}
        disabled={busy}
        onDownload={(ckpt) =>
          download(`?step=${ckpt.step_number}`, `${id}-step-${ckpt.step_number}-adapter.tar.gz`)
        }
      />

      <h2>Details</h2>
      <OptionsList job={current} created={when(current.created_at)} finished={when(current.finished_at)} />

      <h2>Events</h2>
      <EventsLog events={stream.events} version={stream.version} />
    </section>
  );
}
