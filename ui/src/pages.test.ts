import { describe, expect, it } from "vitest";
import { problems } from "./components/FilePicker";
import { duration, eta, num } from "./format";
import { matches, merge } from "./pages/JobsList";
import { conversation } from "./pages/Playground";
import { parseRoute } from "./router";
import type { Job } from "./types";

const job = (id: string, status: Job["status"] = "running"): Job =>
  ({ id, status, model: "tiny-llama", fine_tuned_model: null, suffix: "demo" }) as Job;

describe("routes", () => {
  it("parses every page", () => {
    expect(parseRoute("/ui")).toEqual({ name: "jobs" });
    expect(parseRoute("/ui/jobs/new")).toEqual({ name: "new" });
    expect(parseRoute("/ui/jobs/ftjob-1")).toEqual({ name: "job", id: "ftjob-1" });
    expect(parseRoute("/ui/maps/om-1")).toEqual({ name: "map", id: "om-1" });
    expect(parseRoute("/ui/playground")).toEqual({ name: "playground" });
    expect(parseRoute("/ui/nope/x/y").name).toBe("missing");
  });
});

describe("jobs list", () => {
  it("filters by status and text", () => {
    expect(matches(job("ftjob-1"), "running", "DEMO")).toBe(true);
    expect(matches(job("ftjob-1"), "failed", "")).toBe(false);
    expect(matches(job("ftjob-1"), "", "llama")).toBe(true);
    expect(matches(job("ftjob-1"), "", "smol")).toBe(false);
  });
  it("merges a fresh first page: new jobs on top, known ones updated", () => {
    const merged = merge([job("b"), job("a")], [job("c"), job("b", "succeeded")]);
    expect(merged.map((j) => [j.id, j.status])).toEqual([
      ["c", "running"],
      ["b", "succeeded"],
      ["a", "running"],
    ]);
  });
});

describe("formatting", () => {
  it("writes durations, ETAs and numbers", () => {
    expect(duration(75)).toBe("1m 15s");
    expect(duration(3700)).toBe("1h 1m");
    expect(eta(1090, "running", 1000)).toBe("1m 30s");
    expect(eta(1090, "succeeded", 1000)).toBe("—");
    expect(num(1.234567)).toBe("1.235");
    expect(num(0.0002)).toBe("2.00e-4");
    expect(num(null)).toBe("—");
  });
  it("lists a rejected file's problems one per line", () => {
    expect(problems("line 1: bad; line 3: invalid JSON: x; y")).toEqual([
      "line 1: bad",
      "line 3: invalid JSON: x; y",
    ]);
  });
});

describe("playground", () => {
  it("sends each model its own earlier replies", () => {
    expect(conversation("Be brief.", ["hi", "again"], ["hello"], 1)).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: "hi" },
      { role: "assistant", content: "hello" },
      { role: "user", content: "again" },
    ]);
  });
});
