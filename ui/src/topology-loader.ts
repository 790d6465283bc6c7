// Loading the map: the topology for the view state, drawn, then what depends on it brought
// up to date: the selection from the URL, the open panel (it follows the range and every
// refresh), find and the hide or highlight rule, the list view, the namespace and service
// choices.

import { getJson } from "./api";
import { edgeId, namespacesOf, topologyUrl, type Topology } from "./data";
import { byId, el } from "./dom";
import { animateBox, findInput, offerNamespaces, status, syncControls } from "./controls";
import { openEdge, type EdgeRef } from "./edge-panel";
import { fillElementList } from "./element-list";
import { drawInstances } from "./instance-level";
import { applyRule, findOnMap } from "./find";
import { cy, drawTopology, mapIsBig, mapStats } from "./map";
import { page, pushState } from "./page-state";
import { panel, panelPending } from "./panel";
import { replay } from "./replay";
import { openService } from "./service-panel";
import { animateTraffic } from "./traffic-animation";

const notice = byId<HTMLElement>("notice");

let loadSeq = 0;

/// Loads the topology for the view state and draws it; the status line says when, or what
/// failed. A focus that names nothing empties the map and says so. An answer overtaken by a
/// newer load is dropped, and so is one that comes while a replay shows a past minute.
export async function loadTopology(): Promise<void> {
  const seq = ++loadSeq;
  status.textContent = "loading…";
  try {
    const fetchStart = performance.now();
    const next = await getJson<Topology & { focus?: string }>(topologyUrl(page.state));
    mapStats.fetchMs = performance.now() - fetchStart;
    if (seq !== loadSeq || replay.minute != null) return;
    notice.hidden = true;
    page.topology = next;
    if (next.focus && next.focus !== page.state.service) {
      // A plain name was focused: the URL and the box take the service's id.
      page.state.service = next.focus;
      syncControls();
      pushState(true);
    }
    await drawTopology(next);
    afterDraw();
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    if (seq !== loadSeq) return;
    const message = (err as Error).message;
    status.textContent = `error: ${message}`;
    if (page.state.service) {
      // The map must not keep showing a graph the focus did not produce.
      page.topology = { start: 0, end: 0, nodes: [], edges: [] };
      await drawTopology(page.topology);
      byId("empty").hidden = true;
      notice.replaceChildren(el("strong", { text: message }), " · clear the focus to see the whole map.");
      notice.hidden = false;
    }
  }
  if (!page.state.namespace) listChoices();
}

/// What follows the map each time it is drawn.
function afterDraw(): void {
  applyRule(cy, page.topology);
  if (findInput.value.trim()) findOnMap(cy, findInput.value, false);
  animateBox.disabled = mapIsBig();
  animateTraffic(cy, animateBox.checked && !mapIsBig());
  fillElementList(page.topology);
  restoreSelection();
  refreshPanel();
  void drawInstances();
}

/// Adds the loaded topology's namespaces to the namespace choices, and lists its services
/// for the focus search.
function listChoices(): void {
  const topo = page.topology;
  if (!topo) return;
  offerNamespaces(namespacesOf(topo));
  const list = byId<HTMLDataListElement>("services");
  list.replaceChildren(
    ...topo.nodes.filter((n) => n.kind === "service").map((n) => {
      const o = el("option");
      o.value = n.id;
      return o;
    }),
  );
}

let restoring = false;

/// Selects on the map what the URL says is selected, and opens its panel if none is open.
function restoreSelection(): void {
  const state = page.state;
  restoring = false;
  if (!state.selected) return;
  const [kind, ...rest] = state.selected.split(":");
  const id = rest.join(":");
  const target = cy.getElementById(id);
  if (target.nonempty() && !target.selected()) {
    cy.elements().unselect();
    target.select();
  }
  if (panel.hidden) {
    restoring = true;
    if (kind === "node") void openService(id);
    else if (kind === "edge") {
      const e = page.topology?.edges.find((x) => edgeId(x) === id);
      if (e) void openEdge(e);
    }
  }
}

/// Reads the open panel again, for the range and the minute the map now shows.
function refreshPanel(): void {
  if (restoring || panel.hidden || panelPending()) return;
  const id = panel.dataset.id;
  if (!id) return;
  if (panel.dataset.kind === "service") void openService(id);
  else if (panel.dataset.kind === "edge" && panel.dataset.edge) void openEdge(JSON.parse(panel.dataset.edge) as EdgeRef);
}
