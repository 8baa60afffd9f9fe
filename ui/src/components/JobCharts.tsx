// A job's live curves: loss, token accuracy, learning rate, tokens/s; and outlier stability.
import { useMemo } from "preact/hooks";
import type uPlot from "uplot";
import { num } from "../format";
import type { MetricKey, MetricsSeries } from "../metrics";
import type { StabilityPoint } from "../types";
import { Chart } from "./Chart";

export const TRAIN = "#1f4e9c";
export const VALID = "#b3261e";

function latest(series: MetricsSeries, key: MetricKey, name: string): string {
  const count = series.count(key);
  if (!count) return "";
  return (
    `${name} ${num(series.latest[key])}` +
    (key.startsWith("valid") ? ` (${count} evaluation${count === 1 ? "" : "s"})` : "")
  );
}

function summary(series: MetricsSeries, parts: [MetricKey, string][]): string {
  if (!series.length) return "No metrics yet.";
  const step = series.steps[series.length - 1];
  const total = series.totalSteps ? ` of ${series.totalSteps}` : "";
  const values = parts.map(([k, n]) => latest(series, k, n)).filter(Boolean);
  return `Step ${step}${total}: ${values.join(", ") || "no values"}.`;
}

export function JobCharts({ series, version }: { series: MetricsSeries; version: number }) {
  const c = series.columns;
  const data = (...keys: MetricKey[]): uPlot.AlignedData => [series.steps, ...keys.map((k) => c[k])];
  // The arrays are the series' own (appended in place), so building them once per series is enough.
  const charts = useMemo(
    () => ({
      loss: data("train_loss", "valid_loss"),
      accuracy: data("train_mean_token_accuracy", "valid_mean_token_accuracy"),
      lr: data("learning_rate"),
      speed: data("tokens_per_second"),
    }),
    [series],
  );
  return (
    <div class="charts">
      <Chart
        title="Loss"
        xLabel="step"
        series={[
          { label: "training", color: TRAIN },
          { label: "validation", color: VALID, dash: [6, 4], sparse: true },
        ]}
        data={charts.loss}
        version={version}
        summary={summary(series, [
          ["train_loss", "training loss"],
          ["valid_loss", "validation loss"],
        ])}
      />
      <Chart
        title="Mean token accuracy"
        xLabel="step"
        series={[
          { label: "training", color: TRAIN },
          { label: "validation", color: VALID, dash: [6, 4], sparse: true },
        ]}
        data={charts.accuracy}
        version={version}
        yRange={[0, 1]}
        summary={summary(series, [
          ["train_mean_token_accuracy", "training accuracy"],
          ["valid_mean_token_accuracy", "validation accuracy"],
        ])}
      />
      <Chart
        title="Learning rate"
        xLabel="step"
        series={[{ label: "learning rate", color: "#5b3a8c" }]}
        data={charts.lr}
        version={version}
        height={160}
        summary={summary(series, [["learning_rate", "learning rate"]])}
      />
      <Chart
        title="Tokens per second"
        xLabel="step"
        series={[{ label: "tokens/s", color: "#2e6b30" }]}
        data={charts.speed}
        version={version}
        height={160}
        summary={summary(series, [["tokens_per_second", "tokens per second"]])}
      />
    </div>
  );
}

/** Recall of the initial outlier map over training: do the outlier channels stay put? */
export function StabilityChart({ points }: { points: StabilityPoint[] }) {
  const data = useMemo<uPlot.AlignedData>(
    () => [points.map((p) => p.step), points.map((p) => p.recall)],
    [points],
  );
  const lowest = Math.min(...points.map((p) => p.recall));
  const last = points[points.length - 1];
  return (
    <Chart
      title="Outlier stability (recall of the initial outlier map)"
      xLabel="step"
      series={[{ label: "recall", color: TRAIN }]}
      data={data}
      version={points.length}
      yRange={[0, 1]}
      height={180}
      summary={`Recall ${(last.recall * 100).toFixed(1)}% at step ${last.step}; lowest ${(lowest * 100).toFixed(1)}% over ${points.length} measurement${points.length === 1 ? "" : "s"}.`}
    />
  );
}
