// Traffic animation: dashes run along each edge from caller to callee, faster the more calls
// it carries (by the logarithm of the rate, so a quiet edge still moves), on red edges where
// calls fail. Off by default; only small maps animate, as every frame redraws every edge.

import type { Core } from "cytoscape";

/// Dash travel in model pixels a second for an edge of `cpm` calls a minute: 0 without calls.
export function dashSpeed(cpm: number): number {
  return cpm > 0 ? 12 * (1 + Math.log10(1 + cpm)) : 0;
}

let frame: number | undefined;

/// Starts or stops the animation on `cy`'s edges. Stopping touches only animated edges, so
/// that a map never animated (a big one) is not restyled on every draw.
export function animateTraffic(cy: Core, on: boolean): void {
  if (frame !== undefined) cancelAnimationFrame(frame);
  frame = undefined;
  if (!on) {
    const animated = cy.edges(".animated");
    if (animated.nonempty()) cy.batch(() => animated.removeClass("animated").removeStyle("line-dash-offset"));
    return;
  }
  cy.batch(() => cy.edges().addClass("animated"));
  const began = performance.now();
  const tick = (now: number) => {
    const seconds = (now - began) / 1000;
    cy.batch(() => {
      cy.edges(".animated").forEach((e) => {
        // A falling offset moves the dashes from source to target.
        e.style("line-dash-offset", -((seconds * dashSpeed(e.data("cpm") ?? 0)) % 1200));
      });
    });
    frame = requestAnimationFrame(tick);
  };
  frame = requestAnimationFrame(tick);
}
