// The map as a list, for the keyboard and screen readers: every service and edge on the map
// as a button that opens its panel, with its health in words.

import { edgeId, fmtNumber, fmtPct, fmtRetries, health, type Topology } from "./data";
import { byId, el } from "./dom";

const list = byId<HTMLElement>("element-list");
const toggle = byId<HTMLButtonElement>("list-toggle");

const HEALTH_WORDS = { idle: "no calls", ok: "healthy", warn: "errors ≥ 1%", bad: "errors ≥ 5%" } as const;

let open: (kind: "node" | "edge", id: string) => void = () => {};

/// Fills the list from `topology` when it is shown; keeps the focused entry when it is still
/// there.
export function fillElementList(topology: Topology | null): void {
  if (list.hidden || !topology) return;
  const focused = (document.activeElement as HTMLElement | null)?.dataset?.element;
  const item = (kind: "node" | "edge", id: string, text: string) => {
    const b = el("button", { text });
    b.type = "button";
    b.dataset.element = `${kind}:${id}`;
    b.addEventListener("click", () => open(kind, id));
    return el("li", {}, b);
  };
  const services = topology.nodes.map((n) =>
    item("node", n.id, `${n.id} · ${fmtNumber(n.metrics.cpm)}/min · ${fmtPct(n.metrics.error_rate)} errors · ${HEALTH_WORDS[health(n.metrics)]}`),
  );
  const edges = topology.edges.map((e) =>
    item(
      "edge",
      edgeId(e),
      `${e.source} → ${e.target} (${e.protocol}) · ${fmtNumber(e.metrics.cpm)}/min · ${fmtPct(e.metrics.error_rate)} errors · ${HEALTH_WORDS[health(e.metrics)]}${e.mtls ? " · mTLS" : ""}${e.retries ? ` · ${fmtRetries(e.retries)}` : ""}`,
    ),
  );
  list.replaceChildren(
    el("h2", { text: `Services (${services.length})` }),
    el("ul", { className: "services" }, ...services),
    el("h2", { text: `Edges (${edges.length})` }),
    el("ul", { className: "edges" }, ...edges),
  );
  if (focused) (list.querySelector(`[data-element="${CSS.escape(focused)}"]`) as HTMLElement | null)?.focus();
}

/// Wires the list's toggle; `openElement` opens the panel of a service or an edge.
export function setUpElementList(current: () => Topology | null, openElement: (kind: "node" | "edge", id: string) => void): void {
  open = openElement;
  toggle.addEventListener("click", () => {
    list.hidden = !list.hidden;
    toggle.setAttribute("aria-expanded", String(!list.hidden));
    fillElementList(current());
    if (!list.hidden) (list.querySelector("button") as HTMLElement | null)?.focus();
  });
}
