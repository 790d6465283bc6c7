// The header bar: its controls (range, namespace, focus and depth, auto refresh, theme) and
// the status line, kept in step with the view state.

import { CUSTOM, toLocalInput, WINDOWS } from "./data";
import { byId, el } from "./dom";
import { page } from "./page-state";

export const windowSelect = byId<HTMLSelectElement>("window");
export const customRange = byId<HTMLFormElement>("custom-range");
export const fromInput = byId<HTMLInputElement>("from");
export const toInput = byId<HTMLInputElement>("to");
export const nsSelect = byId<HTMLSelectElement>("namespace");
export const search = byId<HTMLInputElement>("search");
export const depthSelect = byId<HTMLSelectElement>("depth");
export const clearFocus = byId<HTMLButtonElement>("clear-focus");
export const autoRefresh = byId<HTMLInputElement>("auto-refresh");
export const themeButton = byId<HTMLButtonElement>("theme");
/// One line of text: when the map was last updated, or what went wrong.
export const status = byId<HTMLElement>("status");

/// Fills the range picker with the fixed windows and the custom range; once, at start.
export function fillWindowChoices(): void {
  for (const w of WINDOWS) windowSelect.append(el("option", { text: w }));
  windowSelect.append(el("option", { text: CUSTOM }));
}

/// Sets every control to what the view state says. A namespace not listed yet (from a
/// shared link, before the first load) is added as a choice.
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
  if (![...nsSelect.options].some((o) => o.value === state.namespace)) {
    nsSelect.append(el("option", { text: state.namespace }));
  }
  nsSelect.value = state.namespace;
}
