// The meshscope dashboard: a live topology map with service and edge panels. Every string that
// comes from telemetry (service, endpoint and instance names) reaches the page through
// textContent or the graph's canvas labels, never as HTML.
//
// This module wires the parts together and starts the page: the map's clicks and hovers, the
// header's controls, the browser's history and the refresh timer. The parts: `map` (the
// graph), `topology-loader` (loading it), `service-panel`, `edge-panel` and `proxy-section`
// (the side panel's contents), `controls` (the header bar), `theme`, `tooltip`.

import "uplot/dist/uPlot.min.css";
import "./style.css";
import type { EdgeSingular, NodeSingular } from "cytoscape";
import { CUSTOM, edgeId, fromLocalInput, parseState, toLocalInput } from "./data";
import { byId } from "./dom";
import {
  autoRefresh,
  clearFocus,
  customRange,
  depthSelect,
  fillWindowChoices,
  fromInput,
  nsSelect,
  search,
  status,
  syncControls,
  themeButton,
  toInput,
  windowSelect,
} from "./controls";
import { openEdge } from "./edge-panel";
import { cy, mapStats } from "./map";
import { page, pushState } from "./page-state";
import { closePanel, panel } from "./panel";
import { openService } from "./service-panel";
import { applyTheme, theme } from "./theme";
import { hideTooltip, showTooltip } from "./tooltip";
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
};

// --- events ---------------------------------------------------------------------------------

cy.on("tap", "node", (ev) => {
  const n = ev.target as NodeSingular;
  if (n.hasClass("namespace")) return;
  page.state.selected = "node:" + n.id();
  pushState();
  void openService(n.id());
});

cy.on("tap", "edge", (ev) => {
  const edge = ev.target as EdgeSingular;
  const e = page.topology?.edges.find((x) => edgeId(x) === edge.id());
  if (!e) return;
  page.state.selected = "edge:" + edge.id();
  pushState();
  void openEdge(e);
});

cy.on("tap", (ev) => {
  if (ev.target === cy) {
    page.state.selected = "";
    closePanel();
    pushState();
  }
});

cy.on("mouseover", "node, edge", (ev) => showTooltip(ev.target as NodeSingular | EdgeSingular, ev.renderedPosition));
cy.on("mouseout", "node, edge", () => hideTooltip());

/// The time range changed: the URL, the map and an open service panel follow it.
function rangeChanged(): void {
  pushState();
  void loadTopology();
  if (panel.dataset.kind === "service" && !panel.hidden) void openService(panel.dataset.id!);
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

nsSelect.addEventListener("change", () => {
  page.state.namespace = nsSelect.value;
  pushState();
  void loadTopology();
});

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
  if (autoRefresh.checked) refreshTimer = window.setInterval(() => void loadTopology(), REFRESH_MS);
}

themeButton.addEventListener("click", () => {
  page.state.theme = theme() === "dark" ? "light" : "dark";
  pushState(true);
  applyTheme();
});

byId("fit").addEventListener("click", () => cy.fit(undefined, 30));

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
