// Time-series charts in the side panel (uPlot): calls, errors, latency and Apdex per minute.
// Quiet minutes are gaps for the figures that need calls, and the minute still filling is a
// hollow mark beside the line, never a point on it (its count is only part of a minute).

import uPlot from "uplot";
import { chartColumns, fullTime, timeAxisValues, zoneLabel } from "./chart-data";
import { fmtMs, fmtNumber, type Metrics, type Point } from "./data";
import { css, el } from "./dom";
import { keepChart, panel } from "./panel";

/// What the browser tests read of a drawn chart: its title, series labels and columns.
export interface ChartRecord {
  title: string;
  labels: string[];
  data: (number | null)[][];
  partialIndex: number;
}

/// The charts drawn in the open panel, for the browser tests.
export const drawnCharts: ChartRecord[] = [];

// Axis labels are drawn at 11 px; this is a safe width per character for the axis' size.
const CHAR_PX = 7.5;

/// One chart under `title`, appended to `parent`: a line per field, each optionally scaled
/// (a rate to a percentage), with `yFmt` for the axis and the legend. As wide as the panel.
function chart(
  parent: HTMLElement,
  title: string,
  series: Point[],
  now: number,
  fields: { key: keyof Metrics; label: string; color: string; scale?: (v: number) => number }[],
  yFmt: (v: number) => string,
): void {
  const box = el("div", { className: "chart" }, el("h3", { text: title }));
  parent.append(box);
  const { data: raw, partialIndex } = chartColumns(series, fields.map((f) => f.key), now);
  const data = raw.map((col, i) => {
    const field = i === 0 ? undefined : fields[(i - 1) % fields.length];
    return !field?.scale ? col : col.map((v) => (v == null ? v : field.scale!(v)));
  });
  const width = Math.max(260, panel.clientWidth - 40);
  const axis = { stroke: css("--fg-dim"), grid: { stroke: css("--grid") }, ticks: { stroke: css("--grid") } };
  const labels = [...fields.map((f) => f.label), ...fields.map((f) => `${f.label}, this minute so far`)];
  const plot = new uPlot(
    {
      width,
      height: 130,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        { ...axis, space: 70, values: (_u, ticks) => timeAxisValues(ticks) },
        {
          ...axis,
          // As wide as the longest label, so that "200ms" is never cut to ":00ms".
          size: (_u, values) => (values ? 18 + CHAR_PX * Math.max(3, ...values.map((v) => String(v).length)) : 64),
          values: (_u, vals) => vals.map((v) => yFmt(v)),
        },
      ],
      series: [
        { label: zoneLabel(Date.now()), value: (_u: uPlot, v: number | null) => (v == null ? "–" : fullTime(v * 1000)) },
        ...fields.map((f) => ({ label: f.label, stroke: f.color, width: 1.5, spanGaps: false, value: (_u: uPlot, v: number | null) => (v == null ? "–" : yFmt(v)) })),
        ...fields.map((f) => ({
          label: `${f.label}, this minute so far`,
          stroke: f.color,
          width: 0,
          dash: [3, 3],
          points: { show: true, size: 8, width: 1.5, fill: css("--bg"), stroke: f.color },
          value: (_u: uPlot, v: number | null) => (v == null ? "–" : yFmt(v)),
        })),
      ],
    },
    data as uPlot.AlignedData,
    box,
  );
  if (partialIndex >= 0) box.dataset.partialMinute = String(series[partialIndex].t);
  keepChart(plot);
  drawnCharts.push({ title, labels, data, partialIndex });
}

/// The charts of a service or an edge: calls per minute, error share, latency percentiles,
/// and with `withApdex` the Apdex score. `now` is the server's clock, which tells the minute
/// still filling.
export function seriesCharts(body: HTMLElement, series: Point[], now: number, withApdex: boolean): void {
  drawnCharts.length = 0;
  chart(body, "Calls (/min)", series, now, [{ key: "cpm", label: "calls", color: css("--accent") }], (v) => fmtNumber(v) + "/min");
  chart(body, "Error share", series, now, [{ key: "error_rate", label: "errors", color: css("--bad"), scale: (v) => v * 100 }], (v) => fmtNumber(v) + "%");
  chart(
    body,
    "Latency",
    series,
    now,
    [
      { key: "p50_ms", label: "p50", color: css("--ok") },
      { key: "p95_ms", label: "p95", color: css("--warn") },
      { key: "p99_ms", label: "p99", color: css("--bad") },
    ],
    fmtMs,
  );
  if (withApdex) chart(body, "Apdex", series, now, [{ key: "apdex", label: "apdex", color: css("--ok") }], (v) => v.toFixed(2));
}
