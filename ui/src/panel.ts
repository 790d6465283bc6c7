// The side panel's frame, shared by the service and the edge panel: showing and closing it,
// its header, the charts drawn in it, and which request may still fill it. The map shrinks
// to the space beside an open panel, so the panel never covers a node.

import type uPlot from "uplot";
import { byId, el } from "./dom";
import { cy, fitMap, mapFitted } from "./map";
import { page, pushState } from "./page-state";

/// The panel element; hidden while nothing is selected.
export const panel = byId<HTMLElement>("panel");
const main = byId<HTMLElement>("main");

let charts: uPlot[] = [];
let panelSeq = 0;
let answeredSeq = 0;

/// Starts a request for the panel's content. The returned function tells whether the request
/// is still the latest one, so that an answer arriving after a newer click is dropped.
export function panelRequest(): () => boolean {
  const seq = ++panelSeq;
  return () => {
    if (seq === panelSeq) answeredSeq = seq;
    return seq === panelSeq;
  };
}

/// True while the latest request for the panel waits for its answer: a refresh then leaves
/// the panel to it, so that a background read never overtakes the user's click.
export function panelPending(): boolean {
  return answeredSeq !== panelSeq;
}

/// Keeps a chart drawn in the panel, to be destroyed when the panel closes.
export function keepChart(plot: uPlot): void {
  charts.push(plot);
}

/// The map takes the width the panel leaves, or all of it; a map the user had not moved is
/// fitted again to its new size, one they had moved keeps its zoom and the centre it showed.
function placeMap(panelOpen: boolean): void {
  if (main.classList.contains("panel-open") === panelOpen) return;
  const fitted = mapFitted();
  const before = cy.width();
  main.classList.toggle("panel-open", panelOpen);
  cy.resize();
  if (fitted) fitMap();
  else cy.panBy({ x: (cy.width() - before) / 2, y: 0 });
}

/// Shows the panel for `kind` and `id`, named `label` for screen readers.
export function showPanel(kind: "service" | "edge", id: string, label: string): void {
  panel.hidden = false;
  panel.dataset.kind = kind;
  panel.dataset.id = id;
  panel.setAttribute("aria-label", `${kind} ${label}`);
  placeMap(true);
}

/// Empties the panel, destroying its charts, and hides it unless `refilling` (a newer
/// answer for the same place is about to be drawn).
export function closePanel(refilling = false): void {
  for (const c of charts) c.destroy();
  charts = [];
  panel.replaceChildren();
  if (refilling) return;
  panel.hidden = true;
  delete panel.dataset.kind;
  delete panel.dataset.id;
  delete panel.dataset.edge;
  placeMap(false);
}

/// Closes the panel as its close button does: the selection goes from the map and the URL.
export function dismissPanel(): void {
  if (panel.hidden) return;
  page.state.selected = "";
  cy.elements().unselect();
  closePanel();
  pushState();
}

/// The panel's header: a title, a line beneath it, and a close button that also clears the
/// selection on the map and in the URL.
export function panelHeader(title: string, subtitle: string): HTMLElement {
  const close = el("button", { className: "close", text: "×" });
  close.title = "Close (Esc)";
  close.setAttribute("aria-label", "Close the panel");
  close.addEventListener("click", dismissPanel);
  return el("header", {}, el("div", {}, el("h2", { text: title }), el("div", { className: "sub", text: subtitle })), close);
}
