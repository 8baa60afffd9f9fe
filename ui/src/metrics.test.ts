import { describe, expect, it } from "vitest";
import { MetricsSeries } from "./metrics";
import type { JobEvent } from "./types";

const metrics = (step: number, extra: Record<string, number> = {}): JobEvent => ({
  id: `ftevent-${step}`,
  created_at: 0,
  level: "info",
  message: "",
  type: "metrics",
  data: { step, total_steps: 10, train_loss: 2 / step, ...extra },
});

describe("MetricsSeries", () => {
  it("collects columns aligned on steps, with gaps for evaluations", () => {
    const s = new MetricsSeries();
    s.add(metrics(1));
    s.add(metrics(2, { valid_loss: 1.5 }));
    expect(s.add({ ...metrics(3), type: "message" })).toBe(false);
    expect(s.steps).toEqual([1, 2]);
    expect(s.columns.valid_loss).toEqual([null, 1.5]);
    expect(s.count("valid_loss")).toBe(1);
    expect(s.latest.train_loss).toBe(1);
    expect(s.totalSteps).toBe(10);
  });

  it("rewinds when a resumed run repeats steps", () => {
    const s = new MetricsSeries();
    [1, 2, 3, 2, 3, 4].forEach((step) => s.add(metrics(step)));
    expect(s.steps).toEqual([1, 2, 3, 4]);
    expect(s.columns.train_loss).toHaveLength(4);
  });
});
