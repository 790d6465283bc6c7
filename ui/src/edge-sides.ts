// Both sides of an edge as text: the caller's and the callee's figures side by side, which
// proxy is missing, the retries, identity conflicts, how the sides were paired and what the
// mesh itself cost, and Envoy's response flags with their meaning. Nothing here touches the
// DOM, so it is unit tested directly.

import { fmtMs, fmtNumber, fmtPct, fmtRetries, type Pairing, type SideFigures } from "./data";

/// What Envoy's response flags (`%RESPONSE_FLAGS%`, the short form) mean, in plain words.
export const FLAG_TITLES: Readonly<Record<string, string>> = {
  UH: "no healthy upstream host",
  UF: "upstream connection failure",
  UO: "upstream overflow: a circuit breaker was open",
  NR: "no route configured for the request",
  URX: "retry limit exceeded: every attempt allowed failed",
  NC: "upstream cluster not found",
  DT: "connection or request exceeded its maximum duration",
  DC: "the caller closed the connection",
  LH: "the local service failed its health check",
  UT: "upstream request timeout",
  LR: "the connection was reset locally",
  UR: "the upstream reset the connection",
  UC: "the upstream closed the connection",
  DI: "delayed by fault injection",
  FI: "aborted by fault injection",
  RL: "rate limited locally",
  UAEX: "refused by the external authorization service",
  RLSE: "the rate limit service failed",
  IH: "invalid Envoy request headers",
  SI: "stream idle timeout",
  DPE: "protocol error on the caller's connection",
  UPE: "protocol error on the upstream connection",
  UMSDR: "upstream stream exceeded its maximum duration",
  OM: "ended by Envoy's overload manager",
  DF: "DNS resolution failed",
  DO: "dropped by Envoy's overload protection",
};

/// The plain-English meaning of response flag `flag`, or a line naming it when unknown.
export function flagTitle(flag: string): string {
  return FLAG_TITLES[flag] ?? `Envoy response flag ${flag}`;
}

/// One response flag as the panel lists it.
export interface FlagCount {
  flag: string;
  count: number;
  title: string;
}

/// The `limit` most frequent response flags of a side, largest count first (ties by name);
/// empty when the side has none. Flags with no count are left out.
export function topFlags(flags: Record<string, number> | undefined, limit = 5): FlagCount[] {
  if (!flags) return [];
  return Object.entries(flags)
    .filter(([, count]) => count > 0)
    .sort(([a, x], [b, y]) => y - x || a.localeCompare(b))
    .slice(0, limit)
    .map(([flag, count]) => ({ flag, count, title: flagTitle(flag) }));
}

/// A side's error share, or null when it logged no calls.
export function sideErrorRate(side: SideFigures | null | undefined): number | null {
  if (!side || !side.calls) return null;
  return side.errors / side.calls;
}

/// One row of the side-by-side table: a figure's name, then the caller's and the callee's
/// value ("–" for a side that logged nothing).
export type SideRow = [figure: string, caller: string, callee: string];

/// The rows of the side-by-side table: calls, errors, error share and the latency
/// percentiles, as each proxy logged them.
export function sideRows(client: SideFigures | null | undefined, server: SideFigures | null | undefined): SideRow[] {
  const both = (f: (s: SideFigures) => string): [string, string] => [client ? f(client) : "–", server ? f(server) : "–"];
  return [
    ["calls", ...both((s) => fmtNumber(s.calls))],
    ["errors", ...both((s) => fmtNumber(s.errors))],
    ["error %", ...both((s) => fmtPct(sideErrorRate(s)))],
    ["p50", ...both((s) => fmtMs(s.p50_ms))],
    ["p95", ...both((s) => fmtMs(s.p95_ms))],
    ["p99", ...both((s) => fmtMs(s.p99_ms))],
  ];
}

/// Which proxy logged none of the edge's calls, in words; null when both sides (or neither)
/// did.
export function missingProxy(client: SideFigures | null | undefined, server: SideFigures | null | undefined): string | null {
  if (client && !server) return "callee has no proxy: only the caller's proxy logged these calls";
  if (server && !client) return "caller has no proxy: only the callee's proxy logged these calls";
  return null;
}

/// "185 retries over 310 requests": the retries the caller's proxy made, and the requests it
/// made them for; null when it made none.
export function retriesText(retries: number | undefined, client: SideFigures | null | undefined): string | null {
  if (!retries) return null;
  const over = client ? ` over ${fmtNumber(client.calls)} ${client.calls === 1 ? "request" : "requests"}` : "";
  return `${fmtRetries(retries)}${over}: attempts beyond the first that the caller's proxy made`;
}

/// "3 calls with a forged caller header": calls whose caller-cluster header named another
/// service than the certificate (which named the caller); null when none.
export function conflictsText(conflicts: number | undefined): string | null {
  if (!conflicts) return null;
  return `${fmtNumber(conflicts)} ${conflicts === 1 ? "call" : "calls"} whose caller header named another service than its certificate (the certificate was believed)`;
}

/// The pairing figures as name and value: requests found on both sides, on one side only,
/// and the mesh's own cost per request.
export function pairingRows(p: Pairing | null | undefined): [string, string][] {
  if (!p) return [];
  return [
    ["paired", fmtNumber(p.paired)],
    ["caller only", fmtNumber(p.client_only)],
    ["callee only", fmtNumber(p.server_only)],
    ["mesh overhead p50", fmtMs(p.overhead_p50_ms)],
    ["mesh overhead p99", fmtMs(p.overhead_p99_ms)],
  ];
}
