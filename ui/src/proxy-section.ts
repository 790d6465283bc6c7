// The proxies section of the service panel: each proxy of the service that streams its
// statistics, with its health, its figures over the window and its upstream clusters.

import { getJson } from "./api";
import { fmtBytes, fmtDuration, fmtNumber, PROXY_STATS, proxyFigures, windowParams, type Proxy, type ProxySeries } from "./data";
import { el } from "./dom";
import { page } from "./page-state";

/// A proxy with its statistics over the window, or null when they could not be read.
export interface ServiceProxy {
  proxy: Proxy;
  series: ProxySeries[] | null;
}

/// The proxies of a service with their statistics over the window. Proxies are optional: an
/// error here leaves the rest of the panel intact.
export async function serviceProxies(id: string): Promise<ServiceProxy[] | Error> {
  try {
    const list = await getJson<{ proxies: Proxy[] }>("/api/v1/proxies");
    const mine = list.proxies.filter((p) => p.service === id);
    const q = new URLSearchParams({ ...windowParams(page.state), names: PROXY_STATS.join(",") }).toString();
    return await Promise.all(
      mine.map(async (proxy) => {
        try {
          const m = await getJson<{ series: ProxySeries[] }>(`/api/v1/proxies/${encodeURIComponent(proxy.id)}/metrics?${q}`);
          return { proxy, series: m.series };
        } catch {
          return { proxy, series: null };
        }
      }),
    );
  } catch (err) {
    return err as Error;
  }
}

/// The section itself: a card per proxy, a note on how to make proxies report when the
/// service has none, or the reason the statistics are unavailable.
export function proxySection(proxies: ServiceProxy[] | Error): HTMLElement {
  const box = el("section", { className: "proxies" });
  if (proxies instanceof Error) {
    box.append(el("h3", { text: "Proxies" }), el("p", { className: "muted", text: `proxy statistics unavailable: ${proxies.message}` }));
    return box;
  }
  box.append(el("h3", { text: `Proxies (${proxies.length})` }));
  if (!proxies.length) {
    box.append(
      el("p", {
        className: "muted",
        text: "No proxy of this service reports its statistics. Add Envoy's metrics service sink (envoy.stat_sinks.metrics_service) pointing at the collector to see proxy health here.",
      }),
    );
    return box;
  }
  for (const { proxy, series } of proxies) {
    const card = el("div", { className: "proxy" });
    card.dataset.proxy = proxy.id;
    const badge = el("span", { className: `badge ${proxy.status}`, text: proxy.status });
    card.append(el("div", { className: "proxy-head" }, el("strong", { text: proxy.instance || proxy.id }), badge));
    const f = series ? proxyFigures(series) : null;
    const rows: [string, string][] = [
      ["Envoy", proxy.envoy_version || "–"],
      ["last seen", new Date(proxy.last_seen).toLocaleTimeString()],
      ["memory", f?.memory_bytes == null ? "–" : fmtBytes(f.memory_bytes)],
      ["connections", f?.connections == null ? "–" : fmtNumber(f.connections)],
      ["upstream rq", f ? fmtNumber(f.requests) : "–"],
      ["upstream 5xx", f ? fmtNumber(f.errors_5xx) : "–"],
      ["uptime", fmtDuration(f?.uptime_s ?? null)],
      ["node id", proxy.id],
    ];
    const dl = el("dl", { className: "figures" });
    for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", { text: v }));
    card.append(dl);
    if (f && f.clusters.length) {
      const table = el("table", { className: "clusters" });
      table.append(
        el("thead", {}, el("tr", {}, ...["upstream cluster", "rq", "5xx", "cx", "hosts"].map((h) => el("th", { text: h })))),
        el(
          "tbody",
          {},
          ...f.clusters.map((c) =>
            el(
              "tr",
              {},
              el("td", { text: c.cluster }),
              el("td", { text: fmtNumber(c.requests) }),
              el("td", { text: fmtNumber(c.errors_5xx) }),
              el("td", { text: c.active_connections == null ? "–" : fmtNumber(c.active_connections) }),
              el("td", { text: c.hosts == null ? "–" : `${c.healthy ?? "–"}/${c.hosts}` }),
            ),
          ),
        ),
      );
      card.append(table);
    } else if (!series) {
      card.append(el("p", { className: "muted", text: "statistics unavailable" }));
    }
    box.append(card);
  }
  return box;
}
