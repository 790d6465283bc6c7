// Loading the map: the topology for the view state, drawn, then the selection from the URL
// restored and the namespace and service choices filled in.

import { getJson } from "./api";
import { edgeId, namespacesOf, topologyUrl, type Topology } from "./data";
import { byId, el } from "./dom";
import { nsSelect, status } from "./controls";
import { openEdge } from "./edge-panel";
import { cy, drawTopology, mapStats } from "./map";
import { page } from "./page-state";
import { panel } from "./panel";
import { openService } from "./service-panel";

let loadSeq = 0;

/// Loads the topology for the view state and draws it; the status line says when, or what
/// failed. An answer overtaken by a newer load is dropped.
export async function loadTopology(): Promise<void> {
  const seq = ++loadSeq;
  status.textContent = "loading…";
  try {
    const fetchStart = performance.now();
    const next = await getJson<Topology>(topologyUrl(page.state));
    mapStats.fetchMs = performance.now() - fetchStart;
    if (seq !== loadSeq) return;
    page.topology = next;
    await drawTopology(next);
    restoreSelection();
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    if (seq !== loadSeq) return;
    status.textContent = `error: ${(err as Error).message}`;
  }
  if (page.state.namespace === "") await loadNamespaces();
}

/// Adds the loaded topology's namespaces to the namespace choices, and lists its services
/// for the focus search.
async function loadNamespaces(): Promise<void> {
  const topo = page.topology;
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

/// Selects on the map what the URL says is selected, and opens its panel if none is open.
function restoreSelection(): void {
  const state = page.state;
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
      const e = page.topology?.edges.find((x) => edgeId(x) === id);
      if (e) void openEdge(e);
    }
  }
}
