// Where the map puts its nodes: left to right by call depth, namespaces as boxes that never
// overlap. Small maps use ELK's layered algorithm (in a worker, so the page stays live); it
// handles the namespace boxes properly but takes seconds past a few hundred edges, so large
// maps use a banded layout computed here in one pass: each namespace is a horizontal band,
// each call depth a column. Nothing here touches the DOM.

import type { ElkExtendedEdge, ElkNode } from "elkjs/lib/elk-api";
import type { TopoEdge, TopoNode, Topology } from "./data";
import { NS_PREFIX } from "./data";

export type Positions = Map<string, { x: number; y: number }>;

/// Above either size ELK would take longer than a user waits for a map.
export const ELK_MAX_NODES = 80;
export const ELK_MAX_EDGES = 200;

export function useElk(t: Topology): boolean {
  return t.nodes.length <= ELK_MAX_NODES && t.edges.length <= ELK_MAX_EDGES;
}

// Room for a node and its two-line label beneath.
const NODE_W = 90;
const NODE_H = 56;
const COLUMN = 170;
const ROW = 64;
// Space between bands: the box's padding on both sides and its title.
const BAND_GAP = 70;
// Space between stacks of bands, wider than a column so stacks read as apart.
const STACK_GAP = 240;

function bandOf(n: TopoNode): string {
  return n.namespace ?? "";
}

/// Positions (node centres) for the banded layout. Bands follow the depth at which each
/// namespace starts, so the map still reads left to right; inside a column, nodes are ordered
/// by the mean row of their callers, which keeps most edges short and uncrossed. Many bands
/// are put in side-by-side stacks so that the map's shape is near `aspect` (width / height)
/// and fills the screen rather than a narrow strip.
export function bandLayout(t: Topology, aspect = 16 / 9): Positions {
  const bands = new Map<string, TopoNode[]>();
  for (const n of t.nodes) {
    const key = bandOf(n);
    const list = bands.get(key);
    if (list) list.push(n);
    else bands.set(key, [n]);
  }
  const firstLayer = (nodes: TopoNode[]) => Math.min(...nodes.map((n) => n.layer));
  const order = [...bands.keys()].sort((a, b) => {
    // Nodes outside any namespace (external, unknown) first: they are where traffic enters.
    if ((a === "") !== (b === "")) return a === "" ? -1 : 1;
    return firstLayer(bands.get(a)!) - firstLayer(bands.get(b)!) || a.localeCompare(b);
  });
  const callers = new Map<string, string[]>();
  for (const e of t.edges) {
    const list = callers.get(e.target);
    if (list) list.push(e.source);
    else callers.set(e.target, [e.source]);
  }
  const positions: Positions = new Map();
  const placed: { key: string; height: number }[] = [];
  let top = 0;
  for (const key of order) {
    const byLayer = new Map<number, TopoNode[]>();
    for (const n of bands.get(key)!) {
      const list = byLayer.get(n.layer);
      if (list) list.push(n);
      else byLayer.set(n.layer, [n]);
    }
    let rows = 1;
    for (const layer of [...byLayer.keys()].sort((a, b) => a - b)) {
      const column = byLayer.get(layer)!;
      const weight = new Map<string, number>();
      for (const n of column) {
        const ys = (callers.get(n.id) ?? []).map((c) => positions.get(c)?.y).filter((y): y is number => y != null);
        weight.set(n.id, ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : Number.POSITIVE_INFINITY);
      }
      column.sort((a, b) => weight.get(a.id)! - weight.get(b.id)! || a.id.localeCompare(b.id));
      column.forEach((n, i) => positions.set(n.id, { x: layer * COLUMN, y: top + i * ROW }));
      rows = Math.max(rows, column.length);
    }
    placed.push({ key, height: rows * ROW + BAND_GAP });
    top += rows * ROW + BAND_GAP;
  }
  return stack(t, positions, placed, aspect);
}

/// Moves whole bands (in their order) into side-by-side stacks of about equal height.
function stack(t: Topology, positions: Positions, bands: { key: string; height: number }[], aspect: number): Positions {
  const layers = t.nodes.map((n) => n.layer);
  const width = (Math.max(0, ...layers) - Math.min(0, ...layers) + 1) * COLUMN;
  const height = bands.reduce((a, b) => a + b.height, 0);
  const stacks = Math.max(1, Math.min(bands.length, Math.round(Math.sqrt((aspect * height) / width))));
  if (stacks === 1) return positions;
  const perStack = height / stacks;
  const shift = new Map<string, { dx: number; dy: number }>();
  let column = 0;
  let filled = 0;
  let top = 0;
  for (const band of bands) {
    if (filled > 0 && filled + band.height / 2 > perStack && column < stacks - 1) {
      column++;
      filled = 0;
    }
    shift.set(band.key, { dx: column * (width + STACK_GAP), dy: filled - top });
    filled += band.height;
    top += band.height;
  }
  const out: Positions = new Map();
  for (const n of t.nodes) {
    const p = positions.get(n.id)!;
    const d = shift.get(bandOf(n))!;
    out.set(n.id, { x: p.x + d.dx, y: p.y + d.dy });
  }
  return out;
}

/// The ELK graph for a topology: namespaces as compound nodes holding their services, every
/// edge at the root (ELK routes edges across boxes with INCLUDE_CHILDREN).
export function elkGraph(t: Topology, labelWidth: (n: TopoNode) => number = () => NODE_W): ElkNode {
  const namespaces = new Map<string, ElkNode>();
  const children: ElkNode[] = [];
  for (const n of t.nodes) {
    const node: ElkNode = { id: n.id, width: Math.max(40, labelWidth(n)), height: NODE_H };
    if (!n.namespace) {
      children.push(node);
      continue;
    }
    let box = namespaces.get(n.namespace);
    if (!box) {
      box = {
        id: NS_PREFIX + n.namespace,
        children: [],
        layoutOptions: { "elk.padding": "[top=34,left=22,bottom=22,right=22]" },
      };
      namespaces.set(n.namespace, box);
      children.push(box);
    }
    box.children!.push(node);
  }
  const edges: ElkExtendedEdge[] = t.edges.map((e: TopoEdge, i) => ({ id: `e${i}`, sources: [e.source], targets: [e.target] }));
  return {
    id: "root",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": "RIGHT",
      "elk.hierarchyHandling": "INCLUDE_CHILDREN",
      "elk.edgeRouting": "POLYLINE",
      // Room between services for an edge's label: a short edge still shows its rate.
      "elk.spacing.nodeNode": "40",
      "elk.layered.spacing.nodeNodeBetweenLayers": "150",
      "elk.spacing.componentComponent": "40",
    },
    children,
    edges,
  };
}

/// Node centres in the graph's coordinates from ELK's answer (children are placed relative to
/// their box, boxes relative to the root). Boxes are left out: the map sizes them to fit.
export function elkPositions(root: ElkNode): Positions {
  const out: Positions = new Map();
  const walk = (node: ElkNode, dx: number, dy: number) => {
    for (const c of node.children ?? []) {
      const x = dx + (c.x ?? 0);
      const y = dy + (c.y ?? 0);
      if (c.children?.length) walk(c, x, y);
      else out.set(c.id, { x: x + (c.width ?? 0) / 2, y: y + (c.height ?? 0) / 2 });
    }
  };
  walk(root, 0, 0);
  return out;
}
