// A job's events from `GET …/events?stream=true`: history then live, batched into renders.
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, type Api } from "./api";
import { MetricsSeries } from "./metrics";
import type { JobEvent } from "./types";

export type StreamState = "connecting" | "live" | "ended" | "retrying" | "failed";

export interface JobStream {
  /** Oldest first. */
  events: JobEvent[];
  series: MetricsSeries;
  /** Bumped after each batch of events (at most every FLUSH_MS). */
  version: number;
  state: StreamState;
  error: unknown;
}

const FLUSH_MS = 100;
const RETRY_MS = 2000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Follow a job's event stream; `onMessage` runs after message events and when the stream ends. */
export function useJobStream(api: Api, jobId: string, onMessage: () => void): JobStream {
  const store = useRef({ events: [] as JobEvent[], series: new MetricsSeries() });
  const callback = useRef(onMessage);
  callback.current = onMessage;
  const [version, setVersion] = useState(0);
  const [state, setState] = useState<StreamState>("connecting");
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    store.current = { events: [], series: new MetricsSeries() };
    const controller = new AbortController();
    let timer = 0;
    const flush = () => {
      timer = 0;
      setVersion((v) => v + 1);
    };
    const receive = (data: string) => {
      const event = JSON.parse(data) as JobEvent;
      store.current.events.push(event);
      store.current.series.add(event);
      if (event.type !== "metrics") callback.current();
      if (!timer) timer = window.setTimeout(flush, FLUSH_MS);
    };
    const follow = async () => {
      for (;;) {
        const last = store.current.events.at(-1)?.id;
        const after = last ? `&after=${encodeURIComponent(last)}` : "";
        try {
          setState("live");
          await api.stream(
            `/fine_tuning/jobs/${encodeURIComponent(jobId)}/events?stream=true${after}`,
            receive,
            {
              signal: controller.signal,
            },
          );
          setState("ended");
          callback.current();
          return;
        } catch (e) {
          if (controller.signal.aborted) return;
          if (e instanceof ApiError && e.status >= 400 && e.status < 500) {
            setError(e);
            setState("failed");
            return;
          }
          setState("retrying");
          await sleep(RETRY_MS);
        }
      }
    };
    void follow();
    return () => {
      controller.abort();
      clearTimeout(timer);
    };
  }, [api, jobId]);

  return { ...store.current, version, state, error };
}
