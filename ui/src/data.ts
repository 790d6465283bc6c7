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

/// What the caller's proxy knows of the callee's hosts; only present when the caller's proxy
/// streams its statistics. The host counts are null when the proxy did not report them.
export interface UpstreamHealth {
  healthy: number | null;
  total: number | null;
  circuit_breaker_open?: boolean;
}

/// One side's figures of an edge, as that side's proxy logged the calls: the caller's proxy
/// logs a request once, the callee's proxy each attempt it received. `response_flags` counts
/// Envoy's response flags by kind (absent when none, or on servers that do not keep them).
export interface SideFigures {
  calls: number;
  errors: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  response_flags?: Record<string, number>;
}

/// How the two sides' entries of an edge's requests were matched by request id, and what the
/// mesh itself cost per paired single-attempt request (client latency minus server latency).
export interface Pairing {
  paired: number;
  client_only: number;
  server_only: number;
  overhead_p50_ms: number | null;
  overhead_p99_ms: number | null;
}

export interface TopoEdge {
  source: string;
  target: string;
  protocol: "http" | "tcp";
  detected_by: "server" | "client";
  mtls: boolean;
  mtls_ratio?: number;
  metrics: Metrics;
  upstream_health?: UpstreamHealth | null;
  /// As the caller's proxy saw the calls; absent when it logged none.
  client?: SideFigures;
  /// As the callee's proxy saw them; absent when it logged none.
  server?: SideFigures;
  /// Attempts beyond the first that the caller's proxy made; absent on older servers.
  retries?: number;
  /// Calls whose caller-cluster header named another service than the peer certificate.
  identity_conflicts?: number;
  pairing?: Pairing;
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

/// A node's name, its rate, and (with `words`) its error share when that makes it amber or
/// red: health is said in words as well as in colour and shape.
export function nodeLabel(n: TopoNode, words = true): string {
  if (!n.metrics.calls) return n.name;
  const h = health(n.metrics);
  const errors = words && (h === "warn" || h === "bad") ? ` · ${fmtPct(n.metrics.error_rate)} err` : "";
  return `${n.name}\n${fmtNumber(n.metrics.cpm)}/min${errors}`;
}

/// What the map writes on its edges: nothing, the request rate, the p95 latency or the
/// error share.
export const EDGE_LABELS = ["none", "rate", "p95", "errors"] as const;
export type EdgeLabelChoice = (typeof EDGE_LABELS)[number];

/// "185 retries" (or "1 retry"): the attempts beyond the first the caller's proxy made.
export function fmtRetries(retries: number): string {
  return `${fmtNumber(retries)} ${retries === 1 ? "retry" : "retries"}`;
}

/// The requests of an edge as its caller made them: the client side's calls when the
/// caller's proxy logged them, else the edge's calls.
export function edgeRequests(e: TopoEdge): number {
  return e.client ? e.client.calls : e.metrics.calls;
}

/// An edge's label for `choice`: short, so that it fits beside the edge. A TCP edge has no
/// latency or error share of its own and says TCP instead. An edge whose caller retried says
/// so: its rate label counts the caller's requests and the retries ("310 req · 185 retries"),
/// since the callee's figures count every attempt; the other labels add the retries.
export function edgeLabel(e: TopoEdge, choice: EdgeLabelChoice = "rate"): string {
  const m = e.metrics;
  const tcp = e.protocol === "tcp";
  const retries = e.retries ?? 0;
  const withRetries = (text: string) => (retries > 0 ? `${text} · ${fmtRetries(retries)}` : text);
  switch (choice) {
    case "none":
      return "";
    case "p95":
      return tcp ? "TCP" : withRetries(`p95 ${fmtMs(m.p95_ms)}`);
    case "errors":
      return tcp ? "TCP" : withRetries(`${fmtPct(m.error_rate)} err`);
    default:
      if (retries > 0) return `${fmtNumber(edgeRequests(e))} req · ${fmtRetries(retries)}`;
      return `${tcp ? "TCP " : ""}${fmtNumber(m.cpm)}/min`;
  }
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
/// Without `healthWords` node labels leave out the error share (big maps, where every
/// character is drawn again on each zoomed frame; shape and colour still tell health).
export function toElements(topo: Topology, labels: EdgeLabelChoice = "rate", healthWords = true): ElementDef[] {
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
      label: nodeLabel(n, healthWords),
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
        label: edgeLabel(e, labels),
        protocol: e.protocol,
        cpm: e.metrics.cpm,
        detected_by: e.detected_by,
        mtls: e.mtls,
        health: health(e.metrics),
        retries: e.retries ?? 0,
        // What the label shrinks to where it does not fit whole: the retries alone (set on
        // every edge, so that a refresh clears it where the retries stopped).
        label_short: e.retries && labels !== "none" ? fmtRetries(e.retries) : "",
      },
      classes: classes.join(" "),
    });
  }
  return out;
}

export const WINDOWS = ["5m", "15m", "1h", "6h", "24h", "7d"] as const;
/// The picker's entry for an absolute range, given by `from` and `to`.
export const CUSTOM = "custom";

export interface UiState {
  /// One of WINDOWS, or CUSTOM with `from` and `to` set.
  window: string;
  /// Epoch milliseconds; only used when `window` is CUSTOM.
  from: number;
  to: number;
  namespace: string;
  service: string;
  depth: number;
  theme: "light" | "dark" | "";
  selected: string; // "node:<id>" or "edge:<id>", or ""
  /// What edges are labelled with.
  labels: EdgeLabelChoice;
  /// Services (comma-separated ids) whose instances are drawn inside them.
  instances: string;
}

export const DEFAULT_STATE: UiState = {
  window: "15m",
  from: 0,
  to: 0,
  namespace: "",
  service: "",
  depth: 1,
  theme: "",
  selected: "",
  labels: "rate",
  instances: "",
};

/// An instant in the URL: RFC 3339 (what links carry, readable) or epoch milliseconds.
export function parseInstant(text: string | null): number | null {
  if (!text) return null;
  if (/^\d+$/.test(text)) return Number(text);
  // Only full dates with a time and a zone: anything else would depend on the reader's zone.
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/.test(text)) return null;
  const t = Date.parse(text);
  return Number.isNaN(t) ? null : t;
}

/// An instant for the URL and the API: RFC 3339 in UTC, to the second.
export function fmtInstant(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function parseState(search: string): UiState {
  const q = new URLSearchParams(search);
  const window = q.get("window") ?? "";
  const depth = Number(q.get("depth"));
  const theme = q.get("theme");
  const from = parseInstant(q.get("from"));
  const to = parseInstant(q.get("to"));
  const custom = window === CUSTOM && from != null && to != null && from < to;
  return {
    window: custom || (WINDOWS as readonly string[]).includes(window) ? window : DEFAULT_STATE.window,
    from: custom ? from : 0,
    to: custom ? to : 0,
    namespace: q.get("namespace") ?? "",
    service: q.get("service") ?? "",
    depth: Number.isInteger(depth) && depth >= 1 && depth <= 3 ? depth : 1,
    theme: theme === "light" || theme === "dark" ? theme : "",
    selected: q.get("selected") ?? "",
    instances: q.get("instances") ?? "",
    labels: (EDGE_LABELS as readonly string[]).includes(q.get("labels") ?? "") ? (q.get("labels") as EdgeLabelChoice) : DEFAULT_STATE.labels,
  };
}

/// The query string for a state; defaults are left out so links stay short.
export function stateQuery(s: UiState): string {
  const q = new URLSearchParams();
  if (s.window !== DEFAULT_STATE.window) q.set("window", s.window);
  if (s.window === CUSTOM) {
    q.set("from", fmtInstant(s.from));
    q.set("to", fmtInstant(s.to));
  }
  if (s.namespace) q.set("namespace", s.namespace);
  if (s.service) {
    q.set("service", s.service);
    if (s.depth !== 1) q.set("depth", String(s.depth));
  }
  if (s.theme) q.set("theme", s.theme);
  if (s.selected) q.set("selected", s.selected);
  if (s.labels !== DEFAULT_STATE.labels) q.set("labels", s.labels);
  if (s.instances) q.set("instances", s.instances);
  const text = q.toString();
  return text ? "?" + text : "";
}

/// The API's time parameters for a state: `window`, or `start` and `end` for a custom range.
export function windowParams(s: UiState): Record<string, string> {
  if (s.window === CUSTOM) return { start: fmtInstant(s.from), end: fmtInstant(s.to) };
  return { window: s.window };
}

/// How a panel names the state's range: a relative window, or its two ends in UTC.
export function rangeLabel(s: UiState): string {
  if (s.window !== CUSTOM) return `last ${s.window}`;
  const utc = (ms: number) => fmtInstant(ms).replace("T", " ").replace(/:00Z$/, "").replace(/Z$/, "");
  return `${utc(s.from)} to ${utc(s.to)} UTC`;
}

/// `<input type="datetime-local">` values are local wall-clock time without a zone.
export function toLocalInput(ms: number): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T${two(d.getHours())}:${two(d.getMinutes())}`;
}

export function fromLocalInput(value: string): number | null {
  const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d))?$/.exec(value);
  if (!m) return null;
  const [, y, mo, d, h, mi, sec] = m.map(Number);
  return new Date(y, mo - 1, d, h, mi, sec || 0).getTime();
}

/// The topology request for a state.
export function topologyUrl(s: UiState): string {
  const q = new URLSearchParams(windowParams(s));
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

/// The request for what an inbound endpoint of a service called while serving it, over the
/// state's range.
export function endpointDependenciesUrl(service: string, endpoint: string, s: UiState): string {
  const q = new URLSearchParams(windowParams(s));
  return `${servicePath(service)}/endpoints/${encodeURIComponent(endpoint)}/dependencies?${q.toString()}`;
}

export function namespacesOf(topo: Topology): string[] {
  const set = new Set<string>();
  for (const n of topo.nodes) if (n.namespace) set.add(n.namespace);
  return [...set].sort();
}

export interface Proxy {
  id: string;
  service: string;
  instance: string;
  envoy_version: string;
  last_seen: number;
  status: "up" | "stale";
}

export interface ProxySeries {
  name: string;
  cluster: string;
  kind: "counter" | "gauge" | "histogram";
  points: { t: number; value: number }[];
}

/// The statistics the service panel shows; the API returns only these.
export const PROXY_STATS = [
  "server.memory_allocated",
  "server.total_connections",
  "server.uptime",
  "upstream_rq_total",
  "upstream_rq_5xx",
  "upstream_cx_active",
  "membership_healthy",
  "membership_total",
];

export interface ClusterFigures {
  cluster: string;
  requests: number;
  errors_5xx: number;
  active_connections: number | null;
  healthy: number | null;
  hosts: number | null;
}

export interface ProxyFigures {
  memory_bytes: number | null;
  connections: number | null;
  uptime_s: number | null;
  requests: number;
  errors_5xx: number;
  clusters: ClusterFigures[];
}

function last(s: ProxySeries | undefined): number | null {
  if (!s || !s.points.length) return null;
  return s.points[s.points.length - 1].value;
}

function total(s: ProxySeries | undefined): number {
  return s ? s.points.reduce((a, p) => a + p.value, 0) : 0;
}

/// A proxy's figures over a window: gauges at their latest value, counters (already
/// per-minute increases) summed. Clusters are the proxy's upstreams, busiest first.
export function proxyFigures(series: ProxySeries[]): ProxyFigures {
  const server = (name: string) => series.find((s) => s.name === name && !s.cluster);
  const byCluster = new Map<string, Map<string, ProxySeries>>();
  for (const s of series) {
    if (!s.cluster) continue;
    let m = byCluster.get(s.cluster);
    if (!m) byCluster.set(s.cluster, (m = new Map()));
    m.set(s.name, s);
  }
  const clusters: ClusterFigures[] = [...byCluster].map(([cluster, m]) => ({
    cluster,
    requests: total(m.get("upstream_rq_total")),
    errors_5xx: total(m.get("upstream_rq_5xx")),
    active_connections: last(m.get("upstream_cx_active")),
    healthy: last(m.get("membership_healthy")),
    hosts: last(m.get("membership_total")),
  }));
  clusters.sort((a, b) => b.requests - a.requests || a.cluster.localeCompare(b.cluster));
  return {
    memory_bytes: last(server("server.memory_allocated")),
    connections: last(server("server.total_connections")),
    uptime_s: last(server("server.uptime")),
    requests: clusters.reduce((a, c) => a + c.requests, 0),
    errors_5xx: clusters.reduce((a, c) => a + c.errors_5xx, 0),
    clusters,
  };
}

/// "2/3 hosts healthy · circuit breaker open": what the edge's caller sees of the callee. A
/// closed breaker is said too, so that a reader knows it was reported rather than unknown.
export function upstreamHealthText(u: UpstreamHealth | null | undefined): string | null {
  if (!u) return null;
  const hosts = typeof u.healthy === "number" && typeof u.total === "number";
  const parts = [hosts ? `${u.healthy}/${u.total} hosts healthy` : "hosts not reported"];
  if (typeof u.circuit_breaker_open === "boolean") parts.push(`circuit breaker ${u.circuit_breaker_open ? "open" : "closed"}`);
  return parts.join(" · ");
}

/// An open breaker or an unhealthy host: the caller is already failing over or shedding load.
export function upstreamDegraded(u: UpstreamHealth | null | undefined): boolean {
  if (!u) return false;
  return u.circuit_breaker_open === true || (u.healthy != null && u.total != null && u.healthy < u.total);
}

export function fmtDuration(seconds: number | null): string {
  if (seconds == null) return "–";
  if (seconds < 60) return `${Math.round(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ${Math.floor((seconds % 3600) / 60)}m`;
  return `${Math.floor(seconds / 86400)}d ${Math.floor((seconds % 86400) / 3600)}h`;
}
