// Jobs: newest first, paged with `after`/`limit`, filtered by status and text; live while running.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { Api } from "../api";
import { ErrorNote, JobProgress, StatusBadge, TableBox } from "../components/bits";
import { eta, label, when } from "../format";
import { href, setQuery } from "../router";
import { JOB_STATUSES, TERMINAL, type ApiList, type Job } from "../types";

const PAGE = 20;
const LIVE_MS = 3000;
const IDLE_MS = 15000;

/** Jobs whose id, model, fine-tuned model or suffix contain `text`, with `status` (or any). */
export function matches(job: Job, status: string, text: string): boolean {
  if (status && job.status !== status) return false;
  const needle = text.trim().toLowerCase();
  if (!needle) return true;
  return [job.id, job.model, job.fine_tuned_model, job.suffix].some((field) =>
    field?.toLowerCase().includes(needle),
  );
}

/** `fresh` (the newest page) merged into `known`: updated in place, new ones on top. */
export function merge(known: Job[], fresh: Job[]): Job[] {
  const byId = new Map(fresh.map((j) => [j.id, j]));
  const kept = known.map((j) => byId.get(j.id) ?? j);
  const seen = new Set(known.map((j) => j.id));
  return [...fresh.filter((j) => !seen.has(j.id)), ...kept];
}

export function JobsList({ api, query }: { api: Api; query: URLSearchParams }) {
  const [jobs, setJobs] = useState<Job[]>([]);
  const [hasMore, setHasMore] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const [status, setStatus] = useState(query.get("status") ?? "");
  const [text, setText] = useState(query.get("q") ?? "");

  const pages = useRef(1);
  const live = jobs.some((j) => !TERMINAL.has(j.status));
  const liveRef = useRef(live);
  liveRef.current = live;

  const fetchPage = (after?: string) =>
    api.get<ApiList<Job>>(
      `/fine_tuning/jobs?limit=${PAGE}${after ? `&after=${encodeURIComponent(after)}` : ""}`,
    );

  useEffect(() => {
    let stop = false;
    let timer = 0;
    const refresh = async () => {
      try {
        const page = await fetchPage();
        if (stop) return;
        setJobs((known) => merge(known, page.data));
        if (pages.current === 1) setHasMore(page.has_more);
        setError(null);
      } catch (e) {
        if (!stop) setError(e);
      } finally {
        if (!stop) {
          setLoading(false);
          timer = window.setTimeout(refresh, liveRef.current ? LIVE_MS : IDLE_MS);
        }
      }
    };
    void refresh();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, [api]);

  const loadMore = async () => {
    try {
      const page = await fetchPage(jobs[jobs.length - 1]?.id);
      pages.current += 1;
      setJobs((known) => {
        const seen = new Set(known.map((j) => j.id));
        return [...known, ...page.data.filter((j) => !seen.has(j.id))];
      });
      setHasMore(page.has_more);
    } catch (e) {
      setError(e);
    }
  };

  useEffect(() => {
    const next = new URLSearchParams();
    if (status) next.set("status", status);
    if (text) next.set("q", text);
    setQuery(next);
  }, [status, text]);

  const shown = useMemo(() => jobs.filter((j) => matches(j, status, text)), [jobs, status, text]);

  return (
    <section aria-labelledby="page-title">
      <div class="page-head">
        <h1 id="page-title" tabIndex={-1}>
          Fine-tuning jobs
        </h1>
        <a class="button primary" href={href("/jobs/new")}>
          New job
        </a>
      </div>
      <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>
          Status
          <select value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
            <option value="">Any</option>
            {JOB_STATUSES.map((s) => (
              <option value={s}>{label(s)}</option>
            ))}
          </select>
        </label>
        <label>
          Search
          <input
            type="search"
            value={text}
            placeholder="id, model, suffix"
            onInput={(e) => setText(e.currentTarget.value)}
          />
        </label>
      </form>
      <ErrorNote error={error} />
      <p class="muted" aria-live="polite">
        {loading
          ? "Loading jobs…"
          : `Showing ${shown.length} of ${jobs.length} loaded job${jobs.length === 1 ? "" : "s"}${live ? " (refreshing live)" : ""}.`}
      </p>
      <TableBox label="Jobs">
        <table class="jobs">
          <thead>
            <tr>
              <th scope="col">Job</th>
              <th scope="col">Status</th>
              <th scope="col">Base model</th>
              <th scope="col">Method</th>
              <th scope="col">Progress</th>
              <th scope="col">ETA</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((job) => (
              <tr key={job.id}>
                <td>
                  <a href={href(`/jobs/${job.id}`)}>
                    <code>{job.id}</code>
                  </a>
                  {job.suffix && <span class="muted"> {job.suffix}</span>}
                </td>
                <td>
                  <StatusBadge status={job.status} />
                </td>
                <td>{job.model}</td>
                <td>{job.method?.type ?? "supervised"}</td>
                <td>
                  <JobProgress job={job} />
                </td>
                <td>{eta(job.estimated_finish, job.status)}</td>
                <td>{when(job.created_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </TableBox>
      {!loading && jobs.length === 0 && (
        <p>
          No jobs yet. <a href={href("/jobs/new")}>Start one</a>.
        </p>
      )}
      {hasMore && (
        <button type="button" onClick={loadMore}>
          Load older jobs
        </button>
      )}
    </section>
  );
}
