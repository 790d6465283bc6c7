// Browser tests of both sides of the calls: the edge panel's caller and callee side by side
// (against the captured shop mesh's own entry counts), an endpoint's dependencies in the
// service panel, and an edge whose caller retried (a simulated mesh whose retries are known
// from what the simulator sent). Run from browser.mjs after the map checks.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { clickElement, fixtures, runJson, startServer, until, waitForMap } from "./harness.mjs";
import { checkLabels } from "./map-checks.mjs";

/// The open edge panel's side-by-side table as figure → [caller's, callee's].
function sideTable(page) {
  return page.locator("#panel table.sides").evaluate((t) =>
    Object.fromEntries([...t.querySelectorAll("tbody tr")].map((tr) => [tr.dataset.figure, [...tr.querySelectorAll("td")].map((td) => td.textContent)])),
  );
}

/// Opens the panel of edge `id` and waits for its side-by-side table.
async function openEdgePanel(page, id, title) {
  await page.evaluate((id) => window.__meshscope.cy.getElementById(id).emit("tap"), id);
  await page.waitForFunction((title) => document.querySelector("#panel h2")?.textContent === title && document.querySelector("#panel table.sides"), title);
}

export async function sidesChecks({ page, server, test }) {
  const { base, api } = server;

  await test("the edge panel shows caller and callee side by side, as the capture logged them", async () => {
    await page.goto(base + "/");
    await waitForMap(page);
    // What the captured proxies logged, counted from the entries themselves.
    const counts = JSON.parse(readFileSync(join(fixtures, "shop-mesh/expected-counts.json"), "utf8")).edges;
    const captured = (client, server) => counts.find((e) => e.client === client && e.server === server && e.kind === "http");
    const fb = captured("frontend", "backend");
    assert.deepEqual([fb.client_side, fb.client_errors, fb.server_side, fb.server_errors], [300, 50, 300, 50]);
    await openEdgePanel(page, "shop/frontend->shop/backend:http", "shop/frontend → shop/backend");
    let rows = await sideTable(page);
    assert.deepEqual(rows.calls, ["300", "300"]);
    assert.deepEqual(rows.errors, ["50", "50"]);
    assert.deepEqual(rows["error %"], ["17%", "17%"], "50 of 300 on each side");
    for (const p of ["p50", "p95", "p99"]) assert.ok(rows[p].every((v) => /^\d+(\.\d+)?m?s$/.test(v)), `${p}: ${rows[p]}`);
    // Every captured request took one attempt: no retries, and both proxies reported.
    assert.equal(await page.locator("#panel .retries").count(), 0);
    assert.equal(await page.locator("#panel .missing-proxy").count(), 0);

    // payments has no sidecar: only the caller's proxy logged its 30 calls.
    const fp = captured("frontend", "payments");
    assert.deepEqual([fp.client_side, fp.client_errors, fp.server_side], [30, 0, 0]);
    await openEdgePanel(page, "shop/frontend->shop/payments:http", "shop/frontend → shop/payments");
    rows = await sideTable(page);
    assert.deepEqual([rows.calls, rows.errors, rows["error %"]], [["30", "–"], ["0", "–"], ["0%", "–"]]);
    assert.equal(await page.textContent("#panel .missing-proxy"), "callee has no proxy: only the caller's proxy logged these calls");

    // Callers from outside have no proxy: only the ingress logged the 300 requests, 50 failed.
    const ei = captured("(external)", "ingress");
    assert.deepEqual([ei.client_side, ei.server_side, ei.server_errors], [0, 300, 50]);
    await openEdgePanel(page, "external->shop/ingress:http", "external → shop/ingress");
    rows = await sideTable(page);
    assert.deepEqual([rows.calls, rows.errors], [["–", "300"], ["–", "50"]]);
    assert.equal(await page.textContent("#panel .missing-proxy"), "caller has no proxy: only the callee's proxy logged these calls");
    await page.keyboard.press("Escape");
  });

  await test("the edge panel shows the pairing, the mesh's overhead, conflicts and the top response flags", async () => {
    await page.goto(base + "/");
    await waitForMap(page);
    // The real answer for the edge, with figures the test sets in the API's documented shape
    // (a server without pairing or flags leaves them out; the panel must show them when there).
    const edgesRoute = (url) => url.pathname === "/api/v1/edges";
    await page.route(edgesRoute, async (route) => {
      const answer = await (await route.fetch()).json();
      for (const e of answer.edges) {
        e.pairing = { paired: 290, client_only: 10, server_only: 0, overhead_p50_ms: 0.84, overhead_p99_ms: null };
        e.identity_conflicts = 5;
        e.client.response_flags = { URX: 2, UF: 3, UT: 3, DC: 1, UO: 1, NR: 1 };
        e.server.response_flags = { XYZ: 4 };
      }
      await route.fulfill({ json: answer });
    });
    try {
      await openEdgePanel(page, "shop/frontend->shop/backend:http", "shop/frontend → shop/backend");
      const pairing = await page.locator("#panel dl.pairing").evaluate((dl) => [...dl.querySelectorAll("dt")].map((dt) => [dt.textContent, dt.nextElementSibling.textContent]));
      assert.deepEqual(pairing, [
        ["paired", "290"],
        ["caller only", "10"],
        ["callee only", "0"],
        ["mesh overhead p50", "0.84ms"],
        ["mesh overhead p99", "–"],
      ]);
      assert.match(await page.textContent("#panel .identity-conflicts"), /^5 calls whose caller header named another service than its certificate/);
      const flags = (side) =>
        page.locator(`#panel ul.flags[data-side="${side}"] li`).evaluateAll((lis) => lis.map((li) => [li.querySelector("abbr").textContent, li.title]));
      // At most five, largest first, ties by name, each with its meaning.
      assert.deepEqual(await flags("client"), [
        ["UF", "upstream connection failure"],
        ["UT", "upstream request timeout"],
        ["URX", "retry limit exceeded: every attempt allowed failed"],
        ["DC", "the caller closed the connection"],
        ["NR", "no route configured for the request"],
      ]);
      assert.deepEqual(await flags("server"), [["XYZ", "Envoy response flag XYZ"]]);
    } finally {
      await page.unroute(edgesRoute);
    }
    await page.keyboard.press("Escape");
  });

  await test("an endpoint of the service panel shows its dependencies, each callee a link that focuses it", async () => {
    await page.goto(base + "/");
    await waitForMap(page);
    const eps = (await api("/api/v1/services/shop%2Ffrontend/endpoints?window=15m")).endpoints;
    assert.ok(eps.length >= 1);
    const endpoint = eps[0].name;
    const path = `/api/v1/services/shop%2Ffrontend/endpoints/${encodeURIComponent(endpoint)}/dependencies?window=15m`;
    const real = await fetch(base + path);
    const known = real.ok ? (await real.json()).dependencies : [];
    await clickElement(page, "shop/frontend");
    const pick = page.locator("#panel button.pick", { hasText: endpoint }).first();
    await pick.waitFor();
    await pick.click();
    await page.waitForSelector("#panel .endpoint-dependencies");
    assert.equal(await pick.getAttribute("aria-pressed"), "true");
    assert.equal(await page.textContent("#panel .endpoint-dependencies h3"), `Dependencies of ${endpoint}`);
    if (!known.length) {
      // A server that knows none (or has no such route) says so rather than showing an empty table.
      await page.waitForFunction(() => document.querySelector("#panel .endpoint-dependencies p")?.textContent === "no dependencies known");
    } else {
      await page.waitForSelector("#panel table.dependencies");
      const cells = await page.locator("#panel table.dependencies tbody tr td:nth-child(2)").allTextContents();
      assert.deepEqual(cells.sort(), known.map((d) => d.endpoint).sort());
    }

    // An answer in the route's documented shape, given by the test, so that the table and its
    // links are exercised whatever the server holds.
    const answer = {
      service: "shop/frontend",
      endpoint,
      dependencies: [
        { service: "shop/payments", endpoint: "POST /pay", calls: 30, errors: 0, p50_ms: 3.2, p95_ms: 8, p99_ms: 9.5 },
        { service: "shop/backend", endpoint: "GET /fail", calls: 50, errors: 50, p50_ms: 7.4, p95_ms: 11, p99_ms: null },
      ],
    };
    const dependencyRoute = (url) => url.pathname.endsWith("/dependencies");
    await page.route(dependencyRoute, (route) => route.fulfill({ json: answer }));
    try {
      await pick.click();
      await page.waitForSelector("#panel table.dependencies");
      const table = await page.locator("#panel table.dependencies tbody tr").evaluateAll((trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
      // Busiest first; the errors with their share.
      assert.deepEqual(table, [
        ["shop/backend", "GET /fail", "50", "50 (100%)", "7.4ms", "11ms", "–"],
        ["shop/payments", "POST /pay", "30", "0 (0%)", "3.2ms", "8ms", "9.5ms"],
      ]);
      const link = page.locator("#panel table.dependencies a", { hasText: "shop/backend" });
      assert.match(await link.getAttribute("href"), /service=shop%2Fbackend/);
      await link.click();
      await page.waitForFunction(() => window.__meshscope.state().service === "shop/backend");
      await page.waitForFunction(() => document.querySelector("#panel h2")?.textContent === "backend");
      await page.waitForFunction(() => !window.__meshscope.cy.getElementById("shop/db").nonempty());
      assert.match(page.url(), /service=shop%2Fbackend/);
      assert.match(page.url(), /selected=node%3Ashop%2Fbackend/);
      assert.equal(await page.inputValue("#search"), "shop/backend");
    } finally {
      await page.unroute(dependencyRoute);
    }
    await page.keyboard.press("Escape");
  });

  await test("an edge whose caller retried says so on the map, in its panel and to expressions", async () => {
    const mesh = await startServer();
    try {
      // Every third call between two sidecars fails its first attempt (503) and is retried
      // once; the simulator prints what it sent, per edge.
      const sent = await runJson(["simulate", "--target", mesh.grpc, "--services", "5", "--rate", "20", "--duration", "3", "--namespace", "retry", "--retry-every", "3", "--print-expected"]);
      const retried = sent.edges.filter((e) => e.retries > 0).sort((a, b) => b.retries - a.retries);
      assert.ok(retried.length >= 1, "some calls were retried");
      const e = retried[0];
      // The caller logs each request once, the callee each attempt: the failed ones as errors.
      assert.equal(e.calls, e.client_calls + e.retries);
      assert.equal(e.errors, e.client_errors + e.retries);
      assert.ok(e.client_calls < 1000, "the counts are written in full");
      await until("the retried edge in the API", async () => {
        const t = await mesh.api("/api/v1/topology?window=15m");
        const x = t.edges.find((y) => y.source === e.source && y.target === e.target);
        return x && x.retries === e.retries && x.client?.calls === e.client_calls && x.server?.calls === e.calls;
      });
      await page.goto(mesh.base + "/");
      await waitForMap(page);
      const id = `${e.source}->${e.target}:http`;
      const word = e.retries === 1 ? "retry" : "retries";
      const labels = await page.evaluate(() => Object.fromEntries(window.__meshscope.cy.edges().map((x) => [x.id(), x.data("label_short") && x.data("label") === x.data("label_short") ? x.data("label_full") : x.data("label")])));
      assert.equal(labels[id], `${e.client_calls} req · ${e.retries} ${word}`);
      // The map says so: the whole label where it fits, else the retries alone, drawn.
      const drawn = await page.evaluate((id) => {
        const x = window.__meshscope.cy.getElementById(id);
        return { label: x.data("label"), hidden: x.hasClass("label-hidden"), shown: x.style("label") };
      }, id);
      assert.ok([labels[id], `${e.retries} ${word}`].includes(drawn.label), drawn.label);
      assert.equal(drawn.hidden, false);
      assert.equal(drawn.shown, drawn.label);
      // Edges without retries keep their rate.
      for (const other of sent.edges.filter((x) => !x.retries)) {
        assert.match(labels[`${other.source}->${other.target}:${other.protocol}`], /\/min$/, `${other.source} -> ${other.target}`);
      }
      await checkLabels(page, 1);

      await openEdgePanel(page, id, `${e.source} → ${e.target}`);
      const rows = await sideTable(page);
      assert.deepEqual(rows.calls, [String(e.client_calls), String(e.calls)]);
      assert.deepEqual(rows.errors, [String(e.client_errors), String(e.errors)]);
      assert.equal(await page.textContent("#panel .retries"), `${e.retries} ${word} over ${e.client_calls} requests: attempts beyond the first that the caller's proxy made`);
      assert.equal(await page.locator("#panel .missing-proxy").count(), 0);
      await page.keyboard.press("Escape");

      // The callee's panel lists its instance pairs. Over the pairs from the caller, the
      // caller's proxy counted each request once and the callee's each attempt, as sent.
      const pairsPath = `/api/v1/services/${encodeURIComponent(e.target)}/instance-pairs?window=15m`;
      const pairs = await until("the retried edge's instance pairs, settled", async () => {
        const all = (await mesh.api(pairsPath)).pairs;
        const got = all.filter((p) => p.source === e.source && p.target === e.target);
        const sum = (f) => got.reduce((n, p) => n + f(p), 0);
        const settled = sum((p) => p.client?.calls ?? 0) === e.client_calls && sum((p) => p.server?.calls ?? 0) === e.calls && sum((p) => p.retries) === e.retries;
        return settled ? all : null;
      });
      await clickElement(page, e.target);
      await page.waitForSelector("#panel table.instance-pairs");
      assert.equal(await page.textContent("#panel .instance-pairs h3"), `Instance pairs (${pairs.length})`);
      assert.equal(await page.locator("#panel table.instance-pairs tbody tr").count(), pairs.length);
      await page.keyboard.press("Escape");

      await page.selectOption("#rule-mode", "highlight");
      await page.fill("#rule", "retries > 0");
      await page.press("#rule", "Enter");
      const ruled = await page.evaluate(() => window.__meshscope.cy.edges(".ruled").map((x) => x.id()).sort());
      assert.deepEqual(ruled, retried.map((x) => `${x.source}->${x.target}:http`).sort());
      await page.fill("#rule", "");
      await page.press("#rule", "Enter");
    } finally {
      await mesh.stop();
    }
  });
}
