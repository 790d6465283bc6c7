// The instance level of the map: for the services chosen (one, or both ends of an edge), the
// instances (pods, VMs) that served their calls are drawn inside the service, each with its
// rate and health. The store keeps calls per instance but not who called which instance, so
// edges stay between services.

import { getJson } from "./api";
import { fmtNumber, fmtPct, health, servicePath, windowParams, type Metrics } from "./data";
import { cy, refitLabels } from "./map";
import { page } from "./page-state";

export const INSTANCE_PREFIX = "instance:";

const ROW = 52;

let seq = 0;

/// The services whose instances the state asks for.
export function expandedServices(): string[] {
  return page.state.instances.split(",").filter(Boolean);
}

/// Draws the instances of the services the state names, in place of any drawn before; a
/// service not on the map is skipped. Resolves once they are drawn.
export async function drawInstances(): Promise<void> {
  const mine = ++seq;
  const services = expandedServices().filter((id) => cy.getElementById(id).nonempty());
  const q = "?" + new URLSearchParams(windowParams(page.state)).toString();
  const answers = await Promise.all(
    services.map((id) =>
      getJson<{ instances: { name: string; metrics: Metrics }[] }>(servicePath(id) + "/instances" + q).then(
        (r) => [id, r.instances] as const,
        () => [id, []] as const,
      ),
    ),
  );
  if (mine !== seq) return;
  cy.batch(() => {
    cy.nodes(".instance").remove();
    for (const [service, instances] of answers) {
      const at = cy.getElementById(service).position();
      instances.forEach((inst, i) => {
        const h = health(inst.metrics);
        const errors = h === "warn" || h === "bad" ? ` · ${fmtPct(inst.metrics.error_rate)} err` : "";
        cy.add({
          group: "nodes",
          data: {
            id: `${INSTANCE_PREFIX}${service}/${inst.name}`,
            parent: service,
            service,
            name: inst.name,
            label: `${inst.name}\n${fmtNumber(inst.metrics.cpm)}/min${errors}`,
            cpm: inst.metrics.cpm,
          },
          classes: `instance ${h}`,
          position: { x: at.x, y: at.y + (i - (instances.length - 1) / 2) * ROW },
        });
      });
    }
  });
  refitLabels();
}

/// A button that draws the instances of `services` on the map, or takes them away again.
export function instancesButton(services: string[], onChange: () => void): HTMLButtonElement {
  const key = services.join(",");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "instances-toggle";
  const show = () => {
    const shown = page.state.instances === key;
    button.textContent = shown ? "Hide instances on the map" : "Show instances on the map";
    button.setAttribute("aria-pressed", String(shown));
  };
  show();
  button.addEventListener("click", () => {
    page.state.instances = page.state.instances === key ? "" : key;
    show();
    onChange();
  });
  return button;
}
