// The meshscope dashboard: a live topology map with service and edge panels. Every string that
// comes from telemetry (service, endpoint and instance names) reaches the page through
// textContent or the graph's canvas labels, never as HTML.
//
// This module wires the parts together and starts the page: the map's clicks and hovers, the
// header's controls, the keyboard, the browser's history and the refresh timer. The parts:
// `map` (the graph), `topology-loader` (loading it), `service-panel`, `edge-panel` and
// `proxy-section` (the side panel's contents), `controls` (the header bars), `find` (find,
// hide and highlight), `replay`, `traffic-animation`, `element-list`, `theme`, `tooltip`.

import "uplot/dist/uPlot.min.css";
import "./style.css";
import type { EdgeSingular, NodeSingular } from "cytoscape";
import { CUSTOM, edgeId, fromLocalInput, parseState, toLocalInput, type EdgeLabelChoice } from "./data";
import { byId } from "./dom";
import {
  animateBox,
  autoRefresh,
  clearFocus,
  customRange,
  depthSelect,
  fillWindowChoices,
  findInput,
  fromInput,
  labelsSelect,
  namespaceChoices,
  ruleInput,
  ruleMode,
  search,
  status,
  syncControls,
  themeButton,
  tickedNamespaces,
  toInput,
  windowSelect,
} from "./controls";
import { drawnCharts } from "./charts";
import { openEdge } from "./edge-panel";
import { setUpElementList } from "./element-list";
import { findOnMap, setRule } from "./find";
import { cy, drawTopology, fitMap, mapStats, refitLabels } from "./map";
import { page, pushState, whenFocusRequested, whenInstancesChange } from "./page-state";
import { drawInstances } from "./instance-level";
import { closePanel, dismissPanel, panel } from "./panel";
import { replay, setUpReplay } from "./replay";
import { openService } from "./service-panel";
import { applyTheme, theme } from "./theme";
import { hideTooltip, showTooltip } from "./tooltip";
import { animateTraffic } from "./traffic-animation";
import { loadTopology } from "./topology-loader";

const REFRESH_MS = 15_000;

let refreshTimer: number | undefined;

fillWindowChoices();

// Browser tests read the graph from here; it is also handy from the devtools console.
(window as unknown as { __meshscope: unknown }).__meshscope = {
  cy,
  state: () => ({ ...page.state }),
  refresh: () => loadTopology(),
  stats: () => ({ ...mapStats }),
  charts: () => drawnCharts.map((c) => ({ ...c })),
  replay: () => ({ ...replay }),
};

// --- events ---------------------------------------------------------------------------------

/// Selects a service or an edge and opens its panel, as a click on the map or the list does.
function openElement(kind: "node" | "edge", id: string): void {
  if (kind === "node") {
    page.state.selected = "node:" + id;
    pushState();
    selectOnMap(id);
    void openService(id);
    return;
  }
  const e = page.topology?.edges.find((x) => edgeId(x) === id);
  if (!e) return;
  page.state.selected = "edge:" + id;
  pushState();
  selectOnMap(id);
  void openEdge(e);
}

function selectOnMap(id: string): void {
  const target = cy.getElementById(id);
  if (target.empty() || target.selected()) return;
  cy.elements().unselect();
  target.select();
}

cy.on("tap", "node", (ev) => {
  const n = ev.target as NodeSingular;
  if (n.hasClass("namespace")) return;
  // An instance opens its service's panel, which lists every instance's figures.
  openElement("node", n.hasClass("instance") ? n.data("service") : n.id());
});

whenInstancesChange(() => {
  void drawInstances();
  if (!panel.hidden) {
    if (panel.dataset.kind === "service") void openService(panel.dataset.id!);
    else if (panel.dataset.edge) void openEdge(JSON.parse(panel.dataset.edge));
  }
});

// A panel's link to a service (an endpoint's callee): the map focuses on it, its panel opens.
whenFocusRequested((service) => {
  page.state.service = service;
  page.state.selected = "node:" + service;
  syncControls();
  pushState();
  void loadTopology();
  void openService(service);
});

cy.on("tap", "edge", (ev) => openElement("edge", (ev.target as EdgeSingular).id()));

cy.on("tap", (ev) => {
  if (ev.target === cy) {
    page.state.selected = "";
    closePanel();
    pushState();
  }
});

setUpElementList(() => page.topology, openElement);
setUpReplay(() => void loadTopology());

// Esc closes the panel (and the list when no panel is open).
document.addEventListener("keydown", (ev) => {
  if (ev.key !== "Escape" || ev.defaultPrevented) return;
  const panelEl = byId<HTMLElement>("panel");
  if (!panelEl.hidden) {
    dismissPanel();
    byId<HTMLElement>("list-toggle").focus();
    return;
  }
  const list = byId<HTMLElement>("element-list");
  if (!list.hidden) byId<HTMLButtonElement>("list-toggle").click();
});

cy.on("mouseover", "node, edge", (ev) => showTooltip(ev.target as NodeSingular | EdgeSingular, ev.renderedPosition));
cy.on("mouseout", "node, edge", () => hideTooltip());

/// The time range changed: the URL, the map and an open panel follow it (the panel is read
/// again once the map is).
function rangeChanged(): void {
  pushState();
  void loadTopology();
}

windowSelect.addEventListener("change", () => {
  if (windowSelect.value === CUSTOM) {
    // Start from the range on screen, so a user narrows what they see.
    const now = Date.now();
    customRange.hidden = false;
    if (!fromInput.value) fromInput.value = toLocalInput(now - 60 * 60_000);
    if (!toInput.value) toInput.value = toLocalInput(now);
    fromInput.focus();
    return;
  }
  page.state.window = windowSelect.value;
  customRange.hidden = true;
  rangeChanged();
});

customRange.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const from = fromLocalInput(fromInput.value);
  const to = fromLocalInput(toInput.value);
  if (from == null || to == null || from >= to) {
    status.textContent = "the range needs a start before its end";
    return;
  }
  page.state.window = CUSTOM;
  page.state.from = from;
  page.state.to = to;
  rangeChanged();
});

namespaceChoices.addEventListener("change", () => {
  page.state.namespace = tickedNamespaces();
  syncControls();
  pushState();
  void loadTopology();
});

findInput.addEventListener("input", () => findOnMap(cy, findInput.value));
findInput.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter") findOnMap(cy, findInput.value);
});

const readRule = () => void setRule(cy, page.topology, ruleInput.value, ruleMode.value === "highlight" ? "highlight" : "hide");
ruleInput.addEventListener("change", readRule);
ruleInput.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter") readRule();
});
ruleMode.addEventListener("change", readRule);

labelsSelect.addEventListener("change", () => {
  page.state.labels = labelsSelect.value as EdgeLabelChoice;
  pushState(true);
  if (page.topology && replay.minute == null) void drawTopology(page.topology).then(() => refitLabels());
});

animateBox.addEventListener("change", () => animateTraffic(cy, animateBox.checked));

/// Focuses the map on the service typed in the search box, at the chosen depth.
function focusService(): void {
  page.state.service = search.value.trim();
  page.state.depth = Number(depthSelect.value) || 1;
  syncControls();
  pushState();
  void loadTopology();
}
search.addEventListener("change", focusService);
depthSelect.addEventListener("change", focusService);
clearFocus.addEventListener("click", () => {
  search.value = "";
  focusService();
});

autoRefresh.addEventListener("change", schedule);

/// Reloads the map every `REFRESH_MS` while auto refresh is on.
function schedule(): void {
  window.clearInterval(refreshTimer);
  if (autoRefresh.checked) {
    refreshTimer = window.setInterval(() => {
      if (replay.minute == null) void loadTopology();
    }, REFRESH_MS);
  }
}

themeButton.addEventListener("click", () => {
  page.state.theme = theme() === "dark" ? "light" : "dark";
  pushState(true);
  applyTheme();
});

byId("fit").addEventListener("click", fitMap);

window.addEventListener("popstate", () => {
  page.state = parseState(location.search);
  syncControls();
  applyTheme();
  closePanel();
  void loadTopology();
});

byId("collector-addr").textContent = `${location.hostname || "meshscope"}:11800`;

applyTheme();
syncControls();
schedule();
void loadTopology();
