// How the map draws: the cytoscape stylesheet for nodes, namespace boxes and edges, in the
// current theme's colours.

import type { StylesheetJson } from "cytoscape";
import { css } from "./dom";

/// The stylesheet in the current theme's colours. A `big` map draws for speed: no edge
/// labels but the selected edge's, and haystack edges with their arrows midway.
export function graphStyle(big = false): StylesheetJson {
  return [
    {
      selector: "node",
      style: {
        label: "data(label)",
        "text-wrap": "wrap",
        "text-valign": "bottom",
        "text-margin-y": 4,
        "font-size": 11,
        // Labels too small to read are not drawn: zoomed out, a big map is only shapes.
        "min-zoomed-font-size": 6,
        color: css("--fg"),
        "text-outline-color": css("--bg"),
        "text-outline-width": 2,
        width: 34,
        height: 34,
        "background-color": css("--idle"),
        "border-width": 2,
        "border-color": css("--bg"),
      },
    },
    { selector: "node.ok", style: { "background-color": css("--ok") } },
    // Health is told by shape as well as colour: amber is a triangle, red an octagon.
    { selector: "node.warn", style: { "background-color": css("--warn"), shape: "round-triangle" } },
    { selector: "node.bad", style: { "background-color": css("--bad"), shape: "octagon" } },
    {
      selector: "node.virtual",
      style: {
        shape: "diamond",
        "background-color": css("--virtual"),
        "border-style": "dashed",
        "border-color": css("--fg-dim"),
      },
    },
    // A service drawn with its instances inside.
    {
      selector: "node.service:parent",
      style: {
        shape: "round-rectangle",
        "background-opacity": 0.18,
        "text-valign": "top",
        "text-margin-y": -4,
        padding: "12px",
        "border-width": 2,
        "border-color": css("--fg-dim"),
      },
    },
    { selector: "node.instance", style: { width: 22, height: 22, "font-size": 10 } },
    {
      selector: "node.namespace",
      style: {
        shape: "round-rectangle",
        "background-color": css("--ns-bg"),
        "background-opacity": 1,
        "border-width": 1,
        "border-color": css("--ns-border"),
        label: "data(label)",
        "text-valign": "top",
        "text-halign": "center",
        "text-margin-y": -4,
        "font-size": 12,
        "font-weight": "bold",
        color: css("--fg-dim"),
        padding: "18px",
      },
    },
    {
      selector: "edge",
      style: {
        // Thousands of edge labels cost seconds to draw the first time they are readable; on
        // a big map the figures are in the hover and on the selected edge.
        label: big ? "" : "data(label)",
        "font-size": 9,
        "min-zoomed-font-size": 7,
        color: css("--fg-dim"),
        // An outline rather than a box behind the text, so the line's style (dashed for
        // client side only) shows up to the letters.
        "text-outline-color": css("--bg"),
        "text-outline-width": 2,
        "text-rotation": "autorotate",
        "curve-style": big ? "haystack" : "bezier",
        "target-arrow-shape": "triangle",
        width: 2,
        "line-color": css("--edge"),
        "target-arrow-color": css("--edge"),
      },
    },
    { selector: "edge.warn", style: { "line-color": css("--warn"), "target-arrow-color": css("--warn") } },
    { selector: "edge.bad", style: { "line-color": css("--bad"), "target-arrow-color": css("--bad") } },
    { selector: "edge.client-only", style: { "line-style": "dashed" } },
    // mTLS is drawn, never written as a glyph: the line runs inside a sheath of its own
    // colour, so it shows without any font. A big map leaves it out (a sheath draws each edge
    // twice); there the hover, the panels, the list and the expression `mtls` tell it.
    ...(big ? [] : [{ selector: "edge.mtls", style: { "line-outline-width": 2, "line-outline-color": css("--mtls") } }]),
    {
      selector: "edge.tcp",
      style: {
        "line-color": css("--tcp"),
        "target-arrow-color": css("--tcp"),
        "target-arrow-shape": "square",
        "line-style": "dotted",
        width: 3,
      },
    },
    { selector: "edge:selected", style: { label: "data(label)" } },
    // Labels that would cover a node or another label are left out (see label-fit.ts).
    { selector: "edge.label-hidden", style: { label: "" } },
    // Haystack edges draw about twice as fast as straight ones, but take arrows only midway.
    ...(big
      ? [
          { selector: "edge", style: { "target-arrow-shape": "none" as const, "mid-target-arrow-shape": "triangle" as const, "mid-target-arrow-color": css("--edge") } },
          { selector: "edge.warn", style: { "mid-target-arrow-color": css("--warn") } },
          { selector: "edge.bad", style: { "mid-target-arrow-color": css("--bad") } },
        ]
      : ([] as StylesheetJson)),
    {
      selector: ":selected",
      style: { "overlay-color": css("--accent"), "overlay-opacity": 0.25, "overlay-padding": 6 },
    },
    { selector: "node.focus", style: { "border-color": css("--accent"), "border-width": 4 } },
    // Find and highlight: the rest of the map fades.
    { selector: ".dimmed", style: { opacity: 0.2 } },
    { selector: "node.found, node.ruled", style: { "border-color": css("--accent"), "border-width": 5, "underlay-color": css("--accent"), "underlay-opacity": 0.25, "underlay-padding": 8 } },
    { selector: "edge.found, edge.ruled", style: { width: 4, "underlay-color": css("--accent"), "underlay-opacity": 0.25, "underlay-padding": 4 } },
    { selector: ".hidden-by-rule", style: { display: "none" } },
    // Replay: elements without calls in the shown minute.
    { selector: ".quiet", style: { opacity: 0.25 } },
    // Traffic animation: dashes that move along the edge.
    { selector: "edge.animated", style: { "line-style": "dashed", "line-dash-pattern": [6, 6] } },
  ];
}
