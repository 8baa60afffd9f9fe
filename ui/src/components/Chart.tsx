// A uPlot chart in a <figure>, with a caption and a text summary for screen readers.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { num } from "../format";

export interface SeriesSpec {
  label: string;
  color: string;
  dash?: number[];
  /** Few values (evaluations): always mark each one. */
  sparse?: boolean;
}

/** Mark points while a line is short enough for them to be seen apart. */
const FEW_POINTS = 40;

export interface ChartProps {
  title: string;
  /** What the chart shows in words (latest values...), read instead of the canvas. */
  summary: string;
  xLabel: string;
  series: SeriesSpec[];
  /** [x, ...one column per series]; mutated in place by the owner, who bumps `version`. */
  data: uPlot.AlignedData;
  version: number;
  kind?: "line" | "bars" | "points";
  /** How the legend names the x value under the cursor (e.g. a layer's name). */
  xValue?: (value: number) => string;
  yRange?: [number, number];
  height?: number;
}

/** x is always a whole number (a step, a layer): ticks at 1, 2, 5, 10, 20, 50 ... */
const STEPS = [1, 2, 5]
  .flatMap((m) => [1, 10, 100, 1000, 10000, 100000].map((p) => m * p))
  .sort((a, b) => a - b);

function seriesOptions(props: ChartProps): uPlot.Series[] {
  const kind = props.kind ?? "line";
  const paths = kind === "bars" ? uPlot.paths.bars!({ size: [0.8, 40] }) : undefined;
  return props.series.map((s) => ({
    label: s.label,
    stroke: s.color,
    fill: kind === "bars" ? `${s.color}cc` : undefined,
    dash: s.dash,
    width: kind === "points" ? 0 : 2,
    spanGaps: true,
    paths: kind === "points" ? () => null : paths,
    points:
      kind === "points"
        ? { show: true, size: 5, fill: s.color }
        : kind === "bars"
          ? { show: false }
          : { show: (u: uPlot) => s.sparse || u.data[0].length < FEW_POINTS, size: 6, fill: s.color },
  }));
}

/** A fixed range, from 0 for bars, else uPlot's own fit. */
function yRange(props: ChartProps): uPlot.Range.MinMax | uPlot.Range.Function | undefined {
  if (props.yRange) return props.yRange;
  if (props.kind === "bars") return (_u, _min, max) => [0, Math.max(1, max * 1.1)];
  return undefined;
}

function options(props: ChartProps, width: number): uPlot.Options {
  const axis = { stroke: "#333", grid: { stroke: "#e3e3e3" }, ticks: { stroke: "#bbb" } };
  return {
    width,
    height: props.height ?? 220,
    scales: { x: { time: false }, y: { range: yRange(props) } },
    axes: [
      { ...axis, label: props.xLabel, incrs: STEPS },
      { ...axis, size: 64, values: (_u, ticks) => ticks.map((t) => num(t, 3)) },
    ],
    series: [
      { label: props.xLabel, value: props.xValue && ((_u, v) => (v == null ? "—" : props.xValue!(v))) },
      ...seriesOptions(props),
    ],
    legend: { live: true },
    cursor: { drag: { x: true, y: false } },
  };
}

export function Chart(props: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const element = box.current!;
    const chart = new uPlot(options(props, element.clientWidth || 300), props.data, element);
    plot.current = chart;
    const resize = new ResizeObserver(() =>
      chart.setSize({ width: element.clientWidth || 300, height: props.height ?? 220 }),
    );
    resize.observe(element);
    return () => {
      resize.disconnect();
      chart.destroy();
      plot.current = null;
    };
  }, []);

  useEffect(() => {
    plot.current?.setData(props.data);
  }, [props.version, props.data]);

  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      <div ref={box} class="chart-canvas" aria-hidden="true" />
      <p class="chart-summary">{props.summary}</p>
    </figure>
  );
}
