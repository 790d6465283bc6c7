// The side panel's frame, shared by the service and the edge panel: showing and closing it,
// its header, the charts drawn in it, and which request may still fill it.

import type uPlot from "uplot";
import { byId, el } from "./dom";
import { cy } from "./map";
import { page, pushState } from "./page-state";

/// The panel element; hidden while nothing is selected.
export const panel = byId<HTMLElement>("panel");

let charts: uPlot[] = [];
let panelSeq = 0;

/// Starts a request for the panel's content. The returned function tells whether the request
/// is still the latest one, so that an answer arriving after a newer click is dropped.
export function panelRequest(): () => boolean {
  const seq = ++panelSeq;
  return () => seq === panelSeq;
}

/// Keeps a chart drawn in the panel, to be destroyed when the panel closes.
export function keepChart(plot: uPlot): void {
  charts.push(plot);
}

/// Hides the panel and empties it, destroying its charts.
export function closePanel(): void {
  for (const c of charts) c.destroy();
  charts = [];
  panel.hidden = true;
  panel.replaceChildren();
}

/// The panel's header: a title, a line beneath it, and a close button that also clears the
/// selection on the map and in the URL.
export function panelHeader(title: string, subtitle: string): HTMLElement {
  const close = el("button", { className: "close", text: "✕" });
  close.title = "Close";
  close.addEventListener("click", () => {
    page.state.selected = "";
    cy.elements().unselect();
    closePanel();
    pushState();
  });
  return el("header", {}, el("div", {}, el("h2", { text: title }), el("div", { className: "sub", text: subtitle })), close);
}
