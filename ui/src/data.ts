// Pure data handling: API JSON to graph elements, number formatting and the URL state.
// Nothing here touches the DOM, so it is unit tested directly.

export interface Metrics {
  calls: number;
  cpm: number;
  errors: number;
  error_rate: number;
  errors_4xx?: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  apdex?: number | null;
  bytes_sent?: number;
  bytes_received?: number;
  tcp_connections?: number;
  mtls_calls?: number;
}

export interface TopoNode {
  id: string;
  name: string;
  namespace: string | null;
  kind: "service" | "virtual";
  layer: number;
  metrics: Metrics;
}

export interface TopoEdge {
  source: string;
  target: string;
  protocol: "http" | "tcp";
  detected_by: "server" | "client";
  mtls: boolean;
  mtls_ratio?: number;
  metrics: Metrics;
}

export interface Topology {
  start: number;
  end: number;
  nodes: TopoNode[];
  edges: TopoEdge[];
}

export type Point = { t: number } & Metrics;

// Error-rate thresholds for node and edge health: at or above `warn` is amber, at or above
// `bad` is red.
export const HEALTH = { warn: 0.01, bad: 0.05 };

export type Health = "idle" | "ok" | "warn" | "bad";

export function health(m: Metrics, t = HEALTH): Health {
  if (!m.calls) return "idle";
  if (m.error_rate >= t.bad) return "bad";
  if (m.error_rate >= t.warn) return "warn";
  return "ok";
}

export function fmtNumber(n: number): string {
  if (!Number.isFinite(n)) return "–";
  const a = Math.abs(n);
  if (a >= 1e6) return trim(n / 1e6) + "M";
  if (a >= 1e3) return trim(n / 1e3) + "k";
  if (a >= 100 || Number.isInteger(n)) return String(Math.round(n));
  if (a >= 10) return n.toFixed(1);
  return trim(n);
}

function trim(n: number): string {
  return n.toFixed(Math.abs(n) >= 10 ? 1 : 2).replace(/\.?0+$/, "");
}

export function fmtMs(ms: number | null | undefined): string {
  if (ms == null) return "–";
  if (ms >= 1000) return trim(ms / 1000) + "s";
  if (ms >= 100) return Math.round(ms) + "ms";
  return trim(ms) + "ms";
}

export function fmtPct(rate: number | null | undefined): string {
  if (rate == null) return "–";
  const p = rate * 100;
  if (p === 0) return "0%";
  if (p < 0.1) return "<0.1%";
  return (p >= 10 ? p.toFixed(0) : p.toFixed(1).replace(/\.0$/, "")) + "%";
}

export function fmtBytes(b: number | undefined): string {
  if (b == null) return "–";
  if (b >= 1 << 30) return trim(b / (1 << 30)) + " GiB";
  if (b >= 1 << 20) return trim(b / (1 << 20)) + " MiB";
  if (b >= 1 << 10) return trim(b / (1 << 10)) + " KiB";
  return b + " B";
}

export function nodeLabel(n: TopoNode): string {
  return n.metrics.calls ? `${n.name}\n${fmtNumber(n.metrics.cpm)}/min` : n.name;
}

export function edgeLabel(e: TopoEdge): string {
  const m = e.metrics;
  const lock = e.mtls ? "🔒 " : "";
  if (e.protocol === "tcp") return `${lock}TCP ${fmtNumber(m.cpm)}/min`;
  return `${lock}${fmtNumber(m.cpm)} rpm · p95 ${fmtMs(m.p95_ms)} · ${fmtPct(m.error_rate)}`;
}

export function edgeId(e: { source: string; target: string; protocol: string }): string {
  return `${e.source}->${e.target}:${e.protocol}`;
}

export const NS_PREFIX = "ns:";

export interface ElementDef {
  group: "nodes" | "edges";
  data: Record<string, unknown>;
  classes?: string;
}

/// Graph elements for a topology: one compound parent per namespace, a node per service and
/// an edge per caller, callee and protocol. Labels are plain strings (drawn on the canvas).
export function toElements(topo: Topology): ElementDef[] {
  const out: ElementDef[] = [];
  const namespaces = new Set<string>();
  for (const n of topo.nodes) if (n.namespace) namespaces.add(n.namespace);
  for (const ns of [...namespaces].sort()) {
    out.push({ group: "nodes", data: { id: NS_PREFIX + ns, label: ns }, classes: "namespace" });
  }
  for (const n of topo.nodes) {
    const data: Record<string, unknown> = {
      id: n.id,
      name: n.name,
      label: nodeLabel(n),
      kind: n.kind,
      layer: n.layer,
      health: health(n.metrics),
      cpm: n.metrics.cpm,
      error_rate: n.metrics.error_rate,
    };
    if (n.namespace) data.parent = NS_PREFIX + n.namespace;
    out.push({ group: "nodes", data, classes: `${n.kind} ${health(n.metrics)}` });
  }
  for (const e of topo.edges) {
    const classes = [
      e.protocol,
      e.detected_by === "client" ? "client-only" : "server",
      e.mtls ? "mtls" : "plain",
      health(e.metrics),
    ];
    out.push({
      group: "edges",
      data: {
        id: edgeId(e),
        source: e.source,
        target: e.target,
        label: edgeLabel(e),
        protocol: e.protocol,
        detected_by: e.detected_by,
        mtls: e.mtls,
        health: health(e.metrics),
      },
      classes: classes.join(" "),
    });
  }
  return out;
}

export const WINDOWS = ["5m", "15m", "1h", "6h", "24h", "7d"] as const;

export interface UiState {
  window: string;
  namespace: string;
  service: string;
  depth: number;
  theme: "light" | "dark" | "";
  selected: string; // "node:<id>" or "edge:<id>", or ""
}

export const DEFAULT_STATE: UiState = {
  window: "15m",
  namespace: "",
  service: "",
  depth: 1,
  theme: "",
  selected: "",
};

export function parseState(search: string): UiState {
  const q = new URLSearchParams(search);
  const window = q.get("window") ?? "";
  const depth = Number(q.get("depth"));
  const theme = q.get("theme");
  return {
    window: (WINDOWS as readonly string[]).includes(window) ? window : DEFAULT_STATE.window,
    namespace: q.get("namespace") ?? "",
    service: q.get("service") ?? "",
    depth: Number.isInteger(depth) && depth >= 1 && depth <= 3 ? depth : 1,
    theme: theme === "light" || theme === "dark" ? theme : "",
    selected: q.get("selected") ?? "",
  };
}

/// The query string for a state; defaults are left out so links stay short.
export function stateQuery(s: UiState): string {
  const q = new URLSearchParams();
  if (s.window !== DEFAULT_STATE.window) q.set("window", s.window);
  if (s.namespace) q.set("namespace", s.namespace);
  if (s.service) {
    q.set("service", s.service);
    if (s.depth !== 1) q.set("depth", String(s.depth));
  }
  if (s.theme) q.set("theme", s.theme);
  if (s.selected) q.set("selected", s.selected);
  const text = q.toString();
  return text ? "?" + text : "";
}

/// The topology request for a state.
export function topologyUrl(s: UiState): string {
  const q = new URLSearchParams({ window: s.window });
  if (s.namespace) q.set("namespace", s.namespace);
  if (s.service) {
    q.set("service", s.service);
    q.set("depth", String(s.depth));
  }
  return "/api/v1/topology?" + q.toString();
}

/// A service id as one path segment: the API accepts `%2F` for the namespace slash.
export function servicePath(id: string): string {
  return "/api/v1/services/" + encodeURIComponent(id);
}

/// uPlot's columnar data from a per-minute series: seconds on x, one column per field.
export function columns(series: Point[], fields: (keyof Metrics)[]): (number | null)[][] {
  const xs = series.map((p) => p.t / 1000);
  const cols: (number | null)[][] = [xs];
  for (const f of fields) {
    cols.push(series.map((p) => (p[f] as number | null | undefined) ?? null));
  }
  return cols;
}

export function namespacesOf(topo: Topology): string[] {
  const set = new Set<string>();
  for (const n of topo.nodes) if (n.namespace) set.add(n.namespace);
  return [...set].sort();
}
