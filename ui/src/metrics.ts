// Metrics events accumulated into chart columns (uPlot's aligned arrays).
import type { JobEvent, MetricsData } from "./types";

export const METRIC_KEYS = [
  "train_loss",
  "valid_loss",
  "train_mean_token_accuracy",
  "valid_mean_token_accuracy",
  "learning_rate",
  "tokens_per_second",
] as const;
export type MetricKey = (typeof METRIC_KEYS)[number];

function value(data: Partial<MetricsData>, key: MetricKey): number | null {
  const v = data[key];
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/** One column per metric, indexed like `steps`; a step seen again (a resumed run) rewinds. */
export class MetricsSeries {
  steps: number[] = [];
  columns: Record<MetricKey, (number | null)[]> = Object.fromEntries(
    METRIC_KEYS.map((k) => [k, []]),
  ) as unknown as Record<MetricKey, (number | null)[]>;
  totalSteps: number | null = null;
  latest: Partial<Record<MetricKey, number>> = {};

  /** Add a metrics event's data; returns false for anything else. */
  add(event: JobEvent): boolean {
    if (event.type !== "metrics" || !event.data) return false;
    const data = event.data as Partial<MetricsData>;
    if (typeof data.step !== "number") return false;
    let at = this.steps.length;
    while (at > 0 && this.steps[at - 1] >= data.step) at--;
    if (at < this.steps.length) this.truncate(at);
    this.steps.push(data.step);
    for (const key of METRIC_KEYS) {
      const v = value(data, key);
      this.columns[key].push(v);
      if (v !== null) this.latest[key] = v;
    }
    if (typeof data.total_steps === "number") this.totalSteps = data.total_steps;
    return true;
  }

  get length(): number {
    return this.steps.length;
  }

  /** The count of points that carry `key`. */
  count(key: MetricKey): number {
    return this.columns[key].reduce<number>((n, v) => (v === null ? n : n + 1), 0);
  }

  private truncate(at: number): void {
    this.steps.length = at;
    for (const key of METRIC_KEYS) this.columns[key].length = at;
  }
}
