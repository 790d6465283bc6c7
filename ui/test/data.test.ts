import { describe, expect, it } from "vitest";
import {
  CUSTOM,
  fromLocalInput,
  proxyFigures,
  rangeLabel,
  toLocalInput,
  upstreamDegraded,
  upstreamHealthText,
  type ProxySeries,
  DEFAULT_STATE,
  edgeLabel,
  fmtMs,
  fmtNumber,
  fmtPct,
  health,
  parseState,
  servicePath,
  stateQuery,
  toElements,
  topologyUrl,
  type Metrics,
  type Topology,
} from "../src/data";

function m(calls: number, errors: number, cpm = calls / 15, p95: number | null = 12.3): Metrics {
  return {
    calls,
    cpm,
    errors,
    error_rate: calls ? errors / calls : 0,
    p50_ms: p95 && p95 / 2,
    p95_ms: p95,
    p99_ms: p95 && p95 * 1.5,
  };
}

// The shape of the API's answer for the captured shop mesh.
const topo: Topology = {
  start: 0,
  end: 900_000,
  nodes: [
    { id: "external", name: "external", namespace: null, kind: "virtual", layer: 0, metrics: m(0, 0, 0, null) },
    { id: "shop/backend", name: "backend", namespace: "shop", kind: "service", layer: 3, metrics: m(300, 50) },
    { id: "shop/db", name: "db", namespace: "shop", kind: "service", layer: 3, metrics: m(30, 0) },
    { id: "shop/frontend", name: "frontend", namespace: "shop", kind: "service", layer: 2, metrics: m(300, 2) },
    { id: "<b>x</b>", name: "<b>x</b>", namespace: null, kind: "service", layer: 1, metrics: m(0, 0, 0, null) },
  ],
  edges: [
    { source: "shop/frontend", target: "shop/backend", protocol: "http", detected_by: "server", mtls: true, metrics: m(300, 50, 20, 301.9) },
    { source: "shop/frontend", target: "shop/db", protocol: "tcp", detected_by: "client", mtls: false, metrics: m(30, 0, 2) },
  ],
};

describe("toElements", () => {
  const els = toElements(topo);
  const byId = (id: string) => els.find((e) => e.data.id === id)!;

  it("makes a compound parent per namespace, first", () => {
    expect(els[0]).toMatchObject({ group: "nodes", data: { id: "ns:shop", label: "shop" }, classes: "namespace" });
    expect(els.filter((e) => e.classes === "namespace")).toHaveLength(1);
    expect(byId("shop/frontend").data.parent).toBe("ns:shop");
    expect(byId("external").data.parent).toBeUndefined();
  });

  it("labels nodes with name and calls per minute, and classes them by kind and health", () => {
    expect(byId("shop/frontend").data.label).toBe("frontend\n20/min");
    expect(byId("shop/frontend").classes).toBe("service ok");
    expect(byId("shop/backend").classes).toBe("service bad");
    // Health in words as well as colour: 50 of 300 calls failed.
    expect(byId("shop/backend").data.label).toBe("backend\n20/min · 17% err");
    expect(byId("external").data.label).toBe("external");
    expect(byId("external").classes).toBe("virtual idle");
  });

  it("keeps hostile names as plain label text", () => {
    expect(byId("<b>x</b>").data.label).toBe("<b>x</b>");
  });

  it("makes one edge per caller, callee and protocol with its style classes", () => {
    const http = byId("shop/frontend->shop/backend:http");
    expect(http.group).toBe("edges");
    expect(http.data).toMatchObject({ source: "shop/frontend", target: "shop/backend" });
    expect(http.data.label).toBe("20/min");
    expect(http.classes).toBe("http server mtls bad");
    const tcp = byId("shop/frontend->shop/db:tcp");
    expect(tcp.data.label).toBe("TCP 2/min");
    expect(tcp.classes).toBe("tcp client-only plain ok");
  });
});

describe("formatting", () => {
  it("formats counts", () => {
    expect(fmtNumber(0)).toBe("0");
    expect(fmtNumber(20)).toBe("20");
    expect(fmtNumber(0.467)).toBe("0.47");
    expect(fmtNumber(12.34)).toBe("12.3");
    expect(fmtNumber(1500)).toBe("1.5k");
    expect(fmtNumber(2_000_000)).toBe("2M");
  });
  it("formats latency", () => {
    expect(fmtMs(null)).toBe("–");
    expect(fmtMs(1.5)).toBe("1.5ms");
    expect(fmtMs(301.9)).toBe("302ms");
    expect(fmtMs(2500)).toBe("2.5s");
  });
  it("formats error rates", () => {
    expect(fmtPct(0)).toBe("0%");
    expect(fmtPct(0.0004)).toBe("<0.1%");
    expect(fmtPct(0.012)).toBe("1.2%");
    expect(fmtPct(50 / 300)).toBe("17%");
  });
  it("grades health by thresholds", () => {
    expect(health(m(0, 0))).toBe("idle");
    expect(health(m(1000, 5))).toBe("ok");
    expect(health(m(100, 1))).toBe("warn");
    expect(health(m(100, 5))).toBe("bad");
    expect(health(m(100, 5), { warn: 0.1, bad: 0.5 })).toBe("ok");
  });
  it("labels an edge with the figure chosen, never with a glyph", () => {
    const [http, tcp] = topo.edges;
    expect([edgeLabel(http, "none"), edgeLabel(http, "rate"), edgeLabel(http, "p95"), edgeLabel(http, "errors")]).toEqual(["", "20/min", "p95 302ms", "17% err"]);
    expect([edgeLabel(tcp, "rate"), edgeLabel(tcp, "p95"), edgeLabel(tcp, "errors")]).toEqual(["TCP 2/min", "TCP", "TCP"]);
    expect(toElements(topo, "p95").find((e) => e.data.id === "shop/frontend->shop/backend:http")!.data.label).toBe("p95 302ms");
  });
});

describe("URL state", () => {
  it("defaults to the last 15 minutes with short links", () => {
    expect(parseState("")).toEqual(DEFAULT_STATE);
    expect(stateQuery(DEFAULT_STATE)).toBe("");
    expect(topologyUrl(DEFAULT_STATE)).toBe("/api/v1/topology?window=15m");
  });
  it("round-trips every field", () => {
    const s = { window: "1h", from: 0, to: 0, namespace: "shop", service: "shop/backend", depth: 2, theme: "dark" as const, selected: "node:shop/backend", labels: "p95" as const, instances: "shop/backend" };
    expect(parseState(stateQuery(s))).toEqual(s);
    expect(topologyUrl(s)).toBe("/api/v1/topology?window=1h&namespace=shop&service=shop%2Fbackend&depth=2");
    const several = { ...s, namespace: "lab,shop", labels: "none" as const };
    expect(parseState(stateQuery(several))).toEqual(several);
    expect(topologyUrl(several)).toBe("/api/v1/topology?window=1h&namespace=lab%2Cshop&service=shop%2Fbackend&depth=2");
  });
  it("ignores values it does not know", () => {
    expect(parseState("?window=3y&depth=9&theme=pink")).toEqual(DEFAULT_STATE);
  });
  it("keeps a custom range as RFC 3339 and asks the API for start and end", () => {
    const from = Date.UTC(2026, 11, 1, 22, 30);
    const to = Date.UTC(2026, 11, 1, 23, 15);
    const s = { ...DEFAULT_STATE, window: CUSTOM, from, to };
    expect(stateQuery(s)).toBe("?window=custom&from=2026-12-01T22%3A30%3A00Z&to=2026-12-01T23%3A15%3A00Z");
    expect(parseState(stateQuery(s))).toEqual(s);
    expect(topologyUrl(s)).toBe("/api/v1/topology?start=2026-12-01T22%3A30%3A00Z&end=2026-12-01T23%3A15%3A00Z");
    expect(rangeLabel(s)).toBe("2026-12-01 22:30 to 2026-12-01 23:15 UTC");
    expect(parseState(`?window=custom&from=${from}&to=${to}`)).toEqual(s);
  });
  it("falls back to 15m for a custom range that is missing, zoneless or backwards", () => {
    for (const q of [
      "?window=custom",
      "?window=custom&from=2026-12-01T22:30:00Z",
      "?window=custom&from=2026-12-01T22:30&to=2026-12-01T23:30",
      "?window=custom&from=2026-12-01T23:30:00Z&to=2026-12-01T22:30:00Z",
    ]) {
      expect(parseState(q)).toEqual(DEFAULT_STATE);
    }
  });
  it("reads and writes the picker's local wall-clock time", () => {
    const t = new Date(2026, 11, 1, 9, 5).getTime();
    expect(toLocalInput(t)).toBe("2026-12-01T09:05");
    expect(fromLocalInput("2026-12-01T09:05")).toBe(t);
    expect(fromLocalInput("yesterday")).toBeNull();
  });
  it("drops the depth when nothing is focused", () => {
    expect(stateQuery({ ...DEFAULT_STATE, depth: 3 })).toBe("");
  });
  it("escapes service ids into one path segment", () => {
    expect(servicePath("shop/backend")).toBe("/api/v1/services/shop%2Fbackend");
    expect(servicePath("a b?")).toBe("/api/v1/services/a%20b%3F");
  });
});

describe("proxy figures", () => {
  const pts = (...v: number[]) => v.map((value, i) => ({ t: i * 60_000, value }));
  const series: ProxySeries[] = [
    { name: "server.memory_allocated", cluster: "", kind: "gauge", points: pts(8_000_000, 8_680_888) },
    { name: "server.total_connections", cluster: "", kind: "gauge", points: pts(10) },
    { name: "upstream_rq_total", cluster: "outbound|18200||backend.shop.svc.cluster.local", kind: "counter", points: pts(100, 200) },
    { name: "upstream_rq_5xx", cluster: "outbound|18200||backend.shop.svc.cluster.local", kind: "counter", points: pts(20, 30) },
    { name: "membership_healthy", cluster: "outbound|18200||backend.shop.svc.cluster.local", kind: "gauge", points: pts(1) },
    { name: "membership_total", cluster: "outbound|18200||backend.shop.svc.cluster.local", kind: "gauge", points: pts(2) },
    { name: "upstream_rq_total", cluster: "outbound|18082||payments.shop.svc.cluster.local", kind: "counter", points: pts(30) },
  ];
  it("takes gauges at their last value and sums counters, busiest upstream first", () => {
    const f = proxyFigures(series);
    expect(f.memory_bytes).toBe(8_680_888);
    expect(f.connections).toBe(10);
    expect(f.uptime_s).toBeNull();
    expect(f.requests).toBe(330);
    expect(f.errors_5xx).toBe(50);
    expect(f.clusters.map((c) => [c.cluster, c.requests, c.errors_5xx, c.healthy, c.hosts])).toEqual([
      ["outbound|18200||backend.shop.svc.cluster.local", 300, 50, 1, 2],
      ["outbound|18082||payments.shop.svc.cluster.local", 30, 0, null, null],
    ]);
  });
  it("has nothing to show for a proxy without statistics", () => {
    expect(proxyFigures([])).toEqual({ memory_bytes: null, connections: null, uptime_s: null, requests: 0, errors_5xx: 0, clusters: [] });
  });
  it("describes upstream health only when the edge has it", () => {
    expect(upstreamHealthText({ healthy: 2, total: 3, circuit_breaker_open: false })).toBe("2/3 hosts healthy · circuit breaker closed");
    expect(upstreamHealthText({ healthy: 0, total: 3, circuit_breaker_open: true })).toBe("0/3 hosts healthy · circuit breaker open");
    expect(upstreamHealthText({ healthy: null, total: null, circuit_breaker_open: false })).toBe("hosts not reported · circuit breaker closed");
    expect(upstreamHealthText({ healthy: 1, total: 1 })).toBe("1/1 hosts healthy");
    expect(upstreamHealthText(undefined)).toBeNull();
    expect(upstreamHealthText(null)).toBeNull();
  });
  it("calls upstream health degraded on an open breaker or a host down", () => {
    expect(upstreamDegraded({ healthy: 1, total: 1, circuit_breaker_open: false })).toBe(false);
    expect(upstreamDegraded({ healthy: 2, total: 3, circuit_breaker_open: false })).toBe(true);
    expect(upstreamDegraded({ healthy: 1, total: 1, circuit_breaker_open: true })).toBe(true);
    expect(upstreamDegraded({ healthy: null, total: null, circuit_breaker_open: false })).toBe(false);
    expect(upstreamDegraded(undefined)).toBe(false);
  });
});
