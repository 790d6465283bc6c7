// The edge panel: the calls from one service to another over the window, the caller's view
// of its upstream, and the caller's and the callee's figures side by side.

import { getJson } from "./api";
import { edgeId, fmtBytes, fmtNumber, rangeLabel, upstreamDegraded, upstreamHealthText, windowParams, type Metrics, type Point, type SideFigures, type TopoEdge } from "./data";
import { el } from "./dom";
import { seriesCharts } from "./charts";
import { edgeSidesSection } from "./edge-sides-panel";
import { figures } from "./metric-tables";
import { instancesButton } from "./instance-level";
import { instancesChanged, page } from "./page-state";
import { closePanel, panel, panelHeader, panelRequest, showPanel } from "./panel";

/// One side's figures of an edge: the server's or the client's proxy.
interface EdgeSide extends SideFigures {
  metrics: Metrics;
  series: Point[];
}

/// The API's answer for one edge: its figures over the window and those of each side.
interface EdgeDetail extends Omit<TopoEdge, "client" | "server"> {
  series: Point[];
  server: EdgeSide | null;
  client: EdgeSide | null;
}

/// Which edge a panel shows: its two ends and its protocol.
export type EdgeRef = Pick<TopoEdge, "source" | "target" | "protocol">;

/// Opens the panel of edge `e` over the page's range; an edge without traffic in the range
/// says so, and an error shows in the panel instead. Dropped if a newer panel was asked for.
export async function openEdge(e: EdgeRef): Promise<void> {
  const isLatest = panelRequest();
  const q = new URLSearchParams({ source: e.source, target: e.target, protocol: e.protocol, ...windowParams(page.state) });
  const range = rangeLabel(page.state);
  try {
    const res = await getJson<{ now: number; edges: EdgeDetail[] }>("/api/v1/edges?" + q.toString());
    if (!isLatest()) return;
    const d = res.edges.find((x) => x.protocol === e.protocol) ?? res.edges[0];
    const scroll = panel.scrollTop;
    closePanel(true);
    showPanel("edge", edgeId(e), `${e.source} → ${e.target}`);
    panel.dataset.edge = JSON.stringify({ source: e.source, target: e.target, protocol: e.protocol });
    const body = el("div", { className: "body" });
    const flags = [e.protocol.toUpperCase(), `seen by ${d.detected_by}`, d.mtls ? "mTLS" : "no mTLS", range].join(" · ");
    panel.append(panelHeader(`${e.source} → ${e.target}`, flags), body);
    const upstream = upstreamHealthText(d.upstream_health);
    if (upstream) {
      const line = el("p", { className: "upstream-health", text: `Upstream: ${upstream}` });
      if (upstreamDegraded(d.upstream_health)) line.classList.add("degraded");
      body.append(line);
    }
    body.append(
      figures(d.metrics, [
        ["sent", fmtBytes(d.metrics.bytes_sent)],
        ["received", fmtBytes(d.metrics.bytes_received)],
        ["mTLS calls", fmtNumber(d.metrics.mtls_calls ?? 0)],
      ]),
    );
    body.append(edgeSidesSection(d));
    seriesCharts(body, d.series, res.now, false);
    body.append(instancesButton([e.source, e.target], instancesChanged));
    panel.scrollTop = scroll;
  } catch (err) {
    if (!isLatest()) return;
    closePanel(true);
    showPanel("edge", edgeId(e), `${e.source} → ${e.target}`);
    panel.dataset.edge = JSON.stringify({ source: e.source, target: e.target, protocol: e.protocol });
    panel.append(panelHeader(`${e.source} → ${e.target}`, `edge · ${range}`), el("p", { className: "muted", text: (err as Error).message }));
  }
}
