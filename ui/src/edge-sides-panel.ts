// The edge panel's section on the two sides of the calls: the caller's and the callee's
// figures side by side, which proxy is missing, the retries and identity conflicts, the
// pairing of the sides and the mesh's own cost, and each side's top response flags.

import type { Pairing, SideFigures } from "./data";
import { el } from "./dom";
import { conflictsText, missingProxy, pairingRows, retriesText, sideRows, topFlags } from "./edge-sides";

/// What the section reads of an edge: each side (absent or null when that side's proxy
/// logged nothing) and the figures about both.
export interface EdgeSidesInput {
  client?: SideFigures | null;
  server?: SideFigures | null;
  retries?: number;
  identity_conflicts?: number;
  pairing?: Pairing | null;
}

/// The section, headed "Caller and callee".
export function edgeSidesSection(d: EdgeSidesInput): HTMLElement {
  const box = el("section", { className: "edge-sides" });
  box.append(el("h3", { text: "Caller and callee" }));
  const missing = missingProxy(d.client, d.server);
  if (missing) box.append(el("p", { className: "missing-proxy muted", text: missing }));

  const table = el("table", { className: "sides" });
  const head = el("tr", {}, el("th", { text: "" }), el("th", { text: "caller's proxy" }), el("th", { text: "callee's proxy" }));
  const rows = sideRows(d.client, d.server).map(([figure, caller, callee]) => {
    const tr = el("tr", {}, el("th", { text: figure }), el("td", { text: caller }), el("td", { text: callee }));
    tr.dataset.figure = figure;
    tr.querySelector("th")!.scope = "row";
    return tr;
  });
  table.append(el("thead", {}, head), el("tbody", {}, ...rows));
  box.append(table);

  const retries = retriesText(d.retries, d.client);
  if (retries) box.append(el("p", { className: "retries", text: retries }));
  const conflicts = conflictsText(d.identity_conflicts);
  if (conflicts) box.append(el("p", { className: "identity-conflicts", text: conflicts }));

  const pairing = pairingRows(d.pairing);
  if (pairing.length) {
    const dl = el("dl", { className: "figures pairing" });
    for (const [k, v] of pairing) dl.append(el("dt", { text: k }), el("dd", { text: v }));
    box.append(el("h4", { text: "Requests paired by request id" }), dl);
  }

  const flagLists = ([["caller", d.client], ["callee", d.server]] as const)
    .map(([who, side]) => [who, topFlags(side?.response_flags)] as const)
    .filter(([, flags]) => flags.length);
  if (flagLists.length) {
    box.append(el("h4", { text: "Response flags" }));
    for (const [who, flags] of flagLists) {
      const list = el("ul", { className: "flags" });
      list.dataset.side = who === "caller" ? "client" : "server";
      for (const f of flags) {
        const item = el("li", {}, el("abbr", { text: f.flag }), ` ${f.count} · ${f.title}`);
        item.title = f.title;
        item.querySelector("abbr")!.title = f.title;
        list.append(item);
      }
      box.append(el("div", { className: "flag-side" }, el("strong", { text: `${who}'s proxy` }), list));
    }
  }
  return box;
}
