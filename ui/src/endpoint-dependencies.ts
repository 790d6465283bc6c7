// The service panel's endpoint dependencies: for the inbound endpoint picked in the endpoint
// list, the outbound endpoints the service's proxy called while serving it (matched by
// request id), with their calls, errors and latency, each callee a link that focuses it;
// and the other services' endpoints whose serving called it.

import { apiFetch } from "./auth";
import { fmtMs, fmtNumber, fmtPct } from "./data";
import { el } from "./dom";

/// One outbound endpoint called while serving the inbound one.
export interface Dependency {
  service: string;
  endpoint: string;
  calls: number;
  errors: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
}

/// What an endpoint led to (`dependencies`) and what led to it (`callers`), busiest first.
export interface EndpointLinks {
  dependencies: Dependency[];
  callers: Dependency[];
}

/// The endpoint's links the API knows at `url`, busiest first. A server without the route
/// answers 404: none known. Any other failure is thrown with the API's message.
export async function loadDependencies(url: string): Promise<EndpointLinks> {
  const res = await apiFetch(url, { headers: { accept: "application/json" } });
  if (res.status === 404) return { dependencies: [], callers: [] };
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error(body?.error ?? `HTTP ${res.status}`);
  return { dependencies: busiestFirst(body?.dependencies), callers: busiestFirst(body?.callers) };
}

function busiestFirst(list: unknown): Dependency[] {
  const items: Dependency[] = Array.isArray(list) ? list : [];
  return [...items].sort((a, b) => b.calls - a.calls || a.service.localeCompare(b.service) || a.endpoint.localeCompare(b.endpoint));
}

/// How the section links a callee: the page's address with it focused, and what a click on
/// the link does instead of following it.
export interface CalleeLinks {
  href: (service: string) => string;
  focus: (service: string) => void;
}

/// The section for `endpoint` of a service, read from `url`: "loading" at first, then a
/// table of its dependencies, "no dependencies known", or the reason they could not be read.
export function dependenciesSection(endpoint: string, url: string, links: CalleeLinks): HTMLElement {
  const box = el("section", { className: "endpoint-dependencies" });
  box.dataset.endpoint = endpoint;
  const status = el("p", { className: "muted", text: "loading…" });
  box.append(el("h3", { text: `Dependencies of ${endpoint}` }), status);
  loadDependencies(url).then(
    ({ dependencies, callers }) => {
      if (!dependencies.length && !callers.length) {
        status.textContent = "no dependencies known";
        return;
      }
      status.remove();
      if (dependencies.length) box.append(dependencyTable(dependencies, links, "dependencies", "callee"));
      else box.append(el("p", { className: "muted", text: "it called nothing known" }));
      if (callers.length) {
        box.append(el("h4", { text: "Reached while serving" }), dependencyTable(callers, links, "callers", "caller"));
      }
    },
    (err: Error) => {
      status.textContent = `dependencies unavailable: ${err.message}`;
    },
  );
  return box;
}

/// A table of `deps`, the first column (`who`: callee or caller) a link that focuses it.
function dependencyTable(deps: Dependency[], links: CalleeLinks, className: string, who: string): HTMLElement {
  const table = el("table", { className });
  const head = [who, "endpoint", "calls", "errors", "p50", "p95", "p99"].map((h) => el("th", { text: h }));
  const rows = deps.map((d) => {
    const link = el("a", { text: d.service });
    link.href = links.href(d.service);
    link.title = `Focus the map on ${d.service}`;
    link.addEventListener("click", (ev) => {
      if (ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
      ev.preventDefault();
      links.focus(d.service);
    });
    const errors = `${fmtNumber(d.errors)} (${fmtPct(d.calls ? d.errors / d.calls : null)})`;
    return el(
      "tr",
      {},
      el("td", {}, link),
      el("td", { text: d.endpoint }),
      el("td", { text: fmtNumber(d.calls) }),
      el("td", { text: errors }),
      el("td", { text: fmtMs(d.p50_ms) }),
      el("td", { text: fmtMs(d.p95_ms) }),
      el("td", { text: fmtMs(d.p99_ms) }),
    );
  });
  table.append(el("thead", {}, el("tr", {}, ...head)), el("tbody", {}, ...rows));
  return table;
}
