import { describe, expect, it } from "vitest";
import { DEFAULT_STATE, edgeLabel, endpointDependenciesUrl, fmtRetries, toElements, type Metrics, type SideFigures, type TopoEdge } from "../src/data";
import { conflictsText, FLAG_TITLES, flagTitle, missingProxy, pairingRows, retriesText, sideErrorRate, sideRows, topFlags } from "../src/edge-sides";
import { parseExpression, type Subject } from "../src/expression";

function metrics(calls: number, errors: number, cpm: number): Metrics {
  return { calls, cpm, errors, error_rate: calls ? errors / calls : 0, p50_ms: 5, p95_ms: 20, p99_ms: 40 };
}

// The mesh: the caller made 310 requests of which 20 finally failed; with two
// retries allowed the callee received 310 + 185 = 495 attempts, 205 of them failed.
const client: SideFigures = { calls: 310, errors: 20, p50_ms: 12.5, p95_ms: 48, p99_ms: 95.2 };
const server: SideFigures = { calls: 495, errors: 205, p50_ms: 4.1, p95_ms: 20, p99_ms: null };
const retried: TopoEdge = {
  source: "shop/frontend",
  target: "shop/backend",
  protocol: "http",
  detected_by: "server",
  mtls: true,
  metrics: metrics(495, 205, 33),
  client,
  server,
  retries: 185,
  identity_conflicts: 0,
};

describe("the retries on the map", () => {
  it("a retried edge's rate label counts the caller's requests and the retries", () => {
    expect(edgeLabel(retried, "rate")).toBe("310 req · 185 retries");
    expect(edgeLabel(retried, "p95")).toBe("p95 20ms · 185 retries");
    expect(edgeLabel(retried, "errors")).toBe("41% err · 185 retries");
    expect(edgeLabel(retried, "none")).toBe("");
  });

  it("without a client side the edge's own calls are the requests", () => {
    const serverOnly: TopoEdge = { ...retried, client: undefined, retries: 2, metrics: metrics(1234, 0, 82) };
    expect(edgeLabel(serverOnly)).toBe("1.23k req · 2 retries");
    expect(fmtRetries(1)).toBe("1 retry");
  });

  it("edges without retries, and older servers without the field, keep the rate", () => {
    expect(edgeLabel({ ...retried, retries: 0 })).toBe("33/min");
    const { retries: _, client: __, server: ___, ...old } = retried;
    expect(edgeLabel(old)).toBe("33/min");
    const el = toElements({ start: 0, end: 0, nodes: [], edges: [old, retried] }).filter((e) => e.group === "edges");
    expect(el.map((e) => e.data.retries)).toEqual([0, 185]);
    // Where the whole label does not fit, the map may draw the retries alone.
    expect(el.map((e) => e.data.label_short)).toEqual(["", "185 retries"]);
  });

  it("expressions pick edges by their retries", () => {
    const edge = (retries: number): Subject => ({ kind: "edge", name: "a → b", namespaces: [], calls: 1, cpm: 1, error_rate: 0, p50_ms: 1, p95_ms: 1, p99_ms: 1, retries });
    const p = parseExpression("retries > 0")!;
    expect(p(edge(185))).toBe(true);
    expect(p(edge(0))).toBe(false);
    expect(p({ ...edge(3), kind: "node" })).toBe(false);
    expect(parseExpression("retries >= 185")!(edge(185))).toBe(true);
    expect(() => parseExpression("retries > 5%")).toThrow(/retries needs a number/);
  });
});

describe("both sides side by side", () => {
  it("lists calls, errors, error share and percentiles per side", () => {
    expect(sideRows(client, server)).toEqual([
      ["calls", "310", "495"],
      ["errors", "20", "205"],
      ["error %", "6.5%", "41%"],
      ["p50", "12.5ms", "4.1ms"],
      ["p95", "48ms", "20ms"],
      ["p99", "95.2ms", "–"],
    ]);
    expect(sideErrorRate({ ...client, calls: 0, errors: 0 })).toBeNull();
  });

  it("says which proxy is missing", () => {
    expect(sideRows(client, null).map((r) => r[2])).toEqual(["–", "–", "–", "–", "–", "–"]);
    expect(missingProxy(client, undefined)).toBe("callee has no proxy: only the caller's proxy logged these calls");
    expect(missingProxy(null, server)).toBe("caller has no proxy: only the callee's proxy logged these calls");
    expect(missingProxy(client, server)).toBeNull();
  });

  it("says the retries and the identity conflicts only when there are any", () => {
    expect(retriesText(185, client)).toBe("185 retries over 310 requests: attempts beyond the first that the caller's proxy made");
    expect(retriesText(1, { ...client, calls: 1 })).toBe("1 retry over 1 request: attempts beyond the first that the caller's proxy made");
    expect(retriesText(0, client)).toBeNull();
    expect(retriesText(undefined, client)).toBeNull();
    expect(conflictsText(0)).toBeNull();
    expect(conflictsText(5)).toMatch(/^5 calls whose caller header named another service/);
  });

  it("writes the pairing and the mesh's overhead, with null overheads as a dash", () => {
    expect(pairingRows({ paired: 290, client_only: 20, server_only: 0, overhead_p50_ms: 0.84, overhead_p99_ms: null })).toEqual([
      ["paired", "290"],
      ["caller only", "20"],
      ["callee only", "0"],
      ["mesh overhead p50", "0.84ms"],
      ["mesh overhead p99", "–"],
    ]);
    expect(pairingRows(undefined)).toEqual([]);
  });
});

describe("response flags", () => {
  it("keeps the five largest, largest first, ties by name, each with its meaning", () => {
    const flags = { UF: 3, URX: 1, UH: 7, UT: 3, DC: 2, NR: 1, LR: 0 };
    expect(topFlags(flags).map((f) => [f.flag, f.count])).toEqual([
      ["UH", 7],
      ["UF", 3],
      ["UT", 3],
      ["DC", 2],
      ["NR", 1],
    ]);
    expect(topFlags(flags)[1].title).toBe("upstream connection failure");
    expect(topFlags(undefined)).toEqual([]);
    expect(topFlags({ LR: 0 })).toEqual([]);
  });

  it("has a plain title for the flags Envoy sets most, and names an unknown one", () => {
    expect(flagTitle("URX")).toBe("retry limit exceeded: every attempt allowed failed");
    expect(flagTitle("UO")).toMatch(/circuit breaker/);
    expect(flagTitle("NR")).toMatch(/no route/);
    expect(flagTitle("XYZ")).toBe("Envoy response flag XYZ");
    for (const flag of ["UH", "UF", "UO", "NR", "URX", "UT", "UC", "DC", "LH", "LR", "RL", "DI", "FI", "UAEX"]) {
      expect(FLAG_TITLES[flag], flag).toBeTruthy();
    }
  });
});

describe("endpoint dependencies", () => {
  it("asks for an endpoint as one encoded path segment, over the state's range", () => {
    expect(endpointDependenciesUrl("shop/frontend", "GET /api/v1/items/{n}", DEFAULT_STATE)).toBe(
      "/api/v1/services/shop%2Ffrontend/endpoints/GET%20%2Fapi%2Fv1%2Fitems%2F%7Bn%7D/dependencies?window=15m",
    );
    const custom = { ...DEFAULT_STATE, window: "custom", from: Date.UTC(2026, 0, 1, 10), to: Date.UTC(2026, 0, 1, 11) };
    expect(endpointDependenciesUrl("a", "/", custom)).toBe("/api/v1/services/a/endpoints/%2F/dependencies?start=2026-01-01T10%3A00%3A00Z&end=2026-01-01T11%3A00%3A00Z");
  });
});
