// What the page shows, shared by its parts: the view state that lives in the URL (range,
// namespace, focus, selection, theme) and the topology last loaded.

import { parseState, stateQuery, type Topology, type UiState } from "./data";

/// The page's current view. `state` is replaced whole when the browser goes back or forward;
/// `topology` is null until the first load answers.
export const page: { state: UiState; topology: Topology | null } = {
  state: parseState(location.search),
  topology: null,
};

/// Writes the view state to the URL: as a new history entry, or with `replace` in place of
/// the current one.
export function pushState(replace = false): void {
  const url = location.pathname + stateQuery(page.state);
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
}

let onInstancesChanged: () => void = () => {};

/// Sets what runs when the state's instance level changes (the map and the panel redraw).
export function whenInstancesChange(f: () => void): void {
  onInstancesChanged = f;
}

/// The state's instance level changed: the URL follows, then the map and the panel.
export function instancesChanged(): void {
  pushState();
  onInstancesChanged();
}

let onFocusRequested: (service: string) => void = () => {};

/// Sets what runs when a panel asks to focus the map on a service (the map and the panel
/// follow).
export function whenFocusRequested(f: (service: string) => void): void {
  onFocusRequested = f;
}

/// Focuses the map on `service` and selects it, as a link in a panel asks.
export function requestFocus(service: string): void {
  onFocusRequested(service);
}

/// The page's address with the map focused on `service` and the service selected.
export function focusHref(service: string): string {
  return location.pathname + stateQuery({ ...page.state, service, selected: "node:" + service });
}
