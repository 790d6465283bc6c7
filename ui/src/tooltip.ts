// The hover card over the map: a node's or an edge's figures where the pointer is.

import type { EdgeSingular, NodeSingular, Position } from "cytoscape";
import { edgeId, edgeRequests, fmtMs, fmtNumber, fmtPct, fmtRetries, upstreamHealthText } from "./data";
import { byId } from "./dom";
import { page } from "./page-state";

const tooltip = byId<HTMLElement>("tooltip");

/// Shows the figures of `target` (a service or an edge of the loaded topology) beside the
/// pointer at `at`, in map pixels. Namespace boxes, and elements the topology no longer has,
/// show nothing.
export function showTooltip(target: NodeSingular | EdgeSingular, at: Position): void {
  const topo = page.topology;
  if (target.isNode() && target.hasClass("namespace")) return;
  const lines: string[] = [];
  if (target.isNode()) {
    const n = topo?.nodes.find((x) => x.id === target.id());
    if (!n) return;
    lines.push(n.id, `${fmtNumber(n.metrics.cpm)}/min`, `errors ${fmtPct(n.metrics.error_rate)}`, `p50 ${fmtMs(n.metrics.p50_ms)} · p95 ${fmtMs(n.metrics.p95_ms)} · p99 ${fmtMs(n.metrics.p99_ms)}`);
  } else {
    const e = topo?.edges.find((x) => edgeId(x) === target.id());
    if (!e) return;
    lines.push(`${e.source} → ${e.target} (${e.protocol})`, `${fmtNumber(e.metrics.cpm)}/min · errors ${fmtPct(e.metrics.error_rate)}`, `p50 ${fmtMs(e.metrics.p50_ms)} · p95 ${fmtMs(e.metrics.p95_ms)} · p99 ${fmtMs(e.metrics.p99_ms)}`, `seen by ${e.detected_by}${e.mtls ? " · mTLS" : ""}`);
    if (e.retries) lines.push(`caller: ${fmtNumber(edgeRequests(e))} requests · ${fmtRetries(e.retries)}`);
    const upstream = upstreamHealthText(e.upstream_health);
    if (upstream) lines.push(`upstream: ${upstream}`);
  }
  tooltip.textContent = lines.join("\n");
  tooltip.hidden = false;
  tooltip.style.left = `${at.x + 14}px`;
  tooltip.style.top = `${at.y + 14}px`;
}

/// Hides the hover card.
export function hideTooltip(): void {
  tooltip.hidden = true;
}
