// Small shared pieces: status badges, progress, error notes, and a data-loading hook.
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import { ApiError } from "../api";
import { label } from "../format";
import type { Job } from "../types";

export function StatusBadge({ status }: { status: string }) {
  return <span class={`badge badge-${status}`}>{label(status)}</span>;
}

export function JobProgress({ job }: { job: Job }) {
  const step = job.progress?.step ?? 0;
  const total = job.progress?.total_steps ?? null;
  if (!total) return <span class="muted">{step ? `step ${step}` : "—"}</span>;
  return (
    <span class="progress">
      <progress max={total} value={step} aria-label={`Step ${step} of ${total}`} />
      <span>
        {step}/{total}
      </span>
    </span>
  );
}

/** A failed call, with the API's own message (and the field it names). */
export function ErrorNote({ error, children }: { error: unknown; children?: ComponentChildren }) {
  if (!error) return null;
  const text = error instanceof Error ? error.message : String(error);
  const param = error instanceof ApiError && error.param ? ` (${error.param})` : "";
  return (
    <div class="error-note" role="alert">
      {children}
      {text}
      {param}
    </div>
  );
}

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => Promise<void>;
}

/** Run `load` now and whenever `deps` change; `reload` runs it again (keeping the old data). */
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const run = useCallback(async (signal?: AbortSignal) => {
    setLoading(true);
    try {
      const value = await load(signal ?? new AbortController().signal);
      if (!signal?.aborted) {
        setData(value);
        setError(null);
      }
    } catch (e) {
      if (!signal?.aborted && !(e instanceof DOMException && e.name === "AbortError")) setError(e);
    } finally {
      if (!signal?.aborted) setLoading(false);
    }
  }, deps);
  useEffect(() => {
    const controller = new AbortController();
    void run(controller.signal);
    return () => controller.abort();
  }, [run]);
  return { data, error, loading, reload: run };
}

/** A table that scrolls sideways on a narrow screen (focusable, so the keyboard can scroll it). */
export function TableBox({ label: name, children }: { label: string; children: ComponentChildren }) {
  return (
    <div class="table-box" role="region" aria-label={name} tabIndex={0}>
      {children}
    </div>
  );
}
