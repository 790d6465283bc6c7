// Browser tests: a real meshscope (MESHSCOPE_BIN) fed with the captured shop-mesh telemetry
// (access logs and the proxies' statistics) and a simulated service with a hostile name, then
// a second one fed with 500 services and 5,000 edges, driven in headless Chromium.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { clickElement as clickAt, feedShopMesh, feedWideMesh, launchBrowser, repo, startServer, until, waitForMap } from "./harness.mjs";
import { checkLabels, mapChecks } from "./map-checks.mjs";
import { sidesChecks } from "./sides-checks.mjs";

const screenshot = join(repo, "target/ui-map.png");
const screenshotLarge = join(repo, "target/ui-map-large.png");
const screenshotDemo = join(repo, "target/ui-map-demo.png");
const XSS = "<img src=x onerror=alert(1)>";

let server;
let browser;
let failed = false;

const results = [];
async function test(name, fn) {
  try {
    await fn();
    results.push(`ok   ${name}`);
  } catch (e) {
    failed = true;
    results.push(`FAIL ${name}\n     ${e.stack ?? e}`);
  }
}

try {
  server = await startServer();
  const { base, api } = server;
  await feedShopMesh(server, XSS);
  // The collector holds entries briefly while it waits for the other side of each call.
  await until("the captured mesh in the API", async () => {
    const t = await api("/api/v1/topology?window=15m");
    const e = t.edges.find((x) => x.source === "shop/frontend" && x.target === "shop/backend");
    // The TCP hop to the database can show after the HTTP ones, and the first check
    // below looks for it on the map.
    const db = t.edges.some((x) => x.source === "shop/frontend" && x.target === "shop/db");
    return e && e.metrics.calls === 300 && e.upstream_health && db && t.nodes.some((n) => n.name === XSS) && t.edges.some((x) => x.source === "external");
  });
  const truth = await api("/api/v1/topology?window=15m");

  browser = await launchBrowser();
  const page = browser.page;
  const dialogs = [];
  const pageErrors = [];
  // Every page the tests drive reports its dialogs and script errors to the last test.
  const watch = (p) => {
    p.on("dialog", (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    p.on("pageerror", (e) => pageErrors.push(e.message));
    return p;
  };
  watch(page);
  const topologyRequests = [];
  page.on("request", (r) => {
    if (r.url().includes("/api/v1/topology")) topologyRequests.push(new URL(r.url()));
  });

  const graph = () =>
    page.evaluate(() => {
      const cy = window.__meshscope.cy;
      return {
        nodes: cy.nodes().map((n) => ({ id: n.id(), label: n.data("label"), classes: n.classes(), parent: n.data("parent") ?? null })),
        edges: cy.edges().map((e) => ({ id: e.id(), label: e.data("label"), classes: e.classes() })),
      };
    });
  const waitForGraph = () => waitForMap(page);
  const clickElement = (id) => clickAt(page, id);

  await page.goto(base + "/");
  await waitForGraph();

  await test("the captured mesh is drawn with its labels", async () => {
    const g = await graph();
    const node = (id) => g.nodes.find((n) => n.id === id);
    for (const id of ["external", "shop/ingress", "shop/frontend", "shop/backend", "shop/payments", "shop/db"]) {
      assert.ok(node(id), `node ${id} drawn`);
    }
    assert.ok(node("ns:shop"), "namespace box drawn");
    assert.equal(node("shop/frontend").parent, "ns:shop");
    assert.ok(node("external").classes.includes("virtual"), "external is a virtual node");
    assert.equal(node("external").parent, null);
    const frontend = truth.nodes.find((n) => n.id === "shop/frontend");
    assert.match(node("shop/frontend").label, /^frontend\n/);
    assert.match(node("shop/frontend").label, /\/min( · \S+ err)?$/);
    assert.equal(frontend.metrics.calls, 300);
    // 50 of the 300 requests to the backend fail: a red node.
    assert.ok(node("shop/backend").classes.includes("bad"), node("shop/backend").classes);

    const edge = (s, t, p) => g.edges.find((e) => e.id === `${s}->${t}:${p}`);
    for (const [s, t, p] of [
      ["external", "shop/ingress", "http"],
      ["shop/ingress", "shop/frontend", "http"],
      ["shop/frontend", "shop/backend", "http"],
      ["shop/frontend", "shop/payments", "http"],
      ["shop/frontend", "shop/db", "tcp"],
    ]) {
      assert.ok(edge(s, t, p), `edge ${s} -> ${t} (${p}) drawn`);
    }
    const fb = edge("shop/frontend", "shop/backend", "http");
    assert.match(fb.label, /^\S+\/min$/, fb.label);
    assert.ok(fb.classes.includes("mtls") && fb.classes.includes("server"));
    const pay = edge("shop/frontend", "shop/payments", "http");
    assert.ok(pay.classes.includes("client-only"), "payments has no sidecar: client side only");
    assert.match(pay.label, /^\S+\/min$/, pay.label);
    const db = edge("shop/frontend", "shop/db", "tcp");
    assert.ok(db.classes.includes("tcp"));
    assert.match(db.label, /^TCP \S+\/min$/, db.label);
  });

  await test("layout flows left to right by call depth", async () => {
    const x = await page.evaluate(() => {
      const cy = window.__meshscope.cy;
      return ["external", "shop/ingress", "shop/frontend", "shop/backend"].map((id) => cy.getElementById(id).position("x"));
    });
    for (let i = 1; i < x.length; i++) assert.ok(x[i] > x[i - 1], `layer ${i} right of layer ${i - 1}: ${x}`);
  });

  await test("namespace boxes do not overlap", async () => {
    const boxes = await page.evaluate(() => {
      const m = window.__meshscope;
      return { engine: m.stats().engine, boxes: m.cy.nodes(".namespace").map((n) => [n.id(), n.boundingBox()]) };
    });
    assert.equal(boxes.engine, "elk");
    assert.deepEqual(boxes.boxes.map(([id]) => id).sort(), ["ns:lab", "ns:shop"]);
    const [[, a], [, b]] = boxes.boxes;
    const apart = a.x2 < b.x1 || b.x2 < a.x1 || a.y2 < b.y1 || b.y2 < a.y1;
    assert.ok(apart, `boxes overlap: ${JSON.stringify(boxes.boxes)}`);
  });

  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot });

  await test("a hostile service name is shown as text", async () => {
    const g = await graph();
    const id = `lab/${XSS}`;
    assert.ok(g.nodes.some((n) => n.id === id && n.label.startsWith(XSS)), "drawn with its name");
    await clickElement(id);
    await page.waitForSelector("#panel:not([hidden]) h2");
    assert.equal(await page.textContent("#panel h2"), XSS);
    assert.equal(await page.locator("img").count(), 0, "no <img> element was created");
    await page.fill("#search", id);
    await page.press("#search", "Enter");
    await page.waitForFunction((id) => window.__meshscope.state().service === id, id);
    await page.waitForTimeout(300);
    assert.equal(await page.locator("img").count(), 0);
    assert.deepEqual(dialogs, [], "no dialog fired");
  });

  await page.goto(base + "/");
  await waitForGraph();

  await test("clicking a node opens its panel with charts and tables", async () => {
    await clickElement("shop/frontend");
    await page.waitForSelector("#panel:not([hidden]) .chart canvas");
    assert.equal(await page.textContent("#panel h2"), "frontend");
    assert.ok((await page.locator("#panel .chart canvas").count()) >= 3, "calls, errors and latency charts");
    assert.ok((await page.locator("#panel table tbody tr").count()) >= 2, "instances and endpoints listed");
    assert.match(page.url(), /selected=node%3Ashop%2Ffrontend/);
  });

  await test("the service panel shows the service's proxy and its health", async () => {
    const card = page.locator('#panel .proxy[data-proxy="frontend-v1-pod-1"]');
    await card.waitFor();
    assert.equal(await page.textContent("#panel .proxies h3"), "Proxies (1)");
    assert.equal(await card.locator(".proxy-head strong").textContent(), "frontend-7d9f-abc");
    assert.equal(await card.locator(".badge").textContent(), "up");
    const figures = await card.locator("dl.figures").evaluate((dl) => {
      const out = {};
      dl.querySelectorAll("dt").forEach((dt) => (out[dt.textContent] = dt.nextElementSibling.textContent));
      return out;
    });
    assert.equal(figures.Envoy, "1.39.3");
    assert.equal(figures.memory, "8.28 MiB");
    assert.equal(figures.connections, "10");
    // The capture's frontend sidecar sent 300 requests to the backend, 50 of them answered 500.
    const rows = await card.locator("table.clusters tbody tr").evaluateAll((trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
    assert.deepEqual(rows.find((r) => r[0] === "outbound|18200||backend.shop.svc.cluster.local"), ["outbound|18200||backend.shop.svc.cluster.local", "300", "50", "10", "1/1"]);
  });

  await test("a service without a proxy says so", async () => {
    await clickElement("shop/payments");
    await page.waitForFunction(() => document.querySelector("#panel h2")?.textContent === "payments");
    await page.waitForSelector("#panel .proxies");
    assert.equal(await page.textContent("#panel .proxies h3"), "Proxies (0)");
    assert.match(await page.textContent("#panel .proxies p"), /^No proxy of this service reports its statistics/);
  });

  await test("clicking an edge opens the edge panel", async () => {
    await clickElement("shop/frontend->shop/backend:http");
    await page.waitForFunction(() => document.querySelector("#panel h2")?.textContent === "shop/frontend → shop/backend");
    await page.waitForSelector("#panel .chart canvas");
    const heads = await page.locator("#panel table.sides thead th").allTextContents();
    assert.deepEqual(heads, ["", "caller's proxy", "callee's proxy"]);
  });

  await test("the edge panel and hover show the caller's view of its upstream", async () => {
    const fromTopology = truth.edges.find((x) => x.source === "shop/frontend" && x.target === "shop/backend" && x.protocol === "http").upstream_health;
    const edges = await api("/api/v1/edges?source=shop%2Ffrontend&target=shop%2Fbackend&protocol=http&window=15m");
    const health = edges.edges[0].upstream_health;
    // The capture's frontend sidecar reports one backend member, healthy, and no breaker open.
    assert.deepEqual(
      { healthy: health.healthy, total: health.total, circuit_breaker_open: health.circuit_breaker_open, clusters: health.clusters, reported_by: health.reported_by },
      { healthy: 1, total: 1, circuit_breaker_open: false, clusters: ["outbound|18200||backend.shop.svc.cluster.local"], reported_by: ["frontend-v1-pod-1"] },
    );
    assert.deepEqual(fromTopology, health, "the topology and the edge endpoint agree");
    const expected = `${health.healthy}/${health.total} hosts healthy · circuit breaker ${health.circuit_breaker_open ? "open" : "closed"}`;
    assert.equal(expected, "1/1 hosts healthy · circuit breaker closed");

    await clickElement("shop/frontend->shop/backend:http");
    await page.waitForSelector("#panel .upstream-health");
    assert.equal(await page.textContent("#panel h2"), "shop/frontend → shop/backend");
    assert.equal(await page.textContent("#panel .upstream-health"), `Upstream: ${expected}`);
    assert.equal(await page.locator("#panel .upstream-health.degraded").count(), 0, "a healthy upstream is not flagged");

    const box = await page.locator("#map").boundingBox();
    const mid = await page.evaluate(() => window.__meshscope.cy.getElementById("shop/frontend->shop/backend:http").renderedMidpoint());
    await page.mouse.move(box.x + mid.x, box.y + mid.y);
    await page.waitForSelector("#tooltip:not([hidden])");
    const lines = (await page.textContent("#tooltip")).split("\n");
    assert.equal(lines[0], "shop/frontend → shop/backend (http)");
    assert.equal(lines.at(-1), `upstream: ${expected}`);
    await page.mouse.move(box.x + 2, box.y + 2);

    // Callers from outside the mesh have no proxy that reports to meshscope: no upstream line.
    assert.equal(truth.edges.find((x) => x.source === "external").upstream_health, undefined);
    await clickElement("external->shop/ingress:http");
    await page.waitForFunction(() => document.querySelector("#panel h2")?.textContent === "external → shop/ingress");
    await page.waitForSelector("#panel .chart canvas");
    assert.equal(await page.locator("#panel .upstream-health").count(), 0);
  });

  await test("the time picker changes the URL and the request window", async () => {
    topologyRequests.length = 0;
    await page.selectOption("#window", "1h");
    await until("a 1h request", () => topologyRequests.some((u) => u.searchParams.get("window") === "1h"), 5000);
    assert.match(page.url(), /[?&]window=1h/);
    topologyRequests.length = 0;
    await page.goto(base + "/?window=6h");
    await waitForGraph();
    assert.equal(await page.inputValue("#window"), "6h");
    assert.ok(topologyRequests.some((u) => u.searchParams.get("window") === "6h"));
  });

  await test("a custom range goes to the URL and to the API as start and end", async () => {
    await page.goto(base + "/");
    await waitForGraph();
    topologyRequests.length = 0;
    await page.selectOption("#window", "custom");
    await page.waitForSelector("#custom-range:not([hidden])");
    // The picker takes local wall-clock time, as the user's browser shows it.
    const [from, to] = await page.evaluate(() => {
      const local = (ms) => {
        const d = new Date(ms);
        const two = (n) => String(n).padStart(2, "0");
        return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T${two(d.getHours())}:${two(d.getMinutes())}`;
      };
      return [local(Date.now() - 30 * 60_000), local(Date.now() + 2 * 60_000)];
    });
    await page.fill("#from", from);
    await page.fill("#to", to);
    await page.click("#apply-range");
    const request = await until("a request with start and end", () => topologyRequests.find((u) => u.searchParams.has("start")), 5000);
    const url = new URL(page.url());
    assert.equal(url.searchParams.get("window"), "custom");
    assert.match(url.searchParams.get("from"), /^\d{4}-\d\d-\d\dT\d\d:\d\d:00Z$/);
    assert.equal(request.searchParams.get("start"), url.searchParams.get("from"));
    assert.equal(request.searchParams.get("end"), url.searchParams.get("to"));
    assert.equal(request.searchParams.get("window"), null);
    assert.equal(Date.parse(url.searchParams.get("from")), await page.evaluate((v) => new Date(v).getTime(), from));
    await page.waitForFunction(() => window.__meshscope.cy.getElementById("shop/frontend").nonempty());

    // A shared link opens the same range, and the panels ask for it too.
    topologyRequests.length = 0;
    const serviceRequests = [];
    page.on("request", (r) => {
      if (r.url().includes("/api/v1/services/shop%2Ffrontend?")) serviceRequests.push(new URL(r.url()));
    });
    await page.goto(url.href);
    await waitForGraph();
    assert.equal(await page.inputValue("#window"), "custom");
    assert.equal(await page.inputValue("#from"), from);
    assert.equal(await page.inputValue("#to"), to);
    assert.ok(topologyRequests.some((u) => u.searchParams.get("start") === url.searchParams.get("from")));
    await clickElement("shop/frontend");
    await page.waitForSelector("#panel:not([hidden]) .chart canvas");
    assert.equal(serviceRequests[0]?.searchParams.get("start"), url.searchParams.get("from"));
    assert.match(await page.textContent("#panel .sub"), / to /);
  });

  await test("search focuses a service with a depth", async () => {
    await page.fill("#search", "shop/backend");
    await page.press("#search", "Enter");
    await page.waitForFunction(() => !window.__meshscope.cy.getElementById("shop/db").nonempty());
    const ids = (await graph()).nodes.map((n) => n.id).filter((id) => !id.startsWith("ns:")).sort();
    assert.deepEqual(ids, ["shop/backend", "shop/frontend"]);
    assert.match(page.url(), /service=shop%2Fbackend/);
    await page.selectOption("#depth", "2");
    await page.waitForFunction(() => window.__meshscope.cy.getElementById("shop/ingress").nonempty());
    assert.match(page.url(), /depth=2/);
  });

  await test("auto refresh keeps positions", async () => {
    await page.goto(base + "/");
    await waitForGraph();
    const before = await page.evaluate(() => window.__meshscope.cy.nodes().map((n) => [n.id(), n.position()]));
    await page.evaluate(() => window.__meshscope.refresh());
    const after = await page.evaluate(() => window.__meshscope.cy.nodes().map((n) => [n.id(), n.position()]));
    assert.deepEqual(after, before);
  });

  await test("dark theme and the empty state", async () => {
    await page.click("#theme");
    const themeNow = await page.evaluate(() => document.documentElement.dataset.theme);
    assert.match(page.url(), new RegExp(`theme=${themeNow}`));
    await page.goto(base + "/?namespace=nothing-here");
    await page.waitForSelector("#empty:not([hidden])");
    assert.match(await page.textContent("#empty"), /11800/);
    assert.match(await page.textContent("#empty"), /http_grpc/);
  });

  await test("500 services and 5,000 edges are drawn in full and can be selected", async () => {
    const wide = await startServer();
    try {
      const truthWide = await feedWideMesh(wide);
      await page.goto(wide.base + "/");
      await waitForMap(page, 60_000);
      const drawn = await page.evaluate(() => {
        const { cy, stats } = window.__meshscope;
        const extent = cy.extent();
        const inside = (b) => b.x1 >= extent.x1 && b.x2 <= extent.x2 && b.y1 >= extent.y1 && b.y2 <= extent.y2;
        const services = cy.nodes().not(".namespace");
        return {
          engine: stats().engine,
          nodes: services.map((n) => n.id()).sort(),
          edges: cy.edges().map((e) => e.id()).sort(),
          boxes: cy.nodes(".namespace").map((n) => n.boundingBox()),
          offscreen: cy.elements().filter((e) => !inside(e.boundingBox())).length,
          unplaced: services.filter((n) => !Number.isFinite(n.position("x")) || !Number.isFinite(n.position("y"))).length,
        };
      });
      assert.equal(drawn.engine, "bands");
      assert.deepEqual(drawn.nodes, truthWide.nodes.map((n) => n.id).sort());
      assert.deepEqual(drawn.edges, truthWide.edges.map((e) => `${e.source}->${e.target}:${e.protocol}`).sort());
      assert.equal(drawn.nodes.length, 500);
      assert.equal(drawn.edges.length, 5000);
      assert.equal(drawn.unplaced, 0);
      assert.equal(drawn.offscreen, 0, "the fitted map shows every element");
      assert.equal(drawn.boxes.length, 10);
      for (let i = 0; i < drawn.boxes.length; i++) {
        for (let j = i + 1; j < drawn.boxes.length; j++) {
          const [a, b] = [drawn.boxes[i], drawn.boxes[j]];
          assert.ok(a.x2 < b.x1 || b.x2 < a.x1 || a.y2 < b.y1 || b.y2 < a.y1, `namespace boxes ${i} and ${j} overlap`);
        }
      }
      await page.screenshot({ path: screenshotLarge });
      // Select at the zoom a user reads names at.
      await page.evaluate(() => {
        const { cy } = window.__meshscope;
        cy.zoom({ level: 1, position: cy.getElementById("ns-00/svc-250").position() });
        cy.center(cy.getElementById("ns-00/svc-250"));
      });
      await clickElement("ns-00/svc-250");
      await page.waitForFunction(() => document.querySelector("#panel h2")?.textContent === "svc-250", null, { timeout: 10_000 });
      assert.ok(await page.evaluate(() => window.__meshscope.cy.getElementById("ns-00/svc-250").selected()));
      assert.match(page.url(), /selected=node%3Ans-00%2Fsvc-250/);
    } finally {
      await wide.stop();
    }
  });

  await mapChecks({ page, server, test, extraName: XSS });
  // The later checks run in a browser of their own: after some forty navigations, the
  // 5,000-edge map among them, Chromium's renderer has been seen to crash, in a new tab of
  // the same browser too.
  await browser.close();
  browser = await launchBrowser();
  const later = watch(browser.page);
  await sidesChecks({ page: later, server, test });

  await test("the demo map's edge labels cover no node and no other label", async () => {
    const page = later;
    const demo = await startServer(["--demo"]);
    try {
      await until("the demo mesh in the API", async () => (await demo.api("/api/v1/topology?window=15m")).edges.length >= 10, 60_000);
      await page.setViewportSize({ width: 1440, height: 900 });
      await page.goto(demo.base + "/");
      await waitForMap(page);
      await page.screenshot({ path: screenshotDemo });
      await checkLabels(page, 5);

      // The demo's applications pass the request id on: an endpoint of a service lists the
      // endpoints its proxy called while serving it, as the API gives them.
      const enc = encodeURIComponent;
      const found = await until("an endpoint of the demo with dependencies", async () => {
        for (const node of (await demo.api("/api/v1/topology?window=15m")).nodes) {
          if (node.kind !== "service") continue;
          const eps = (await demo.api(`/api/v1/services/${enc(node.id)}/endpoints?window=15m`)).endpoints ?? [];
          for (const ep of eps) {
            const got = await demo.api(`/api/v1/services/${enc(node.id)}/endpoints/${enc(ep.name)}/dependencies?window=15m`);
            if (got.dependencies?.length) return { service: node.id, endpoint: ep.name, deps: got.dependencies };
          }
        }
        return null;
      }, 60_000);
      await clickAt(page, found.service);
      const literal = found.endpoint.replace(/[.*+?^$()|[\]\\{}]/g, "\\$&");
      const pick = page.locator("#panel button.pick").filter({ hasText: new RegExp("^" + literal + "$") });
      await pick.click();
      await page.waitForSelector("#panel table.dependencies");
      const shown = await page.locator("#panel table.dependencies tbody tr").evaluateAll((trs) => trs.map((tr) => `${tr.children[0].textContent} ${tr.children[1].textContent}`));
      // The panel read the window again since; what it shows is what the API knew then or later.
      assert.ok(shown.length >= 1, "no row");
      for (const d of found.deps) assert.ok(shown.includes(`${d.service} ${d.endpoint}`), `${d.service} ${d.endpoint} not in ${shown}`);
    } finally {
      await page.setViewportSize({ width: 1600, height: 900 });
      await demo.stop();
    }
  });

  await test("no script errors and no dialogs", async () => {
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(dialogs, []);
  });
} catch (e) {
  failed = true;
  results.push(`FAIL setup\n     ${e.stack ?? e}`);
} finally {
  if (browser) await browser.close();
  if (server) await server.stop();
}
console.log(results.join("\n"));
console.log(failed ? "browser tests failed" : `browser tests passed; map screenshot: ${screenshot}`);
process.exit(failed ? 1 : 0);
