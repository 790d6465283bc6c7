// Which edge labels the map draws: a label that would cover a service, its name, a namespace
// title or another label is left out, the busiest edges' labels first. An edge with a short
// form of its label (`label_short`: a retried edge's "185 retries") draws that where the
// whole label would not fit, so that the retries still show. Positions and labels
// scale together with the zoom, so what overlaps does not depend on it; labels too small to
// read at the zoom are not drawn anyway (`min-zoomed-font-size`).

import type { BoundingBox12, Core, EdgeSingular } from "cytoscape";

function overlaps(a: BoundingBox12, b: BoundingBox12): boolean {
  return a.x1 < b.x2 && b.x1 < a.x2 && a.y1 < b.y2 && b.y1 < a.y2;
}

/// The box of an edge's own label, in model coordinates; empty when it has none.
export function edgeLabelBox(e: EdgeSingular): BoundingBox12 {
  return e.boundingBox({ includeNodes: false, includeEdges: false, includeLabels: true, includeOverlays: false });
}

/// What a label must keep clear of: every shown service or instance with its name, and the
/// titles of boxes (namespaces, services drawn with their instances).
export function obstacleBoxes(cy: Core): BoundingBox12[] {
  const boxes: BoundingBox12[] = [];
  cy.nodes(":visible").forEach((n) => {
    if (n.isParent()) boxes.push(n.boundingBox({ includeNodes: false, includeEdges: false, includeLabels: true, includeOverlays: false }));
    else boxes.push(n.boundingBox({ includeLabels: true, includeOverlays: false }));
  });
  return boxes.filter((b) => b.x2 > b.x1 && b.y2 > b.y1);
}

/// Marks with `label-hidden` every edge whose label would cover something, keeping the
/// labels of the busiest edges first; an edge with a short form tries it before its label is
/// left out. Returns how many labels are drawn.
export function fitEdgeLabels(cy: Core): number {
  const edges = cy.edges(":visible").filter((e) => !!e.data("label"));
  cy.edges().removeClass("label-hidden");
  // A label shortened by an earlier fit (and not replaced by a newer topology since) is
  // whole again before it is measured.
  edges.filter((e) => !!e.data("label_short") && e.data("label") === e.data("label_short")).forEach((e) => {
    e.data("label", e.data("label_full"));
  });
  const taken = obstacleBoxes(cy);
  const hide: EdgeSingular[] = [];
  let shown = 0;
  const fits = (box: BoundingBox12) => box.x2 > box.x1 && !taken.some((t) => overlaps(box, t));
  const order = edges.toArray().sort((a, b) => (b.data("cpm") ?? 0) - (a.data("cpm") ?? 0) || a.id().localeCompare(b.id()));
  for (const e of order as EdgeSingular[]) {
    let box = edgeLabelBox(e);
    const short: string | undefined = e.data("label_short");
    if (!fits(box) && short && short !== e.data("label")) {
      e.data({ label_full: e.data("label"), label: short });
      box = edgeLabelBox(e);
      if (!fits(box)) e.data("label", e.data("label_full"));
    }
    if (!fits(box)) {
      hide.push(e);
      continue;
    }
    taken.push(box);
    shown++;
  }
  cy.batch(() => hide.forEach((e) => e.addClass("label-hidden")));
  return shown;
}
