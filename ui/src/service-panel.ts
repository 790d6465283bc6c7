// The service panel: a service's figures and charts over the window, its instances and
// the instance pairs it is an end of, its endpoints (the one picked with its dependencies)
// and its proxies.

import { getJson } from "./api";
import { endpointDependenciesUrl, rangeLabel, servicePath, windowParams, type Metrics, type Point } from "./data";
import { el } from "./dom";
import { seriesCharts } from "./charts";
import { dependenciesSection } from "./endpoint-dependencies";
import { figures, METRIC_COLUMNS, sortableTable } from "./metric-tables";
import { focusHref, instancesChanged, page, requestFocus } from "./page-state";
import { closePanel, panel, panelHeader, panelRequest, showPanel } from "./panel";
import { proxySection, serviceProxies } from "./proxy-section";
import { instancesButton } from "./instance-level";
import { instancePairsSection, type InstancePair } from "./instance-pairs";

/// The API's answer for one service.
interface ServiceDetail {
  id: string;
  name: string;
  namespace: string | null;
  kind: string;
  metrics: Metrics;
  series: Point[];
}

/// The endpoint whose dependencies the panel shows, kept while the panel is read again for a
/// refresh or a new range.
let pickedEndpoint: { service: string; endpoint: string } | null = null;

/// The dependencies of `endpoint` of service `id` over the page's range.
function endpointDependencies(id: string, endpoint: string): HTMLElement {
  return dependenciesSection(endpoint, endpointDependenciesUrl(id, endpoint, page.state), { href: focusHref, focus: requestFocus });
}

/// Opens the panel of service `id`, once its figures, instances, endpoints and proxies have
/// all answered; an error shows in the panel instead. Dropped if a newer panel was asked for.
export async function openService(id: string): Promise<void> {
  const isLatest = panelRequest();
  const base = servicePath(id);
  const win = "?" + new URLSearchParams(windowParams(page.state)).toString();
  try {
    const [svc, inst, eps, proxies, pairs] = await Promise.all([
      getJson<ServiceDetail & { now: number }>(base + win),
      getJson<{ instances: { name: string; metrics: Metrics }[] }>(base + "/instances" + win),
      getJson<{ endpoints: { name: string; metrics: Metrics }[] }>(base + "/endpoints" + win),
      serviceProxies(id),
      // A server without the route has none to show; the panel opens all the same.
      getJson<{ pairs: InstancePair[] }>(base + "/instance-pairs" + win).catch(() => ({ pairs: [] as InstancePair[] })),
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
    body.append(instancePairsSection(pairs.pairs, id));
    const picked = pickedEndpoint?.service === id && eps.endpoints.some((e) => e.name === pickedEndpoint!.endpoint) ? pickedEndpoint.endpoint : null;
    const dependencies = el("div", { className: "dependencies-slot" });
    if (picked) dependencies.append(endpointDependencies(id, picked));
    else dependencies.append(el("p", { className: "muted hint", text: "Pick an endpoint to see what it calls." }));
    const onPick = (endpoint: string) => {
      pickedEndpoint = { service: id, endpoint };
      dependencies.replaceChildren(endpointDependencies(id, endpoint));
    };
    body.append(el("h3", { text: `Endpoints (${eps.endpoints.length})` }), sortableTable(METRIC_COLUMNS, eps.endpoints, { picked, onPick }));
    if (eps.endpoints.length) body.append(dependencies);
    body.append(proxySection(proxies));
    panel.scrollTop = scroll;
  } catch (err) {
    if (!isLatest()) return;
    closePanel(true);
    showPanel("service", id, id);
    panel.append(panelHeader(id, `service · ${rangeLabel(page.state)}`), el("p", { className: "muted", text: (err as Error).message }));
  }
}
