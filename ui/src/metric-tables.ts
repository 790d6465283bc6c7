// Metrics as text in the side panel: a list of figures, and tables of named rows (instances,
// endpoints, the two sides of an edge) sortable by any column.

import { fmtMs, fmtNumber, fmtPct, type Metrics } from "./data";
import { el } from "./dom";

/// The figures of `m` as a definition list (calls per minute, calls, errors, 4xx and the
/// latency percentiles), then the `extra` pairs.
export function figures(m: Metrics, extra: [string, string][] = []): HTMLElement {
  const rows: [string, string][] = [
    ["rate", `${fmtNumber(m.cpm)}/min`],
    ["calls", fmtNumber(m.calls)],
    ["errors", `${fmtNumber(m.errors)} (${fmtPct(m.error_rate)})`],
    ["4xx", fmtNumber(m.errors_4xx ?? 0)],
    ["p50", fmtMs(m.p50_ms)],
    ["p95", fmtMs(m.p95_ms)],
    ["p99", fmtMs(m.p99_ms)],
    ...extra,
  ];
  const dl = el("dl", { className: "figures" });
  for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", { text: v }));
  return dl;
}

/// A table of `rows` with a column per definition, sorted by the second column (calls per
/// minute in `METRIC_COLUMNS`), largest first. A click on a heading sorts by that column
/// (names A to Z, figures largest first), a second click the other way round; the headings
/// are buttons, so Tab and Enter sort as well. No rows give
/// a line that says so instead of a table. With `pick`, each row's name is a button that
/// calls it with the row (and marks that row `aria-pressed`).
export function sortableTable(
  columnsDef: { label: string; value: (r: { name: string; metrics: Metrics }) => number | string; show: (r: { name: string; metrics: Metrics }) => string }[],
  rows: { name: string; metrics: Metrics }[],
  pick?: { picked: string | null; onPick: (name: string) => void },
): HTMLElement {
  const table = el("table", { className: "sortable" });
  const tbody = el("tbody");
  let sortCol = 1;
  let desc = true;
  const head = el("tr");
  let picked = pick?.picked ?? null;
  const pickCell = (name: string) => {
    const button = el("button", { className: "pick", text: name });
    button.type = "button";
    button.setAttribute("aria-pressed", String(name === picked));
    button.addEventListener("click", () => {
      picked = name;
      tbody.querySelectorAll("button.pick").forEach((b) => b.setAttribute("aria-pressed", String(b.textContent === name)));
      pick!.onPick(name);
    });
    return el("td", {}, button);
  };
  const draw = () => {
    const sorted = [...rows].sort((a, b) => {
      const x = columnsDef[sortCol].value(a);
      const y = columnsDef[sortCol].value(b);
      const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return desc ? -c : c;
    });
    tbody.replaceChildren(
      ...sorted.map((r) => el("tr", {}, ...columnsDef.map((c, i) => (i === 0 && pick ? pickCell(r.name) : el("td", { text: c.show(r) }))))),
    );
    [...head.children].forEach((th, i) => {
      th.className = i === sortCol ? (desc ? "desc" : "asc") : "";
      if (i === sortCol) th.setAttribute("aria-sort", desc ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    });
  };
  columnsDef.forEach((c, i) => {
    // A button in each heading: sorting works from the keyboard too.
    const button = el("button", { text: c.label });
    button.type = "button";
    const th = el("th", {}, button);
    button.addEventListener("click", () => {
      if (sortCol === i) desc = !desc;
      else {
        sortCol = i;
        desc = i !== 0;
      }
      draw();
    });
    head.append(th);
  });
  table.append(el("thead", {}, head), tbody);
  draw();
  if (!rows.length) return el("p", { className: "muted", text: "none in this window" });
  return table;
}

/// The columns of every metrics table: name, calls a minute, error share and p95, p99.
export const METRIC_COLUMNS = [
  { label: "name", value: (r: { name: string }) => r.name, show: (r: { name: string }) => r.name },
  { label: "/min", value: (r: { metrics: Metrics }) => r.metrics.cpm, show: (r: { metrics: Metrics }) => fmtNumber(r.metrics.cpm) },
  { label: "err %", value: (r: { metrics: Metrics }) => r.metrics.error_rate, show: (r: { metrics: Metrics }) => fmtPct(r.metrics.error_rate) },
  { label: "p95", value: (r: { metrics: Metrics }) => r.metrics.p95_ms ?? -1, show: (r: { metrics: Metrics }) => fmtMs(r.metrics.p95_ms) },
  { label: "p99", value: (r: { metrics: Metrics }) => r.metrics.p99_ms ?? -1, show: (r: { metrics: Metrics }) => fmtMs(r.metrics.p99_ms) },
];
