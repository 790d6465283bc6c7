// The meshscope dashboard: a live topology map with service and edge panels. Every string that
// comes from telemetry (service, endpoint and instance names) reaches the page through
// textContent or the graph's canvas labels, never as HTML.

import cytoscape from "cytoscape";
import type { Core, EdgeSingular, NodeSingular, StylesheetJson } from "cytoscape";
import ELK from "elkjs/lib/elk-api";
import elkWorkerUrl from "elkjs/lib/elk-worker.min.js?url";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { apiFetch } from "./auth";
import { bandLayout, elkGraph, elkPositions, useElk, type Positions } from "./layout";
import {
  columns,
  CUSTOM,
  fmtDuration,
  fmtInstant,
  fromLocalInput,
  proxyFigures,
  PROXY_STATS,
  rangeLabel,
  toLocalInput,
  upstreamDegraded,
  upstreamHealthText,
  windowParams,
  type Proxy,
  type ProxySeries,
  edgeId,
  fmtBytes,
  fmtMs,
  fmtNumber,
  fmtPct,
  namespacesOf,
  parseState,
  servicePath,
  stateQuery,
  toElements,
  topologyUrl,
  WINDOWS,
  type Metrics,
  type Point,
  type TopoEdge,
  type Topology,
  type UiState,
} from "./data";

const REFRESH_MS = 15_000;

/// Past this many elements the map draws for speed: straight edges, and during pan and zoom
/// a snapshot of the map instead of every element.
const BIG_GRAPH = 1_500;

// Created on first use: small maps only, and the worker is a 2 MB script.
let elk: InstanceType<typeof ELK> | null = null;

let state: UiState = parseState(location.search);
let topo: Topology | null = null;
let charts: uPlot[] = [];
let refreshTimer: number | undefined;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: { className?: string; text?: string } = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (props.className) e.className = props.className;
  if (props.text != null) e.textContent = props.text;
  for (const c of children) e.append(c);
  return e;
}

function byId<T extends HTMLElement>(id: string): T {
  return document.getElementById(id) as T;
}

const windowSelect = byId<HTMLSelectElement>("window");
const customRange = byId<HTMLElement>("custom-range");
const fromInput = byId<HTMLInputElement>("from");
const toInput = byId<HTMLInputElement>("to");
const nsSelect = byId<HTMLSelectElement>("namespace");
const search = byId<HTMLInputElement>("search");
const depthSelect = byId<HTMLSelectElement>("depth");
const clearFocus = byId<HTMLButtonElement>("clear-focus");
const autoRefresh = byId<HTMLInputElement>("auto-refresh");
const themeButton = byId<HTMLButtonElement>("theme");
const panel = byId<HTMLElement>("panel");
const empty = byId<HTMLElement>("empty");
const status = byId<HTMLElement>("status");
const tooltip = byId<HTMLElement>("tooltip");

for (const w of WINDOWS) windowSelect.append(el("option", { text: w }));
windowSelect.append(el("option", { text: CUSTOM }));

function theme(): "light" | "dark" {
  if (state.theme) return state.theme;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function css(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function graphStyle(big = false): StylesheetJson {
  return [
    {
      selector: "node",
      style: {
        label: "data(label)",
        "text-wrap": "wrap",
        "text-valign": "bottom",
        "text-margin-y": 4,
        "font-size": 11,
        // Labels too small to read are not drawn: zoomed out, a big map is only shapes.
        "min-zoomed-font-size": 6,
        color: css("--fg"),
        "text-outline-color": css("--bg"),
        "text-outline-width": 2,
        width: 34,
        height: 34,
        "background-color": css("--idle"),
        "border-width": 2,
        "border-color": css("--bg"),
      },
    },
    { selector: "node.ok", style: { "background-color": css("--ok") } },
    { selector: "node.warn", style: { "background-color": css("--warn") } },
    { selector: "node.bad", style: { "background-color": css("--bad") } },
    {
      selector: "node.virtual",
      style: {
        shape: "diamond",
        "background-color": css("--virtual"),
        "border-style": "dashed",
        "border-color": css("--fg-dim"),
      },
    },
    {
      selector: "node.namespace",
      style: {
        shape: "round-rectangle",
        "background-color": css("--ns-bg"),
        "background-opacity": 1,
        "border-width": 1,
        "border-color": css("--ns-border"),
        label: "data(label)",
        "text-valign": "top",
        "text-halign": "center",
        "text-margin-y": -4,
        "font-size": 12,
        "font-weight": "bold",
        color: css("--fg-dim"),
        padding: "18px",
      },
    },
    {
      selector: "edge",
      style: {
        // Thousands of edge labels cost seconds to draw the first time they are readable; on
        // a big map the figures are in the hover and on the selected edge.
        label: big ? "" : "data(label)",
        "font-size": 9,
        "min-zoomed-font-size": 7,
        color: css("--fg-dim"),
        "text-background-color": css("--bg"),
        "text-background-opacity": 0.85,
        "text-background-padding": "2px",
        "text-rotation": "autorotate",
        "curve-style": big ? "haystack" : "bezier",
        "target-arrow-shape": "triangle",
        width: 2,
        "line-color": css("--edge"),
        "target-arrow-color": css("--edge"),
      },
    },
    { selector: "edge.warn", style: { "line-color": css("--warn"), "target-arrow-color": css("--warn") } },
    { selector: "edge.bad", style: { "line-color": css("--bad"), "target-arrow-color": css("--bad") } },
    { selector: "edge.client-only", style: { "line-style": "dashed" } },
    {
      selector: "edge.tcp",
      style: {
        "line-color": css("--tcp"),
        "target-arrow-color": css("--tcp"),
        "target-arrow-shape": "square",
        "line-style": "dotted",
        width: 3,
      },
    },
    { selector: "edge:selected", style: { label: "data(label)" } },
    // Haystack edges draw about twice as fast as straight ones, but take arrows only midway.
    ...(big
      ? [
          { selector: "edge", style: { "target-arrow-shape": "none" as const, "mid-target-arrow-shape": "triangle" as const, "mid-target-arrow-color": css("--edge") } },
          { selector: "edge.warn", style: { "mid-target-arrow-color": css("--warn") } },
          { selector: "edge.bad", style: { "mid-target-arrow-color": css("--bad") } },
        ]
      : ([] as StylesheetJson)),
    {
      selector: ":selected",
      style: { "overlay-color": css("--accent"), "overlay-opacity": 0.25, "overlay-padding": 6 },
    },
    { selector: "node.focus", style: { "border-color": css("--accent"), "border-width": 4 } },
  ];
}

const cy: Core = cytoscape({
  container: byId("map"),
  elements: [],
  style: graphStyle(),
  wheelSensitivity: 0.3,
  minZoom: 0.05,
  maxZoom: 4,
});

// Browser tests read the graph from here; it is also handy from the devtools console.
// What the benchmark and the browser tests read: milliseconds since the page started, or spent.
const stats = {
  scriptAt: performance.now(),
  renders: 0,
  layouts: 0,
  engine: "",
  fetchMs: 0,
  elementsMs: 0,
  layoutMs: 0,
  renderMs: 0,
  laidOutAt: 0,
  firstFrameAt: 0,
  pending: false,
};

(window as unknown as { __meshscope: unknown }).__meshscope = {
  cy,
  state: () => ({ ...state }),
  refresh: () => load(),
  stats: () => ({ ...stats }),
};

function applyTheme(): void {
  document.documentElement.dataset.theme = theme();
  themeButton.textContent = theme() === "dark" ? "☀ Light" : "☾ Dark";
  cy.style(graphStyle(isBig()));
}

let big = false;
function isBig(): boolean {
  return big;
}

/// The renderer reads these two on every frame; cytoscape only takes them at creation, so
/// they are set on it when the map's size class changes.
function setBig(next: boolean): void {
  if (next === big) return;
  big = next;
  const r = (cy as unknown as { renderer(): { textureOnViewport: boolean;  } }).renderer();
  r.textureOnViewport = next;
  cy.style(graphStyle(next));
}

function pushState(replace = false): void {
  const url = location.pathname + stateQuery(state);
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
}

function syncControls(): void {
  windowSelect.value = state.window;
  customRange.hidden = state.window !== CUSTOM;
  if (state.window === CUSTOM) {
    fromInput.value = toLocalInput(state.from);
    toInput.value = toLocalInput(state.to);
  }
  search.value = state.service;
  depthSelect.value = String(state.depth);
  depthSelect.disabled = !state.service;
  clearFocus.hidden = !state.service;
  if (![...nsSelect.options].some((o) => o.value === state.namespace)) {
    nsSelect.append(el("option", { text: state.namespace }));
  }
  nsSelect.value = state.namespace;
}

async function getJson<T>(url: string): Promise<T> {
  const res = await apiFetch(url, { headers: { accept: "application/json" } });
  const body = await res.json();
  if (!res.ok) throw new Error(body?.error ?? `HTTP ${res.status}`);
  return body as T;
}

let loadSeq = 0;

async function load(): Promise<void> {
  const seq = ++loadSeq;
  status.textContent = "loading…";
  try {
    const fetchStart = performance.now();
    const next = await getJson<Topology>(topologyUrl(state));
    stats.fetchMs = performance.now() - fetchStart;
    if (seq !== loadSeq) return;
    topo = next;
    await render(next);
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    if (seq !== loadSeq) return;
    status.textContent = `error: ${(err as Error).message}`;
  }
  if (state.namespace === "") await loadNamespaces();
}

async function loadNamespaces(): Promise<void> {
  if (!topo) return;
  const known = new Set([...nsSelect.options].map((o) => o.value));
  for (const ns of namespacesOf(topo)) {
    if (!known.has(ns)) nsSelect.append(el("option", { text: ns }));
  }
  const list = byId<HTMLDataListElement>("services");
  list.replaceChildren(
    ...topo.nodes.filter((n) => n.kind === "service").map((n) => {
      const o = el("option");
      o.value = n.id;
      return o;
    }),
  );
}

function render(t: Topology): Promise<void> {
  const began = performance.now();
  const elements = toElements(t);
  setBig(elements.length > BIG_GRAPH);
  empty.hidden = t.nodes.length > 0;
  const wanted = new Set(elements.map((e) => e.data.id as string));
  const had = new Set(cy.elements().map((e) => e.id()));
  const sameShape = wanted.size === had.size && [...wanted].every((id) => had.has(id));
  // The banded layout is known before anything is drawn, so new nodes are added in place
  // rather than placed afterwards: moving thousands of elements costs as much as adding them.
  const bands = !sameShape && !useElk(t) ? bandLayout(t, cy.width() / Math.max(1, cy.height())) : null;
  cy.batch(() => {
    cy.elements().filter((e) => !wanted.has(e.id())).remove();
    const added: cytoscape.ElementDefinition[] = [];
    for (const def of elements) {
      const id = def.data.id as string;
      const existing = cy.getElementById(id);
      if (existing.nonempty()) {
        existing.data(def.data);
        existing.classes(def.classes ?? "");
        const p = bands?.get(id);
        if (p) existing.position(p);
      } else {
        added.push({ ...def, position: bands?.get(id) } as cytoscape.ElementDefinition);
      }
    }
    cy.add(added);
    cy.nodes().removeClass("focus");
    if (state.service) cy.getElementById(state.service).addClass("focus");
  });
  stats.renders++;
  stats.elementsMs = performance.now() - began;
  // Refreshes that bring no new nodes or edges keep every position: only figures change.
  const done = sameShape ? Promise.resolve() : layout(t, bands);
  return done.then(() => {
    stats.renderMs = performance.now() - began;
    restoreSelection();
  });
}

let layoutSeq = 0;

async function layout(t: Topology, bands: Positions | null): Promise<void> {
  const seq = ++layoutSeq;
  const began = performance.now();
  stats.pending = true;
  let positions: Positions;
  let engine = "bands";
  if (bands) {
    positions = bands;
  } else if (useElk(t)) {
    try {
      elk ??= new ELK({ workerUrl: elkWorkerUrl });
      const graph = elkGraph(t, (n) => 8 + 6.5 * Math.max(n.name.length, 10));
      positions = elkPositions(await elk.layout(graph));
      engine = "elk";
    } catch (err) {
      console.warn("ELK layout failed, using bands", err);
      positions = bandLayout(t);
    }
  } else {
    positions = bandLayout(t);
  }
  // A newer topology arrived while ELK worked: its layout wins.
  if (seq !== layoutSeq) return;
  if (positions !== bands) {
    cy.batch(() => {
      for (const [id, p] of positions) cy.getElementById(id).position(p);
    });
  }
  // Nodes only: the bounds of thousands of edge labels take long to measure, and every edge
  // runs between nodes anyway.
  cy.fit(cy.nodes(), 30);
  stats.layouts++;
  stats.engine = engine;
  stats.layoutMs = performance.now() - began;
  stats.laidOutAt = performance.now();
  stats.pending = false;
  // The map draws in the next animation frame; the one after it starts once that is done.
  if (!stats.firstFrameAt) requestAnimationFrame(() => requestAnimationFrame(() => (stats.firstFrameAt = performance.now())));
}

function restoreSelection(): void {
  if (!state.selected) return;
  const [kind, ...rest] = state.selected.split(":");
  const id = rest.join(":");
  const target = cy.getElementById(id);
  if (target.nonempty() && !target.selected()) {
    cy.elements().unselect();
    target.select();
  }
  if (panel.hidden) {
    if (kind === "node") void openService(id);
    else if (kind === "edge") {
      const e = topo?.edges.find((x) => edgeId(x) === id);
      if (e) void openEdge(e);
    }
  }
}

// --- panels ---------------------------------------------------------------------------------

function closePanel(): void {
  for (const c of charts) c.destroy();
  charts = [];
  panel.hidden = true;
  panel.replaceChildren();
}

function panelHeader(title: string, subtitle: string): HTMLElement {
  const close = el("button", { className: "close", text: "✕" });
  close.title = "Close";
  close.addEventListener("click", () => {
    state.selected = "";
    cy.elements().unselect();
    closePanel();
    pushState();
  });
  return el("header", {}, el("div", {}, el("h2", { text: title }), el("div", { className: "sub", text: subtitle })), close);
}

function figures(m: Metrics, extra: [string, string][] = []): HTMLElement {
  const rows: [string, string][] = [
    ["calls/min", fmtNumber(m.cpm)],
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
  charts.push(plot);
}

function sortableTable(
  columnsDef: { label: string; value: (r: { name: string; metrics: Metrics }) => number | string; show: (r: { name: string; metrics: Metrics }) => string }[],
  rows: { name: string; metrics: Metrics }[],
): HTMLElement {
  const table = el("table", { className: "sortable" });
  const tbody = el("tbody");
  let sortCol = 1;
  let desc = true;
  const head = el("tr");
  const draw = () => {
    const sorted = [...rows].sort((a, b) => {
      const x = columnsDef[sortCol].value(a);
      const y = columnsDef[sortCol].value(b);
      const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return desc ? -c : c;
    });
    tbody.replaceChildren(
      ...sorted.map((r) => el("tr", {}, ...columnsDef.map((c) => el("td", { text: c.show(r) })))),
    );
    [...head.children].forEach((th, i) => {
      th.className = i === sortCol ? (desc ? "desc" : "asc") : "";
    });
  };
  columnsDef.forEach((c, i) => {
    const th = el("th", { text: c.label });
    th.addEventListener("click", () => {
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

const tableColumns = [
  { label: "name", value: (r: { name: string }) => r.name, show: (r: { name: string }) => r.name },
  { label: "calls/min", value: (r: { metrics: Metrics }) => r.metrics.cpm, show: (r: { metrics: Metrics }) => fmtNumber(r.metrics.cpm) },
  { label: "err %", value: (r: { metrics: Metrics }) => r.metrics.error_rate, show: (r: { metrics: Metrics }) => fmtPct(r.metrics.error_rate) },
  { label: "p95", value: (r: { metrics: Metrics }) => r.metrics.p95_ms ?? -1, show: (r: { metrics: Metrics }) => fmtMs(r.metrics.p95_ms) },
  { label: "p99", value: (r: { metrics: Metrics }) => r.metrics.p99_ms ?? -1, show: (r: { metrics: Metrics }) => fmtMs(r.metrics.p99_ms) },
];

function seriesCharts(body: HTMLElement, series: Point[], withApdex: boolean): void {
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

interface ServiceDetail {
  id: string;
  name: string;
  namespace: string | null;
  kind: string;
  metrics: Metrics;
  series: Point[];
}

let panelSeq = 0;

interface ServiceProxy {
  proxy: Proxy;
  series: ProxySeries[] | null;
}

/// The proxies of a service with their statistics over the window. Proxies are optional: an
/// error here leaves the rest of the panel intact.
async function serviceProxies(id: string): Promise<ServiceProxy[] | Error> {
  try {
    const list = await getJson<{ proxies: Proxy[] }>("/api/v1/proxies");
    const mine = list.proxies.filter((p) => p.service === id);
    const q = new URLSearchParams({ ...windowParams(state), names: PROXY_STATS.join(",") }).toString();
    return await Promise.all(
      mine.map(async (proxy) => {
        try {
          const m = await getJson<{ series: ProxySeries[] }>(`/api/v1/proxies/${encodeURIComponent(proxy.id)}/metrics?${q}`);
          return { proxy, series: m.series };
        } catch {
          return { proxy, series: null };
        }
      }),
    );
  } catch (err) {
    return err as Error;
  }
}

function proxySection(proxies: ServiceProxy[] | Error): HTMLElement {
  const box = el("section", { className: "proxies" });
  if (proxies instanceof Error) {
    box.append(el("h3", { text: "Proxies" }), el("p", { className: "muted", text: `proxy statistics unavailable: ${proxies.message}` }));
    return box;
  }
  box.append(el("h3", { text: `Proxies (${proxies.length})` }));
  if (!proxies.length) {
    box.append(
      el("p", {
        className: "muted",
        text: "No proxy of this service reports its statistics. Add Envoy's metrics service sink (envoy.stat_sinks.metrics_service) pointing at the collector to see proxy health here.",
      }),
    );
    return box;
  }
  for (const { proxy, series } of proxies) {
    const card = el("div", { className: "proxy" });
    card.dataset.proxy = proxy.id;
    const badge = el("span", { className: `badge ${proxy.status}`, text: proxy.status });
    card.append(el("div", { className: "proxy-head" }, el("strong", { text: proxy.instance || proxy.id }), badge));
    const f = series ? proxyFigures(series) : null;
    const rows: [string, string][] = [
      ["Envoy", proxy.envoy_version || "–"],
      ["last seen", new Date(proxy.last_seen).toLocaleTimeString()],
      ["memory", f?.memory_bytes == null ? "–" : fmtBytes(f.memory_bytes)],
      ["connections", f?.connections == null ? "–" : fmtNumber(f.connections)],
      ["upstream rq", f ? fmtNumber(f.requests) : "–"],
      ["upstream 5xx", f ? fmtNumber(f.errors_5xx) : "–"],
      ["uptime", fmtDuration(f?.uptime_s ?? null)],
      ["node id", proxy.id],
    ];
    const dl = el("dl", { className: "figures" });
    for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", { text: v }));
    card.append(dl);
    if (f && f.clusters.length) {
      const table = el("table", { className: "clusters" });
      table.append(
        el("thead", {}, el("tr", {}, ...["upstream cluster", "rq", "5xx", "cx", "hosts"].map((h) => el("th", { text: h })))),
        el(
          "tbody",
          {},
          ...f.clusters.map((c) =>
            el(
              "tr",
              {},
              el("td", { text: c.cluster }),
              el("td", { text: fmtNumber(c.requests) }),
              el("td", { text: fmtNumber(c.errors_5xx) }),
              el("td", { text: c.active_connections == null ? "–" : fmtNumber(c.active_connections) }),
              el("td", { text: c.hosts == null ? "–" : `${c.healthy ?? "–"}/${c.hosts}` }),
            ),
          ),
        ),
      );
      card.append(table);
    } else if (!series) {
      card.append(el("p", { className: "muted", text: "statistics unavailable" }));
    }
    box.append(card);
  }
  return box;
}

async function openService(id: string): Promise<void> {
  const seq = ++panelSeq;
  const base = servicePath(id);
  const win = "?" + new URLSearchParams(windowParams(state)).toString();
  try {
    const [svc, inst, eps, proxies] = await Promise.all([
      getJson<ServiceDetail>(base + win),
      getJson<{ instances: { name: string; metrics: Metrics }[] }>(base + "/instances" + win),
      getJson<{ endpoints: { name: string; metrics: Metrics }[] }>(base + "/endpoints" + win),
      serviceProxies(id),
    ]);
    if (seq !== panelSeq) return;
    closePanel();
    panel.hidden = false;
    panel.dataset.kind = "service";
    panel.dataset.id = id;
    const body = el("div", { className: "body" });
    panel.append(panelHeader(svc.name, `${svc.namespace ?? "no namespace"} · ${svc.kind} · ${rangeLabel(state)}`), body);
    body.append(figures(svc.metrics, [["apdex", svc.metrics.apdex == null ? "–" : svc.metrics.apdex.toFixed(2)]]));
    seriesCharts(body, svc.series, true);
    body.append(el("h3", { text: `Instances (${inst.instances.length})` }), sortableTable(tableColumns, inst.instances));
    body.append(el("h3", { text: `Endpoints (${eps.endpoints.length})` }), sortableTable(tableColumns, eps.endpoints));
    body.append(proxySection(proxies));
  } catch (err) {
    if (seq !== panelSeq) return;
    closePanel();
    panel.hidden = false;
    panel.append(panelHeader(id, "service"), el("p", { className: "muted", text: (err as Error).message }));
  }
}

interface EdgeSide {
  metrics: Metrics;
  series: Point[];
}
interface EdgeDetail extends TopoEdge {
  series: Point[];
  server: EdgeSide | null;
  client: EdgeSide | null;
}

async function openEdge(e: TopoEdge): Promise<void> {
  const seq = ++panelSeq;
  const q = new URLSearchParams({ source: e.source, target: e.target, protocol: e.protocol, ...windowParams(state) });
  try {
    const res = await getJson<{ edges: EdgeDetail[] }>("/api/v1/edges?" + q.toString());
    if (seq !== panelSeq) return;
    const d = res.edges.find((x) => x.protocol === e.protocol) ?? res.edges[0];
    closePanel();
    panel.hidden = false;
    panel.dataset.kind = "edge";
    panel.dataset.id = edgeId(e);
    const body = el("div", { className: "body" });
    const flags = [e.protocol.toUpperCase(), `seen by ${e.detected_by}`, e.mtls ? "mTLS 🔒" : "no mTLS"].join(" · ");
    panel.append(panelHeader(`${e.source} → ${e.target}`, flags), body);
    const upstream = upstreamHealthText(e.upstream_health);
    if (upstream) {
      const line = el("p", { className: "upstream-health", text: `Upstream: ${upstream}` });
      if (upstreamDegraded(e.upstream_health)) line.classList.add("degraded");
      body.append(line);
    }
    if (!d) {
      body.append(el("p", { className: "muted", text: "no traffic in this window" }));
      return;
    }
    body.append(
      figures(d.metrics, [
        ["sent", fmtBytes(d.metrics.bytes_sent)],
        ["received", fmtBytes(d.metrics.bytes_received)],
        ["mTLS calls", fmtNumber(d.metrics.mtls_calls ?? 0)],
      ]),
    );
    seriesCharts(body, d.series, false);
    const sides = [
      ...(d.server ? [{ name: "server side", metrics: d.server.metrics }] : []),
      ...(d.client ? [{ name: "client side", metrics: d.client.metrics }] : []),
    ];
    body.append(el("h3", { text: "As each proxy reported it" }), sortableTable(tableColumns, sides));
  } catch (err) {
    if (seq !== panelSeq) return;
    closePanel();
    panel.hidden = false;
    panel.append(panelHeader(`${e.source} → ${e.target}`, "edge"), el("p", { className: "muted", text: (err as Error).message }));
  }
}

// --- events ---------------------------------------------------------------------------------

cy.on("tap", "node", (ev) => {
  const n = ev.target as NodeSingular;
  if (n.hasClass("namespace")) return;
  state.selected = "node:" + n.id();
  pushState();
  void openService(n.id());
});

cy.on("tap", "edge", (ev) => {
  const edge = ev.target as EdgeSingular;
  const e = topo?.edges.find((x) => edgeId(x) === edge.id());
  if (!e) return;
  state.selected = "edge:" + edge.id();
  pushState();
  void openEdge(e);
});

cy.on("tap", (ev) => {
  if (ev.target === cy) {
    state.selected = "";
    closePanel();
    pushState();
  }
});

cy.on("mouseover", "node, edge", (ev) => {
  const target = ev.target as NodeSingular | EdgeSingular;
  if (target.isNode() && target.hasClass("namespace")) return;
  const lines: string[] = [];
  if (target.isNode()) {
    const n = topo?.nodes.find((x) => x.id === target.id());
    if (!n) return;
    lines.push(n.id, `${fmtNumber(n.metrics.cpm)} calls/min`, `errors ${fmtPct(n.metrics.error_rate)}`, `p50 ${fmtMs(n.metrics.p50_ms)} · p95 ${fmtMs(n.metrics.p95_ms)} · p99 ${fmtMs(n.metrics.p99_ms)}`);
  } else {
    const e = topo?.edges.find((x) => edgeId(x) === target.id());
    if (!e) return;
    lines.push(`${e.source} → ${e.target} (${e.protocol})`, `${fmtNumber(e.metrics.cpm)}/min · errors ${fmtPct(e.metrics.error_rate)}`, `p50 ${fmtMs(e.metrics.p50_ms)} · p95 ${fmtMs(e.metrics.p95_ms)} · p99 ${fmtMs(e.metrics.p99_ms)}`, `seen by ${e.detected_by}${e.mtls ? " · mTLS" : ""}`);
    const upstream = upstreamHealthText(e.upstream_health);
    if (upstream) lines.push(`upstream: ${upstream}`);
  }
  tooltip.textContent = lines.join("\n");
  tooltip.hidden = false;
  const p = ev.renderedPosition;
  tooltip.style.left = `${p.x + 14}px`;
  tooltip.style.top = `${p.y + 14}px`;
});
cy.on("mouseout", "node, edge", () => {
  tooltip.hidden = true;
});

function rangeChanged(): void {
  pushState();
  void load();
  if (panel.dataset.kind === "service" && !panel.hidden) void openService(panel.dataset.id!);
}

windowSelect.addEventListener("change", () => {
  if (windowSelect.value === CUSTOM) {
    // Start from the range on screen, so a user narrows what they see.
    const now = Date.now();
    customRange.hidden = false;
    if (!fromInput.value) fromInput.value = toLocalInput(now - 60 * 60_000);
    if (!toInput.value) toInput.value = toLocalInput(now);
    fromInput.focus();
    return;
  }
  state.window = windowSelect.value;
  customRange.hidden = true;
  rangeChanged();
});

byId<HTMLFormElement>("custom-range").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const from = fromLocalInput(fromInput.value);
  const to = fromLocalInput(toInput.value);
  if (from == null || to == null || from >= to) {
    status.textContent = "the range needs a start before its end";
    return;
  }
  state.window = CUSTOM;
  state.from = from;
  state.to = to;
  rangeChanged();
});

nsSelect.addEventListener("change", () => {
  state.namespace = nsSelect.value;
  pushState();
  void load();
});

function focusService(): void {
  state.service = search.value.trim();
  state.depth = Number(depthSelect.value) || 1;
  syncControls();
  pushState();
  void load();
}
search.addEventListener("change", focusService);
depthSelect.addEventListener("change", focusService);
clearFocus.addEventListener("click", () => {
  search.value = "";
  focusService();
});

autoRefresh.addEventListener("change", schedule);

function schedule(): void {
  window.clearInterval(refreshTimer);
  if (autoRefresh.checked) refreshTimer = window.setInterval(() => void load(), REFRESH_MS);
}

themeButton.addEventListener("click", () => {
  state.theme = theme() === "dark" ? "light" : "dark";
  pushState(true);
  applyTheme();
});

byId("fit").addEventListener("click", () => cy.fit(undefined, 30));

window.addEventListener("popstate", () => {
  state = parseState(location.search);
  syncControls();
  applyTheme();
  closePanel();
  void load();
});

byId("collector-addr").textContent = `${location.hostname || "meshscope"}:11800`;

applyTheme();
syncControls();
schedule();
void load();
