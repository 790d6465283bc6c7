// The topology map: the cytoscape graph, how a loaded topology becomes its elements and
// their positions, and the timings that the benchmark and the browser tests read.

import cytoscape from "cytoscape";
import type { Core } from "cytoscape";
import ELK from "elkjs/lib/elk-api";
import elkWorkerUrl from "elkjs/lib/elk-worker.min.js?url";
import { toElements, type Topology } from "./data";
import { byId } from "./dom";
import { graphStyle } from "./graph-style";
import { applyRule } from "./find";
import { fitEdgeLabels } from "./label-fit";
import { bandLayout, elkGraph, elkPositions, useElk, type Positions } from "./layout";
import { page } from "./page-state";

/// Past this many elements the map draws for speed: straight edges, and during pan and zoom
/// a snapshot of the map instead of every element.
const BIG_GRAPH = 1_500;

// Created on first use: small maps only, and the worker is a 2 MB script.
let elk: InstanceType<typeof ELK> | null = null;

const empty = byId<HTMLElement>("empty");

/// The map's graph. Browser tests read it through `window.__meshscope`; it is also handy
/// from the devtools console.
export const cy: Core = cytoscape({
  container: byId("map"),
  elements: [],
  style: graphStyle(),
  wheelSensitivity: 0.3,
  minZoom: 0.05,
  maxZoom: 4,
});

/// What the benchmark and the browser tests read: milliseconds since the page started, or
/// spent, and counts of renders and layouts. `pending` is true while a layout runs.
export const mapStats = {
  scriptAt: performance.now(),
  renders: 0,
  layouts: 0,
  engine: "",
  fetchMs: 0,
  elementsMs: 0,
  layoutMs: 0,
  renderMs: 0,
  laidOutAt: 0,
  firstFrameAt: 0,
  pending: false,
  labelsShown: 0,
};

let big = false;

/// Whether the map shows what the last fit showed: cleared when the user pans or zooms.
let fitted = true;
let fitting = false;

cy.on("viewport", () => {
  if (!fitting) fitted = false;
});

/// Fits the map's services into its area (nodes only: the bounds of thousands of edge labels
/// take long to measure, and every edge runs between nodes anyway).
export function fitMap(): void {
  fitting = true;
  cy.fit(cy.nodes(":visible"), 30);
  fitting = false;
  fitted = true;
}

/// True while the map shows what the last fit showed, untouched by the user.
export function mapFitted(): boolean {
  return fitted;
}

/// Whether the map is drawn for speed (past `BIG_GRAPH` elements): no edge labels then.
export function mapIsBig(): boolean {
  return big;
}

/// Leaves out the edge labels that would cover something; nothing to do on a big map, which
/// draws none. Returns how many labels are drawn.
export function refitLabels(): number {
  if (big) return 0;
  const shown = fitEdgeLabels(cy);
  mapStats.labelsShown = shown;
  return shown;
}

/// The renderer reads these two on every frame; cytoscape only takes them at creation, so
/// they are set on it when the map's size class changes.
function setBig(next: boolean): void {
  if (next === big) return;
  big = next;
  const r = (cy as unknown as { renderer(): { textureOnViewport: boolean;  } }).renderer();
  r.textureOnViewport = next;
  cy.style(graphStyle(next));
}

/// Styles the map again in the current theme's colours, for its present size class.
export function restyleMap(): void {
  cy.style(graphStyle(big));
}

/// Puts a topology on the map: elements no longer in it go, new ones come, and the others
/// take its figures. Resolves once the map is laid out; a topology with the same nodes and
/// edges as the map keeps every position.
export function drawTopology(t: Topology): Promise<void> {
  const began = performance.now();
  const willBeBig = t.nodes.length + t.edges.length > BIG_GRAPH;
  const elements = toElements(t, page.state.labels, !willBeBig);
  setBig(elements.length > BIG_GRAPH);
  empty.hidden = t.nodes.length > 0;
  const wanted = new Set(elements.map((e) => e.data.id as string));
  // Instances drawn inside services come and go with `instance-level`, not with the topology.
  const had = new Set(cy.elements().not(".instance").map((e) => e.id()));
  const sameShape = wanted.size === had.size && [...wanted].every((id) => had.has(id));
  // The banded layout is known before anything is drawn, so new nodes are added in place
  // rather than placed afterwards: moving thousands of elements costs as much as adding them.
  const bands = !sameShape && !useElk(t) ? bandLayout(t, cy.width() / Math.max(1, cy.height())) : null;
  cy.batch(() => {
    cy.elements().filter((e) => !wanted.has(e.id()) && !e.hasClass("instance")).remove();
    const added: cytoscape.ElementDefinition[] = [];
    for (const def of elements) {
      const id = def.data.id as string;
      const existing = cy.getElementById(id);
      if (existing.nonempty()) {
        existing.data(def.data);
        existing.classes(def.classes ?? "");
        const p = bands?.get(id);
        if (p) existing.position(p);
      } else {
        added.push({ ...def, position: bands?.get(id) } as cytoscape.ElementDefinition);
      }
    }
    cy.add(added);
    cy.nodes().removeClass("focus");
    if (page.state.service) cy.getElementById(page.state.service).addClass("focus");
  });
  // Classes were just reset from the topology: what the rule hides must not flash back.
  applyRule(cy, t);
  mapStats.renders++;
  mapStats.elementsMs = performance.now() - began;
  // Refreshes that bring no new nodes or edges keep every position: only figures change.
  const done = sameShape ? Promise.resolve() : layout(t, bands);
  return done.then(() => {
    refitLabels();
    mapStats.renderMs = performance.now() - began;
  });
}

let layoutSeq = 0;

/// Places the nodes: the banded positions when given, else ELK's for a small map (bands if
/// it fails), else bands. A layout overtaken by a newer one leaves the map to it.
async function layout(t: Topology, bands: Positions | null): Promise<void> {
  const seq = ++layoutSeq;
  const began = performance.now();
  mapStats.pending = true;
  let positions: Positions;
  let engine = "bands";
  if (bands) {
    positions = bands;
  } else if (useElk(t)) {
    try {
      elk ??= new ELK({ workerUrl: elkWorkerUrl });
      // As wide as the node's label (name, rate and error share), so labels never meet.
      const graph = elkGraph(t, (n) => 12 + 6.5 * Math.max(n.name.length, 18));
      positions = elkPositions(await elk.layout(graph));
      engine = "elk";
    } catch (err) {
      console.warn("ELK layout failed, using bands", err);
      positions = bandLayout(t);
    }
  } else {
    positions = bandLayout(t);
  }
  // A newer topology arrived while ELK worked: its layout wins.
  if (seq !== layoutSeq) return;
  if (positions !== bands) {
    cy.batch(() => {
      for (const [id, p] of positions) cy.getElementById(id).position(p);
    });
  }
  fitMap();
  mapStats.layouts++;
  mapStats.engine = engine;
  mapStats.layoutMs = performance.now() - began;
  mapStats.laidOutAt = performance.now();
  mapStats.pending = false;
  // The map draws in the next animation frame; the one after it starts once that is done.
  if (!mapStats.firstFrameAt) requestAnimationFrame(() => requestAnimationFrame(() => (mapStats.firstFrameAt = performance.now())));
}
