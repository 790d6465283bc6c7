// The edge panel: the calls from one service to another over the window, the caller's view
// of its upstream, and the figures as each side's proxy reported them.

import { getJson } from "./api";
import { edgeId, fmtBytes, fmtNumber, upstreamDegraded, upstreamHealthText, windowParams, type Metrics, type Point, type TopoEdge } from "./data";
import { el } from "./dom";
import { seriesCharts } from "./charts";
import { figures, METRIC_COLUMNS, sortableTable } from "./metric-tables";
import { page } from "./page-state";
import { closePanel, panel, panelHeader, panelRequest } from "./panel";

/// One side's figures of an edge: the server's or the client's proxy.
interface EdgeSide {
  metrics: Metrics;
  series: Point[];
}

/// The API's answer for one edge: its figures over the window and those of each side.
interface EdgeDetail extends TopoEdge {
  series: Point[];
  server: EdgeSide | null;
  client: EdgeSide | null;
}

/// Opens the panel of edge `e`; an edge without traffic in the window says so, and an error
/// shows in the panel instead. Dropped if a newer panel was asked for.
export async function openEdge(e: TopoEdge): Promise<void> {
  const isLatest = panelRequest();
  const q = new URLSearchParams({ source: e.source, target: e.target, protocol: e.protocol, ...windowParams(page.state) });
  try {
    const res = await getJson<{ edges: EdgeDetail[] }>("/api/v1/edges?" + q.toString());
    if (!isLatest()) return;
    const d = res.edges.find((x) => x.protocol === e.protocol) ?? res.edges[0];
    closePanel();
    panel.hidden = false;
    panel.dataset.kind = "edge";
    panel.dataset.id = edgeId(e);
    const body = el("div", { className: "body" });
    const flags = [e.protocol.toUpperCase(), `seen by ${e.detected_by}`, e.mtls ? "mTLS 🔒" : "no mTLS"].join(" · ");
    panel.append(panelHeader(`${e.source} → ${e.target}`, flags), body);
    const upstream = upstreamHealthText(e.upstream_health);
    if (upstream) {
      const line = el("p", { className: "upstream-health", text: `Upstream: ${upstream}` });
      if (upstreamDegraded(e.upstream_health)) line.classList.add("degraded");
      body.append(line);
    }
    if (!d) {
      body.append(el("p", { className: "muted", text: "no traffic in this window" }));
      return;
    }
    body.append(
      figures(d.metrics, [
        ["sent", fmtBytes(d.metrics.bytes_sent)],
        ["received", fmtBytes(d.metrics.bytes_received)],
        ["mTLS calls", fmtNumber(d.metrics.mtls_calls ?? 0)],
      ]),
    );
    seriesCharts(body, d.series, false);
    const sides = [
      ...(d.server ? [{ name: "server side", metrics: d.server.metrics }] : []),
      ...(d.client ? [{ name: "client side", metrics: d.client.metrics }] : []),
    ];
    body.append(el("h3", { text: "As each proxy reported it" }), sortableTable(METRIC_COLUMNS, sides));
  } catch (err) {
    if (!isLatest()) return;
    closePanel();
    panel.hidden = false;
    panel.append(panelHeader(`${e.source} → ${e.target}`, "edge"), el("p", { className: "muted", text: (err as Error).message }));
  }
}
