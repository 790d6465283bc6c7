// The colour theme: the one the URL asks for, else the system's, applied to the page, the
// theme button and the map.

import { themeButton } from "./controls";
import { restyleMap } from "./map";
import { page } from "./page-state";

/// The theme in force: the view state's choice, else the system's preference.
export function theme(): "light" | "dark" {
  if (page.state.theme) return page.state.theme;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

/// Applies the theme in force to the page's colours, the theme button's label and the map.
export function applyTheme(): void {
  document.documentElement.dataset.theme = theme();
  themeButton.textContent = theme() === "dark" ? "Light theme" : "Dark theme";
  restyleMap();
}
