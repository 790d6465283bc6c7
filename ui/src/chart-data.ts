// What a chart draws from a per-minute series, worked out without the DOM: minutes without
// calls are gaps for the figures that need calls (error share, latency, Apdex), and the minute
// still filling is kept out of the line and given a series of its own, drawn as a lone mark.

import type { Metrics, Point } from "./data";

export const MINUTE_MS = 60_000;

/// Figures that only mean something when there were calls: a quiet minute is a gap, not 0.
const NEEDS_CALLS: ReadonlySet<keyof Metrics> = new Set(["error_rate", "p50_ms", "p95_ms", "p99_ms", "apdex"]);

/// uPlot's columns for `fields` of `series`: seconds on x, then per field its whole minutes
/// (null at the minute still filling), then per field the minute still filling alone (null
/// elsewhere). A minute is still filling when it ends after `now` (the server's clock).
export interface ChartColumns {
  data: (number | null)[][];
  /// Index in `series` of the minute still filling, or -1 when every minute is over.
  partialIndex: number;
}

export function chartColumns(series: Point[], fields: (keyof Metrics)[], now: number): ChartColumns {
  const xs = series.map((p) => p.t / 1000);
  const partialIndex = series.findIndex((p) => p.t <= now && now < p.t + MINUTE_MS);
  const value = (p: Point, f: keyof Metrics): number | null => {
    if (p.t > now) return null; // not begun yet
    if (NEEDS_CALLS.has(f) && !p.calls) return null;
    const v = p[f];
    return typeof v === "number" ? v : null;
  };
  const whole = fields.map((f) => series.map((p, i) => (i === partialIndex ? null : value(p, f))));
  const partial = fields.map((f) => series.map((p, i) => (i === partialIndex ? value(p, f) : null)));
  return { data: [xs, ...whole, ...partial], partialIndex };
}

/// "UTC" or "UTC+01:00": the offset of the reader's zone at `ms`, as charts and ranges name it.
export function zoneLabel(ms: number): string {
  const offset = -new Date(ms).getTimezoneOffset();
  if (offset === 0) return "UTC";
  const sign = offset > 0 ? "+" : "-";
  const a = Math.abs(offset);
  return `UTC${sign}${two(Math.floor(a / 60))}:${two(a % 60)}`;
}

function two(n: number): string {
  return String(n).padStart(2, "0");
}

/// "14:05" in the reader's zone.
export function clockTime(ms: number): string {
  const d = new Date(ms);
  return `${two(d.getHours())}:${two(d.getMinutes())}`;
}

/// "2026-12-06 14:05 UTC+01:00": a minute with its date and the reader's zone.
export function fullTime(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${clockTime(ms)} ${zoneLabel(ms)}`;
}

/// Labels for the time axis: clock times within a day, the date beneath at a day's first
/// tick and wherever the axis spans days.
export function timeAxisValues(secondsTicks: number[]): string[] {
  const span = secondsTicks.length > 1 ? secondsTicks[secondsTicks.length - 1] - secondsTicks[0] : 0;
  let lastDay = "";
  return secondsTicks.map((s) => {
    const d = new Date(s * 1000);
    const day = `${two(d.getMonth() + 1)}-${two(d.getDate())}`;
    const showDay = span >= 86_400 && day !== lastDay;
    lastDay = day;
    return showDay ? `${clockTime(s * 1000)}\n${day}` : clockTime(s * 1000);
  });
}
