// The service panel's instance pairs: which instance of a caller called which instance of a
// callee, the caller's proxy's count beside the callee's, with the caller's retries and the
// requests paired across the two by request id.

import { fmtMs, fmtNumber } from "./data";
import { el } from "./dom";

/// One side's figures of an instance pair, as that side's proxy logged them.
export interface PairSide {
  calls: number;
  errors: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
}

/// One caller instance and one callee instance, as the API gives them.
export interface InstancePair {
  source: string;
  source_instance: string;
  target: string;
  target_instance: string;
  client?: PairSide;
  server?: PairSide;
  retries: number;
  pairing: { paired: number; client_only: number; server_only: number };
}

/// How an instance is named in the table: by itself under the panel's service, else with
/// its service.
function instanceName(service: string, instance: string, panelService: string): string {
  return service === panelService ? instance : `${service} · ${instance}`;
}

/// A side's calls with its errors, or a dash where that side's proxy logged nothing.
function sideCell(side: PairSide | undefined): string {
  if (!side) return "–";
  return side.errors ? `${fmtNumber(side.calls)} (${fmtNumber(side.errors)} failed)` : fmtNumber(side.calls);
}

/// The section for the instance pairs of service `panelService`: a table, or a line that
/// says none are known (they come from requests paired by request id).
export function instancePairsSection(pairs: InstancePair[], panelService: string): HTMLElement {
  const box = el("section", { className: "instance-pairs" });
  box.append(el("h3", { text: `Instance pairs (${pairs.length})` }));
  if (!pairs.length) {
    box.append(el("p", { className: "muted", text: "no instance pairs known (they come from requests with a request id)" }));
    return box;
  }
  const table = el("table", { className: "instance-pairs" });
  const head = ["caller", "callee", "caller's proxy", "callee's proxy", "retries", "paired", "callee p95"].map((h) => el("th", { text: h }));
  const rows = pairs.map((p) =>
    el(
      "tr",
      {},
      el("td", { text: instanceName(p.source, p.source_instance, panelService) }),
      el("td", { text: instanceName(p.target, p.target_instance, panelService) }),
      el("td", { text: sideCell(p.client) }),
      el("td", { text: sideCell(p.server) }),
      el("td", { text: fmtNumber(p.retries) }),
      el("td", { text: fmtNumber(p.pairing.paired) }),
      el("td", { text: fmtMs(p.server?.p95_ms ?? null) }),
    ),
  );
  table.append(el("thead", {}, el("tr", {}, ...head)), el("tbody", {}, ...rows));
  box.append(table);
  return box;
}
