// How fast the map is at the size of a big cluster: a real meshscope fed with 500 services
// and 5,000 edges (`meshscope simulate-wide`), the dashboard in headless Chromium. Prints the
// time to the first drawn map, the layout, frame times while panning and zooming the whole
// map, and the time to select a service. `npm run bench`; RUNS=n repeats the page load.
// Frame times are intervals between animation frames: 17 ms is 60 frames a second.

import { clickElement, feedWideMesh, launchBrowser, startServer, waitForMap } from "./harness.mjs";

const runs = Number(process.env.RUNS ?? 3);
const ms = (v) => `${Math.round(v)} ms`;
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

// Records the interval between animation frames until stopped: a long interval is a frame
// the page could not draw in time.
async function recordFrames(page, action) {
  await page.evaluate(() => {
    const w = window;
    w.__frames = [];
    w.__recording = true;
    let last = performance.now();
    const tick = (t) => {
      w.__frames.push(t - last);
      last = t;
      if (w.__recording) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  await action();
  return page.evaluate(() => {
    window.__recording = false;
    return window.__frames.slice(1);
  });
}

function frameLine(name, frames) {
  return `${name}: ${frames.length} frames, median ${ms(quantile(frames, 0.5))}, p95 ${ms(quantile(frames, 0.95))}, max ${ms(Math.max(...frames))}`;
}

const server = await startServer();
let browser;
try {
  const truth = await feedWideMesh(server);
  browser = await launchBrowser();
  const { page } = browser;
  const loads = [];
  for (let i = 0; i < runs; i++) {
    await page.goto(server.base + "/?theme=light");
    await waitForMap(page, 120_000);
    await page.waitForFunction(() => window.__meshscope.stats().firstFrameAt > 0);
    loads.push(await page.evaluate(() => window.__meshscope.stats()));
  }
  const counts = await page.evaluate(() => ({
    nodes: window.__meshscope.cy.nodes().not(".namespace").length,
    edges: window.__meshscope.cy.edges().length,
  }));

  const box = await page.locator("#map").boundingBox();
  const cx = box.x + box.width / 2;
  const cy = box.y + box.height / 2;
  // The whole map on screen: every element is drawn each frame, the worst case.
  const pan = await recordFrames(page, async () => {
    await page.mouse.move(cx, cy);
    await page.mouse.down();
    for (let i = 1; i <= 40; i++) await page.mouse.move(cx + i * 10, cy + i * 4);
    await page.mouse.up();
    await page.waitForTimeout(300);
  });
  await page.evaluate(() => window.__meshscope.cy.fit(undefined, 30));
  const zoom = await recordFrames(page, async () => {
    await page.mouse.move(cx, cy);
    for (let i = 0; i < 10; i++) {
      await page.mouse.wheel(0, -120);
      await page.waitForTimeout(30);
    }
    for (let i = 0; i < 10; i++) {
      await page.mouse.wheel(0, 120);
      await page.waitForTimeout(30);
    }
    await page.waitForTimeout(300);
  });
  // A change outside a gesture redraws every element in full (no snapshot): one node's
  // health changes, as on a refresh; the time runs to the frame after the one that drew it.
  const redraws = [];
  for (let i = 0; i < 5; i++) {
    redraws.push(
      await page.evaluate(
        () =>
          new Promise((ok) => {
            const { cy } = window.__meshscope;
            requestAnimationFrame(() => {
              const t0 = performance.now();
              cy.nodes().not(".namespace").first().toggleClass("warn");
              requestAnimationFrame(() => requestAnimationFrame(() => ok(performance.now() - t0)));
            });
          }),
      ),
    );
  }

  // Select at the zoom a user reads names at, as a click.
  const target = "ns-00/svc-250";
  await page.evaluate((id) => {
    const { cy } = window.__meshscope;
    cy.zoom(1);
    cy.center(cy.getElementById(id));
  }, target);
  await page.waitForTimeout(300);
  await page.evaluate((id) => {
    const { cy } = window.__meshscope;
    window.__selected = new Promise((ok) => {
      const t0 = performance.now();
      cy.getElementById(id).once("select", () => requestAnimationFrame(() => requestAnimationFrame(() => ok(performance.now() - t0))));
    });
  }, target);
  const clickAt = Date.now();
  await clickElement(page, target);
  const selectMs = await page.evaluate(() => window.__selected);
  await page.waitForFunction(() => document.querySelector("#panel h2")?.textContent === "svc-250", null, { timeout: 30_000 });
  const panelMs = Date.now() - clickAt;

  const last = loads[loads.length - 1];
  const lines = [
    `graph: ${counts.nodes} services, ${counts.edges} edges drawn (API: ${truth.nodes.length} nodes, ${truth.edges.length} edges); layout: ${last.engine}`,
    `page loads: ${runs}; figures are the median`,
    `time to first drawn map: ${ms(quantile(loads.map((l) => l.firstFrameAt), 0.5))} from navigation`,
    `  page and script loaded: ${ms(quantile(loads.map((l) => l.scriptAt), 0.5))}`,
    `  topology request: ${ms(quantile(loads.map((l) => l.fetchMs), 0.5))} (the debug server builds the JSON)`,
    `  elements into the graph: ${ms(quantile(loads.map((l) => l.elementsMs), 0.5))}`,
    `  layout and fit (the first style pass over every element): ${ms(quantile(loads.map((l) => l.layoutMs), 0.5))}`,
    `  first frame drawn: ${ms(quantile(loads.map((l) => l.firstFrameAt - l.laidOutAt), 0.5))}`,
    frameLine("pan (drag, whole map on screen)", pan),
    frameLine("zoom (20 wheel steps)", zoom),
    `full redraw of the whole map after a change: median ${ms(quantile(redraws, 0.5))} of ${redraws.length}`,
    `select a service (click to highlighted frame): ${ms(selectMs)}`,
    `select a service (click to its panel with charts, 5 API requests): ${ms(panelMs)}`,
  ];
  console.log(lines.join("\n"));
} finally {
  if (browser) await browser.close();
  await server.stop();
}
