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
    { selector: "node.warn", style: { "background-color": css("--warn") } },
    { selector: "node.bad", style: { "background-color": css("--bad") } },
    {
      selector: "node.virtual",
      style: {
        shape: "diamond",
        "background-color": css("--virtual"),
        "border-style": "dashed",
        "border-color": css("--fg-dim"),
      },
    },
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
        "text-background-color": css("--bg"),
        "text-background-opacity": 0.85,
        "text-background-padding": "2px",
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
  ];
}
