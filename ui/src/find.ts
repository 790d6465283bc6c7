// Finding things on the map: services whose name holds what was typed are highlighted and
// centred, and an expression (see `expression.ts`) hides or highlights the services and edges
// it picks. Both are applied again whenever the map is drawn.

import type { Core } from "cytoscape";
import { edgeId, type TopoEdge, type TopoNode, type Topology } from "./data";
import { byId } from "./dom";
import { parseExpression, type Predicate, type Subject } from "./expression";

const findResult = byId<HTMLElement>("find-result");
const ruleResult = byId<HTMLElement>("rule-result");

function nodeSubject(n: TopoNode): Subject {
  return { kind: "node", name: n.name, namespaces: n.namespace ? [n.namespace] : [], ...n.metrics };
}

function edgeSubject(e: TopoEdge, nodes: Map<string, TopoNode>): Subject {
  const namespaces = [nodes.get(e.source)?.namespace, nodes.get(e.target)?.namespace].filter((ns): ns is string => !!ns);
  return { kind: "edge", name: `${e.source} → ${e.target}`, namespaces, mtls: e.mtls, protocol: e.protocol, retries: e.retries ?? 0, ...e.metrics };
}

/// Highlights the services whose id holds `text` (any case) and centres the map on them;
/// says how many matched. Returns the ids found.
export function findOnMap(cy: Core, text: string, centre = true): string[] {
  const needle = text.trim().toLowerCase();
  cy.batch(() => cy.elements(".found").removeClass("found"));
  if (!needle) {
    findResult.textContent = "";
    refreshDimming(cy);
    return [];
  }
  const found = cy.nodes().not(".namespace, .instance").filter((n) => n.id().toLowerCase().includes(needle));
  cy.batch(() => found.addClass("found"));
  refreshDimming(cy);
  findResult.textContent = found.length ? `${found.length} found` : `no service on the map matches "${text.trim()}"`;
  if (centre && found.nonempty()) {
    if (found.length === 1) cy.animate({ center: { eles: found }, duration: 200 });
    else cy.animate({ fit: { eles: found, padding: 60 }, duration: 200 });
  }
  return found.map((n) => n.id());
}

let rule: { predicate: Predicate | null; mode: "hide" | "highlight" } = { predicate: null, mode: "hide" };

/// Reads the expression for hiding or highlighting; an expression it cannot read is said
/// beside the box and changes nothing. Returns whether it was read.
export function setRule(cy: Core, topology: Topology | null, text: string, mode: "hide" | "highlight"): boolean {
  const input = byId<HTMLInputElement>("rule");
  try {
    rule = { predicate: parseExpression(text), mode };
    input.removeAttribute("aria-invalid");
    ruleResult.classList.remove("error");
  } catch (err) {
    input.setAttribute("aria-invalid", "true");
    ruleResult.classList.add("error");
    ruleResult.textContent = (err as Error).message;
    return false;
  }
  applyRule(cy, topology);
  return true;
}

/// Applies the expression to the map as drawn: hidden elements leave the map (with the edges
/// of a hidden service), highlighted ones stand out while the rest fades.
export function applyRule(cy: Core, topology: Topology | null): void {
  // Only the elements that carry the classes: a big map has thousands that do not.
  cy.batch(() => cy.elements(".hidden-by-rule, .ruled").removeClass("hidden-by-rule ruled"));
  const predicate = rule.predicate;
  if (!predicate || !topology) {
    if (!ruleResult.classList.contains("error")) ruleResult.textContent = "";
    refreshDimming(cy);
    return;
  }
  const nodes = new Map(topology.nodes.map((n) => [n.id, n]));
  const picked: string[] = [];
  for (const n of topology.nodes) if (predicate(nodeSubject(n))) picked.push(n.id);
  for (const e of topology.edges) if (predicate(edgeSubject(e, nodes))) picked.push(edgeId(e));
  const cls = rule.mode === "hide" ? "hidden-by-rule" : "ruled";
  cy.batch(() => {
    for (const id of picked) cy.getElementById(id).addClass(cls);
  });
  const services = picked.filter((id) => nodes.has(id)).length;
  const verb = rule.mode === "hide" ? "hidden" : "highlighted";
  ruleResult.textContent = `${services} services and ${picked.length - services} edges ${verb}`;
  refreshDimming(cy);
}

/// Fades what neither find nor a highlight rule picked, while either picks something.
function refreshDimming(cy: Core): void {
  const picked = cy.elements(".found, .ruled");
  cy.batch(() => {
    cy.elements(".dimmed").removeClass("dimmed");
    if (picked.nonempty()) cy.elements().not(".namespace").not(picked).addClass("dimmed");
  });
}
