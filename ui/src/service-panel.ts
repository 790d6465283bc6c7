// The service panel: a service's figures and charts over the window, its instances, its
// endpoints and its proxies.

import { getJson } from "./api";
import { rangeLabel, servicePath, windowParams, type Metrics, type Point } from "./data";
import { el } from "./dom";
import { seriesCharts } from "./charts";
import { figures, METRIC_COLUMNS, sortableTable } from "./metric-tables";
import { instancesChanged, page } from "./page-state";
import { closePanel, panel, panelHeader, panelRequest, showPanel } from "./panel";
import { proxySection, serviceProxies } from "./proxy-section";
import { instancesButton } from "./instance-level";

/// The API's answer for one service.
interface ServiceDetail {
  id: string;
  name: string;
  namespace: string | null;
  kind: string;
  metrics: Metrics;
  series: Point[];
}

/// Opens the panel of service `id`, once its figures, instances, endpoints and proxies have
/// all answered; an error shows in the panel instead. Dropped if a newer panel was asked for.
export async function openService(id: string): Promise<void> {
  const isLatest = panelRequest();
  const base = servicePath(id);
  const win = "?" + new URLSearchParams(windowParams(page.state)).toString();
  try {
    const [svc, inst, eps, proxies] = await Promise.all([
      getJson<ServiceDetail & { now: number }>(base + win),
      getJson<{ instances: { name: string; metrics: Metrics }[] }>(base + "/instances" + win),
      getJson<{ endpoints: { name: string; metrics: Metrics }[] }>(base + "/endpoints" + win),
      serviceProxies(id),
    ]);
    if (!isLatest()) return;
    const scroll = panel.scrollTop;
    closePanel(true);
    showPanel("service", id, svc.name);
    const body = el("div", { className: "body" });
    panel.append(panelHeader(svc.name, `${svc.namespace ?? "no namespace"} · ${svc.kind} · ${rangeLabel(page.state)}`), body);
    body.append(figures(svc.metrics, [["apdex", svc.metrics.apdex == null ? "–" : svc.metrics.apdex.toFixed(2)]]));
    seriesCharts(body, svc.series, svc.now, true);
    body.append(el("h3", { text: `Instances (${inst.instances.length})` }), instancesButton([id], instancesChanged), sortableTable(METRIC_COLUMNS, inst.instances));
    body.append(el("h3", { text: `Endpoints (${eps.endpoints.length})` }), sortableTable(METRIC_COLUMNS, eps.endpoints));
    body.append(proxySection(proxies));
    panel.scrollTop = scroll;
  } catch (err) {
    if (!isLatest()) return;
    closePanel(true);
    showPanel("service", id, id);
    panel.append(panelHeader(id, `service · ${rangeLabel(page.state)}`), el("p", { className: "muted", text: (err as Error).message }));
  }
}
