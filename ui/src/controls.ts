// The header bars: their controls (range, namespaces, focus and depth, auto refresh, theme,
// find, the hide or highlight rule, edge labels, animation) and the status line, kept in step
// with the view state.

import { CUSTOM, toLocalInput, WINDOWS } from "./data";
import { byId, el } from "./dom";
import { page } from "./page-state";

export const windowSelect = byId<HTMLSelectElement>("window");
export const customRange = byId<HTMLFormElement>("custom-range");
export const fromInput = byId<HTMLInputElement>("from");
export const toInput = byId<HTMLInputElement>("to");
export const namespaceChoices = byId<HTMLFieldSetElement>("namespace-choices");
const namespaceSummary = byId<HTMLElement>("namespace-summary");
export const search = byId<HTMLInputElement>("search");
export const depthSelect = byId<HTMLSelectElement>("depth");
export const clearFocus = byId<HTMLButtonElement>("clear-focus");
export const autoRefresh = byId<HTMLInputElement>("auto-refresh");
export const themeButton = byId<HTMLButtonElement>("theme");
export const findInput = byId<HTMLInputElement>("find");
export const ruleInput = byId<HTMLInputElement>("rule");
export const ruleMode = byId<HTMLSelectElement>("rule-mode");
export const labelsSelect = byId<HTMLSelectElement>("labels");
export const animateBox = byId<HTMLInputElement>("animate");
/// One line of text: when the map was last updated, or what went wrong.
export const status = byId<HTMLElement>("status");

/// Fills the range picker with the fixed windows and the custom range; once, at start.
export function fillWindowChoices(): void {
  for (const w of WINDOWS) windowSelect.append(el("option", { text: w }));
  windowSelect.append(el("option", { text: CUSTOM }));
}

/// The namespaces the state shows; empty for all.
export function chosenNamespaces(): string[] {
  return page.state.namespace.split(",").filter(Boolean);
}

/// Adds a checkbox for each of `namespaces` not listed yet, in name order.
export function offerNamespaces(namespaces: string[]): void {
  const known = new Set([...namespaceChoices.querySelectorAll("input")].map((i) => i.value));
  for (const ns of namespaces) {
    if (known.has(ns)) continue;
    known.add(ns);
    const box = el("input");
    box.type = "checkbox";
    box.value = ns;
    box.name = "namespace";
    const label = el("label", {}, box, " " + ns);
    const after = [...namespaceChoices.querySelectorAll("label")].find((l) => (l.querySelector("input")?.value ?? "") > ns);
    if (after) namespaceChoices.insertBefore(label, after);
    else namespaceChoices.append(label);
  }
  syncNamespaces();
}

/// The checkboxes and the summary say what the state shows.
function syncNamespaces(): void {
  const chosen = chosenNamespaces();
  offerMissing(chosen);
  for (const box of namespaceChoices.querySelectorAll("input")) box.checked = chosen.includes(box.value);
  namespaceSummary.textContent = chosen.length ? chosen.join(", ") : "all";
}

/// A namespace from a shared link, before the first load lists it, is offered too.
function offerMissing(chosen: string[]): void {
  const known = new Set([...namespaceChoices.querySelectorAll("input")].map((i) => i.value));
  if (chosen.some((ns) => !known.has(ns))) offerNamespaces(chosen.filter((ns) => !known.has(ns)));
}

/// The namespaces ticked, as the state's comma-separated list.
export function tickedNamespaces(): string {
  return [...namespaceChoices.querySelectorAll("input")]
    .filter((i) => i.checked)
    .map((i) => i.value)
    .join(",");
}

/// Sets every control to what the view state says.
export function syncControls(): void {
  const state = page.state;
  windowSelect.value = state.window;
  customRange.hidden = state.window !== CUSTOM;
  if (state.window === CUSTOM) {
    fromInput.value = toLocalInput(state.from);
    toInput.value = toLocalInput(state.to);
  }
  search.value = state.service;
  depthSelect.value = String(state.depth);
  depthSelect.disabled = !state.service;
  clearFocus.hidden = !state.service;
  labelsSelect.value = state.labels;
  syncNamespaces();
}
