import { describe, expect, it } from "vitest";
import { parseExpression, type Subject } from "../src/expression";

const node = (name: string, ns: string, calls: number, errors: number, p95: number | null, cpm = calls): Subject => ({
  kind: "node",
  name,
  namespaces: [ns],
  calls,
  cpm,
  error_rate: calls ? errors / calls : 0,
  p50_ms: p95,
  p95_ms: p95,
  p99_ms: p95,
});
const edge = (protocol: string, mtls: boolean, calls: number, errors: number, p95: number | null, namespaces = ["shop"]): Subject => ({
  ...node("a → b", "", calls, errors, p95),
  kind: "edge",
  namespaces,
  protocol,
  mtls,
});

const backend = node("backend", "shop", 300, 50, 320); // 17% errors
const frontend = node("frontend", "shop", 300, 2, 40); // 0.7%
const quiet = node("legacy", "shop", 0, 0, null);
const mtlsHttp = edge("http", true, 300, 50, 301);
const plainTcp = edge("tcp", false, 30, 0, 2, ["shop", "lab"]);

function picks(text: string, subjects: Subject[]): boolean[] {
  const p = parseExpression(text)!;
  return subjects.map((s) => p(s));
}

describe("expressions", () => {
  it("compares error share as a percentage or a fraction; quiet elements have none", () => {
    expect(picks("errors > 5%", [backend, frontend, quiet])).toEqual([true, false, false]);
    expect(picks("errors > 0.005", [backend, frontend, quiet])).toEqual([true, true, false]);
    expect(picks("errors > 1", [backend, frontend, quiet])).toEqual([true, false, false]);
  });
  it("compares latency in ms or s", () => {
    expect(picks("p95 > 200ms", [backend, frontend, quiet])).toEqual([true, false, false]);
    expect(picks("p95 >= 0.04s", [backend, frontend, quiet])).toEqual([true, true, false]);
  });
  it("picks edges by mTLS and protocol, never services", () => {
    expect(picks("no mtls", [mtlsHttp, plainTcp, backend])).toEqual([false, true, false]);
    expect(picks("!mtls", [mtlsHttp, plainTcp])).toEqual([false, true]);
    expect(picks("mtls = yes", [mtlsHttp, plainTcp])).toEqual([true, false]);
    expect(picks("protocol = tcp", [mtlsHttp, plainTcp, backend])).toEqual([false, true, false]);
    expect(picks("tcp", [mtlsHttp, plainTcp])).toEqual([false, true]);
  });
  it("picks by namespace and name; an edge is in both ends' namespaces", () => {
    expect(picks("ns = lab", [backend, plainTcp, mtlsHttp])).toEqual([false, true, false]);
    expect(picks("ns != shop", [backend, plainTcp])).toEqual([false, false]);
    expect(picks("name = Backend", [backend, frontend])).toEqual([true, false]);
  });
  it("joins terms with and before or", () => {
    expect(picks("errors > 1% and p95 > 300ms or tcp", [backend, frontend, plainTcp, mtlsHttp])).toEqual([true, false, true, true]);
    expect(picks("rate >= 300 && ns = shop", [backend, plainTcp])).toEqual([true, false]);
  });
  it("says what it cannot read", () => {
    expect(parseExpression("  ")).toBeNull();
    expect(() => parseExpression("latency > 5")).toThrow(/unknown field "latency"/);
    expect(() => parseExpression("p95 > fast")).toThrow(/p95 needs a number/);
    expect(() => parseExpression("errors > 5% and")).toThrow(/needs a term on each side/);
    expect(() => parseExpression("protocol = udp")).toThrow(/http or tcp/);
    expect(() => parseExpression("ns > shop")).toThrow(/= or !=/);
    expect(() => parseExpression("backend")).toThrow(/cannot read "backend"/);
  });
});
