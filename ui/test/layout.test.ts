import { describe, expect, it } from "vitest";
import type { Metrics, TopoNode, Topology } from "../src/data";
import { bandLayout, elkGraph, elkPositions, useElk } from "../src/layout";

const none: Metrics = { calls: 0, cpm: 0, errors: 0, error_rate: 0, p50_ms: null, p95_ms: null, p99_ms: null };

function node(id: string, layer: number): TopoNode {
  const [namespace, name] = id.includes("/") ? id.split("/") : [null, id];
  return { id, name, namespace, kind: namespace ? "service" : "virtual", layer, metrics: none };
}

const edge = (source: string, target: string) => ({ source, target, protocol: "http" as const, detected_by: "server" as const, mtls: false, metrics: none });

const topo: Topology = {
  start: 0,
  end: 1,
  nodes: [node("external", 0), node("shop/ingress", 1), node("shop/frontend", 2), node("shop/backend", 3), node("pay/gateway", 3), node("pay/ledger", 4)],
  edges: [edge("external", "shop/ingress"), edge("shop/ingress", "shop/frontend"), edge("shop/frontend", "shop/backend"), edge("shop/frontend", "pay/gateway"), edge("pay/gateway", "pay/ledger")],
};

describe("banded layout", () => {
  const p = bandLayout(topo);
  it("places every node, deeper calls further right", () => {
    expect(p.size).toBe(6);
    const x = (id: string) => p.get(id)!.x;
    expect(x("external")).toBeLessThan(x("shop/ingress"));
    expect(x("shop/ingress")).toBeLessThan(x("shop/frontend"));
    expect(x("shop/frontend")).toBeLessThan(x("shop/backend"));
    expect(x("pay/gateway")).toBeLessThan(x("pay/ledger"));
  });
  it("gives each namespace its own band, so boxes cannot overlap", () => {
    const ys = (ns: string) => [...p].filter(([id]) => id.startsWith(ns + "/")).map(([, q]) => q.y);
    const shop = ys("shop");
    const pay = ys("pay");
    // Namespace boxes pad their nodes by less than half the gap between bands.
    expect(Math.min(...pay) - Math.max(...shop)).toBeGreaterThanOrEqual(100);
    expect(p.get("external")!.y).toBeLessThan(Math.min(...shop));
  });
});

describe("ELK graph", () => {
  it("nests services in namespace boxes and keeps edges at the root", () => {
    const g = elkGraph(topo);
    expect(g.children!.map((c) => c.id)).toEqual(["external", "ns:shop", "ns:pay"]);
    expect(g.children![1].children!.map((c) => c.id)).toEqual(["shop/ingress", "shop/frontend", "shop/backend"]);
    expect(g.edges).toHaveLength(5);
    expect(g.layoutOptions!["elk.hierarchyHandling"]).toBe("INCLUDE_CHILDREN");
  });
  it("turns box-relative answers into centres", () => {
    const p = elkPositions({
      id: "root",
      children: [
        { id: "external", x: 0, y: 10, width: 40, height: 20 },
        { id: "ns:shop", x: 100, y: 50, width: 300, height: 200, children: [{ id: "shop/ingress", x: 20, y: 30, width: 40, height: 20 }] },
      ],
    });
    expect(p.get("external")).toEqual({ x: 20, y: 20 });
    expect(p.get("shop/ingress")).toEqual({ x: 140, y: 90 });
    expect(p.has("ns:shop")).toBe(false);
  });
  it("is used for small maps only", () => {
    expect(useElk(topo)).toBe(true);
    const nodes = Array.from({ length: 500 }, (_, i) => node(`ns/s${i}`, i));
    expect(useElk({ ...topo, nodes })).toBe(false);
  });
});

describe("banded layout of many namespaces", () => {
  // 12 namespaces of 20 services in 4 call depths: one stack would be a tall strip.
  const nodes = Array.from({ length: 240 }, (_, i) => node(`ns${String(i % 12).padStart(2, "0")}/s${i}`, Math.floor(i / 60)));
  const t: Topology = { start: 0, end: 1, nodes, edges: [] };
  const p = bandLayout(t);
  it("puts bands side by side for a map about as wide as the screen", () => {
    const xs = [...p.values()].map((q) => q.x);
    const ys = [...p.values()].map((q) => q.y);
    const ratio = (Math.max(...xs) - Math.min(...xs)) / (Math.max(...ys) - Math.min(...ys));
    expect(ratio).toBeGreaterThan(0.8);
    expect(ratio).toBeLessThan(3);
  });
  it("keeps every band apart from every other", () => {
    const bounds = new Map<string, { x1: number; x2: number; y1: number; y2: number }>();
    for (const n of nodes) {
      const q = p.get(n.id)!;
      const b = bounds.get(n.namespace!) ?? { x1: q.x, x2: q.x, y1: q.y, y2: q.y };
      bounds.set(n.namespace!, { x1: Math.min(b.x1, q.x), x2: Math.max(b.x2, q.x), y1: Math.min(b.y1, q.y), y2: Math.max(b.y2, q.y) });
    }
    const list = [...bounds.values()];
    expect(list).toHaveLength(12);
    // Boxes pad their nodes by up to 50 px on each side.
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length; j++) {
        const [a, b] = [list[i], list[j]];
        expect(a.x2 + 100 < b.x1 || b.x2 + 100 < a.x1 || a.y2 + 100 < b.y1 || b.y2 + 100 < a.y1).toBe(true);
      }
    }
  });
  it("still places deeper calls further right within a band", () => {
    const a = p.get("ns00/s0")!;
    const b = p.get("ns00/s60")!;
    expect(b.x).toBeGreaterThan(a.x);
  });
});
