// Replay: a slider over the minutes of the chosen range shows the map as it was in each one.
// The services and edges keep their places; each takes the figures of the minute shown, and
// those without calls in it fade. Play steps a minute a second to the end of the range.

import { getJson } from "./api";
import { fullTime, MINUTE_MS } from "./chart-data";
import { toElements, topologyUrl, type Topology } from "./data";
import { byId } from "./dom";
import { cy, refitLabels } from "./map";
import { page } from "./page-state";

const form = byId<HTMLFormElement>("replay");
const toggle = byId<HTMLButtonElement>("replay-toggle");
const slider = byId<HTMLInputElement>("replay-minute");
const shown = byId<HTMLOutputElement>("replay-time");
const play = byId<HTMLButtonElement>("replay-play");
const back = byId<HTMLButtonElement>("replay-close");

/// The minute on the map while replaying (epoch milliseconds), or null when live.
export const replay: { minute: number | null; start: number; loads: number } = { minute: null, start: 0, loads: 0 };

let timer: number | undefined;
let seq = 0;
let onLeave: () => void = () => {};

/// The topology request for one minute, with the page's namespaces and focus.
function minuteUrl(t: number): string {
  return topologyUrl({ ...page.state, window: "custom", from: t, to: t + MINUTE_MS });
}

/// Puts the figures of `minute` on the map's elements; those absent from it fade.
function applyMinute(minute: Topology): void {
  const defs = new Map(toElements(minute, page.state.labels).map((d) => [d.data.id as string, d]));
  cy.batch(() => {
    cy.elements().forEach((ele) => {
      if (ele.hasClass("namespace")) return;
      const def = defs.get(ele.id());
      if (def) {
        // Ids, ends and parents are fixed once an element is on the map.
        const { id: _id, source: _s, target: _t, parent: _p, ...figures } = def.data;
        ele.data(figures);
        ele.classes(def.classes ?? "");
      } else {
        ele.data("label", ele.isNode() ? ele.data("name") : "");
        ele.classes(ele.isNode() ? `${ele.data("kind")} idle quiet` : "quiet");
      }
    });
  });
  refitLabels();
}

/// Shows minute number `index` of the range.
async function showMinute(index: number): Promise<void> {
  const t = replay.start + index * MINUTE_MS;
  const mine = ++seq;
  replay.minute = t;
  shown.value = fullTime(t);
  const minute = await getJson<Topology>(minuteUrl(t));
  if (mine !== seq || replay.minute == null) return;
  applyMinute(minute);
  replay.loads++;
  form.dataset.shownMinute = String(t);
}

function stop(): void {
  window.clearInterval(timer);
  timer = undefined;
  play.textContent = "Play";
}

/// Starts replaying the range of the map on screen, at its last minute.
function enter(): void {
  const topo = page.topology;
  if (!topo) return;
  replay.start = topo.start;
  const minutes = Math.max(1, Math.round((topo.end - topo.start) / MINUTE_MS));
  slider.max = String(minutes - 1);
  slider.value = String(minutes - 1);
  form.hidden = false;
  toggle.setAttribute("aria-expanded", "true");
  void showMinute(minutes - 1);
  slider.focus();
}

/// Back to the live map.
function leave(): void {
  stop();
  seq++;
  replay.minute = null;
  form.hidden = true;
  delete form.dataset.shownMinute;
  toggle.setAttribute("aria-expanded", "false");
  onLeave();
}

/// Wires the replay bar; `reload` redraws the live map when replay ends.
export function setUpReplay(reload: () => void): void {
  onLeave = reload;
  toggle.addEventListener("click", () => (replay.minute == null ? enter() : leave()));
  back.addEventListener("click", leave);
  slider.addEventListener("input", () => {
    stop();
    void showMinute(Number(slider.value));
  });
  play.addEventListener("click", () => {
    if (timer !== undefined) return stop();
    play.textContent = "Pause";
    if (Number(slider.value) >= Number(slider.max)) slider.value = "0";
    void showMinute(Number(slider.value));
    timer = window.setInterval(() => {
      const next = Number(slider.value) + 1;
      if (next > Number(slider.max)) return stop();
      slider.value = String(next);
      void showMinute(next);
    }, 1000);
  });
  form.addEventListener("submit", (ev) => ev.preventDefault());
}
