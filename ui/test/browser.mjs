// Browser tests: a real meshscope (MESHSCOPE_BIN) fed with the captured shop-mesh telemetry
// and a simulated service with a hostile name, driven in headless Chromium.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const bin = process.env.MESHSCOPE_BIN ?? join(repo, "target/debug/meshscope");
const fixtures = process.env.MESHSCOPE_FIXTURES ?? resolve(repo, "../shared/fixtures");
const screenshot = join(repo, "target/ui-map.png");
const XSS = "<img src=x onerror=alert(1)>";

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

function run(args) {
  return new Promise((ok, fail) => {
    const p = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    p.stderr.on("data", (d) => (err += d));
    p.on("error", fail);
    p.on("exit", (code) => (code === 0 ? ok() : fail(new Error(`meshscope ${args[0]} exited ${code}: ${err}`))));
  });
}

async function until(what, fn, ms = 30_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

const grpcPort = await freePort();
const httpPort = await freePort();
const dataDir = mkdtempSync(join(tmpdir(), "meshscope-ui-"));
const base = `http://127.0.0.1:${httpPort}`;
const server = spawn(bin, ["serve", "--grpc-addr", `127.0.0.1:${grpcPort}`, "--http-addr", `127.0.0.1:${httpPort}`, "--data-dir", dataDir], {
  stdio: ["ignore", "ignore", "inherit"],
});
let browser;
let profileDir;
let failed = false;

async function api(path) {
  const res = await fetch(base + path);
  return res.json();
}

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
  await until("meshscope to answer", async () => (await fetch(base + "/healthz")).ok);
  const grpc = `http://127.0.0.1:${grpcPort}`;
  await run(["replay", "--target", grpc, join(fixtures, "shop-mesh/als_http.bin"), join(fixtures, "shop-mesh/als_tcp.bin")]);
  await run(["simulate", "--target", grpc, "--services", "5", "--rate", "10", "--duration", "2", "--namespace", "lab", "--name", XSS]);
  // The collector holds entries briefly while it waits for the other side of each call.
  await until("the captured mesh in the API", async () => {
    const t = await api("/api/v1/topology?window=15m");
    const e = t.edges.find((x) => x.source === "shop/frontend" && x.target === "shop/backend");
    return e && e.metrics.calls === 300 && t.nodes.some((n) => n.name === XSS);
  });
  const truth = await api("/api/v1/topology?window=15m");

  // A fresh profile each run, so nothing cached from an earlier build is reused.
  profileDir = mkdtempSync(join(tmpdir(), "meshscope-chromium-"));
  browser = await chromium.launchPersistentContext(profileDir, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1600, height: 900 },
  });
  const page = browser.pages()[0] ?? (await browser.newPage());
  const dialogs = [];
  page.on("dialog", (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
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
  const waitForGraph = () => page.waitForFunction(() => window.__meshscope && window.__meshscope.cy.nodes().length > 0);

  // Clicks where the element is drawn, as a user would.
  async function clickElement(id) {
    const box = await page.locator("#map").boundingBox();
    const p = await page.evaluate((id) => {
      const el = window.__meshscope.cy.getElementById(id);
      return el.isNode() ? el.renderedPosition() : el.renderedMidpoint();
    }, id);
    await page.mouse.click(box.x + p.x, box.y + p.y);
  }

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
    assert.ok(node("shop/frontend").label.endsWith("/min"));
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
    assert.match(fb.label, /^🔒 \S+ rpm · p95 \S+ · 17%$/, fb.label);
    assert.ok(fb.classes.includes("mtls") && fb.classes.includes("server"));
    const pay = edge("shop/frontend", "shop/payments", "http");
    assert.ok(pay.classes.includes("client-only"), "payments has no sidecar: client side only");
    assert.match(pay.label, /^\S+ rpm · p95 \S+ · 0%$/, pay.label);
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

  await test("clicking an edge opens the edge panel", async () => {
    await clickElement("shop/frontend->shop/backend:http");
    await page.waitForFunction(() => document.querySelector("#panel h2")?.textContent === "shop/frontend → shop/backend");
    await page.waitForSelector("#panel .chart canvas");
    const rows = await page.locator("#panel table tbody tr td:first-child").allTextContents();
    assert.deepEqual(rows.sort(), ["client side", "server side"]);
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

  await test("no script errors and no dialogs", async () => {
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(dialogs, []);
  });
} catch (e) {
  failed = true;
  results.push(`FAIL setup\n     ${e.stack ?? e}`);
} finally {
  if (browser) await browser.close();
  server.kill("SIGTERM");
  rmSync(dataDir, { recursive: true, force: true });
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
}
console.log(results.join("\n"));
console.log(failed ? "browser tests failed" : `browser tests passed; map screenshot: ${screenshot}`);
process.exit(failed ? 1 : 0);
