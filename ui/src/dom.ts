// Small DOM helpers for every part of the page: elements built with text (never HTML), the
// page's fixed elements by id, and the current theme's colours.

/// A new element with an optional class and text, and the given children appended. Text is
/// set through textContent, so telemetry strings never reach the page as HTML.
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: { className?: string; text?: string } = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (props.className) e.className = props.className;
  if (props.text != null) e.textContent = props.text;
  for (const c of children) e.append(c);
  return e;
}

/// An element of `index.html` by its id, typed as the caller expects it.
export function byId<T extends HTMLElement>(id: string): T {
  return document.getElementById(id) as T;
}

/// The value of a CSS custom property of the current theme (`--fg`, `--bad`, …), trimmed.
export function css(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}
