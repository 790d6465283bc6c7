import { describe, expect, it } from "vitest";
import { chartColumns, timeAxisValues, zoneLabel } from "../src/chart-data";
import type { Metrics, Point } from "../src/data";

function point(t: number, calls: number, errors: number, p95: number | null): Point {
  const m: Metrics = { calls, cpm: calls, errors, error_rate: calls ? errors / calls : 0, p50_ms: p95, p95_ms: p95, p99_ms: p95 };
  return { t, ...m };
}

describe("chart columns", () => {
  // Three minutes: 600 calls (6 failed), none, and 180 so far in the minute still filling.
  const series = [point(0, 600, 6, 40), point(60_000, 0, 0, null), point(120_000, 180, 0, 35)];
  const now = 120_000 + 18_000;

  it("keeps the minute still filling out of the line and gives it its own series", () => {
    const { data, partialIndex } = chartColumns(series, ["cpm"], now);
    expect(partialIndex).toBe(2);
    expect(data).toEqual([
      [0, 60, 120],
      [600, 0, null],
      [null, null, 180],
    ]);
  });

  it("draws a minute without calls as a gap for error share and latency, as 0 for calls", () => {
    const { data } = chartColumns(series, ["cpm", "error_rate", "p95_ms"], now);
    expect(data[1]).toEqual([600, 0, null]);
    expect(data[2]).toEqual([0.01, null, null]);
    expect(data[3]).toEqual([40, null, null]);
    expect(data[5]).toEqual([null, null, 0]);
  });

  it("has no partial minute when the range is over, and no points after now", () => {
    expect(chartColumns(series, ["cpm"], 10 * 60_000).partialIndex).toBe(-1);
    const early = chartColumns(series, ["cpm"], 30_000);
    expect(early.partialIndex).toBe(0);
    expect(early.data[1]).toEqual([null, null, null]);
    expect(early.data[2]).toEqual([600, null, null]);
  });
});

describe("time labels", () => {
  it("names the zone", () => {
    const label = zoneLabel(Date.UTC(2026, 11, 6, 12));
    expect(label).toMatch(/^UTC([+-]\d\d:\d\d)?$/);
  });
  it("gives clock times, with the date where the axis spans days", () => {
    const t0 = new Date(2026, 11, 6, 23, 0).getTime() / 1000;
    expect(timeAxisValues([t0, t0 + 1800])).toEqual(["23:00", "23:30"]);
    expect(timeAxisValues([t0, t0 + 86_400])).toEqual(["23:00\n12-06", "23:00\n12-07"]);
  });
});
