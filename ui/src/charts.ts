// Time-series charts in the side panel (uPlot): calls, errors, latency and Apdex per minute.

import uPlot from "uplot";
import { columns, fmtMs, fmtNumber, type Metrics, type Point } from "./data";
import { css, el } from "./dom";
import { keepChart, panel } from "./panel";

/// One chart under `title`, appended to `parent`: a line per field, each optionally scaled
/// (a rate to a percentage), with `yFmt` for the axis and the legend. As wide as the panel.
function chart(
  parent: HTMLElement,
  title: string,
  series: Point[],
  fields: { key: keyof Metrics; label: string; color: string; scale?: (v: number) => number }[],
  yFmt: (v: number) => string,
): void {
  const box = el("div", { className: "chart" }, el("h3", { text: title }));
  parent.append(box);
  const data = columns(series, fields.map((f) => f.key)).map((col, i) =>
    i === 0 || !fields[i - 1].scale ? col : col.map((v) => (v == null ? v : fields[i - 1].scale!(v))),
  );
  const width = Math.max(260, panel.clientWidth - 40);
  const axis = { stroke: css("--fg-dim"), grid: { stroke: css("--grid") }, ticks: { stroke: css("--grid") } };
  const plot = new uPlot(
    {
      width,
      height: 130,
      legend: { show: fields.length > 1 },
      cursor: { drag: { x: false, y: false } },
      scales: { y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [axis, { ...axis, size: 50, values: (_u, vals) => vals.map((v) => yFmt(v)) }],
      series: [
        {},
        ...fields.map((f) => ({ label: f.label, stroke: f.color, width: 1.5, spanGaps: false, value: (_u: uPlot, v: number | null) => (v == null ? "–" : yFmt(v)) })),
      ],
    },
    data as uPlot.AlignedData,
    box,
  );
  keepChart(plot);
}

/// The charts of a service or an edge: calls per minute, error rate, latency percentiles,
/// and with `withApdex` the Apdex score.
export function seriesCharts(body: HTMLElement, series: Point[], withApdex: boolean): void {
  chart(body, "Calls per minute", series, [{ key: "cpm", label: "calls/min", color: css("--accent") }], fmtNumber);
  chart(body, "Error rate", series, [{ key: "error_rate", label: "errors", color: css("--bad"), scale: (v) => v * 100 }], (v) => fmtNumber(v) + "%");
  chart(
    body,
    "Latency",
    series,
    [
      { key: "p50_ms", label: "p50", color: css("--ok") },
      { key: "p95_ms", label: "p95", color: css("--warn") },
      { key: "p99_ms", label: "p99", color: css("--bad") },
    ],
    fmtMs,
  );
  if (withApdex) chart(body, "Apdex", series, [{ key: "apdex", label: "apdex", color: css("--ok") }], (v) => v.toFixed(2));
}
