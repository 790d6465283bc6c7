// Browser tests of what an SRE reads on the map: honest charts (the minute still filling,
// quiet minutes), panels that follow the range and the refresh, labels that never cover a
// node or each other, the mTLS mark drawn without fonts, find, focus by plain name, hide and
// highlight by expression, several namespaces, replay, traffic animation, and the keyboard
// path to every panel. Run from browser.mjs against the captured shop mesh.

import assert from "node:assert/strict";
import { clickElement, run, until, waitForMap } from "./harness.mjs";

/// A figure as the panel writes it ("60/min", "1.2k", "17%") as a number, and how far the
/// formatting may be from the true value.
export function readFigure(text) {
  const m = /^([\d.]+)(k|M)?/.exec(text.trim());
  assert.ok(m, `a figure: ${text}`);
  const value = Number(m[1]) * (m[2] === "k" ? 1e3 : m[2] === "M" ? 1e6 : 1);
  return { value, slack: m[2] ? value * 0.06 : value >= 100 ? 0.5 : value >= 10 ? 0.05 : 0.005 };
}

function assertFigure(text, expected, what) {
  const { value, slack } = readFigure(text);
  assert.ok(Math.abs(value - expected) <= slack + 1e-9, `${what}: shown ${text}, expected ${expected}`);
}

/// The panel's figures as name → text.
function panelFigures(page) {
  return page.locator("#panel dl.figures").first().evaluate((dl) => {
    const out = {};
    dl.querySelectorAll("dt").forEach((dt) => (out[dt.textContent] = dt.nextElementSibling.textContent));
    return out;
  });
}

const overlap = (a, b) => a.x1 < b.x2 && b.x1 < a.x2 && a.y1 < b.y2 && b.y1 < a.y2;

/// Asserts that the map's drawn edge labels cover no service, service name, namespace title
/// or other label, that each label left out would have, that services' names never meet, and
/// that at least `atLeast` labels are drawn.
export async function checkLabels(page, atLeast) {
  const report = await page.evaluate(() => {
    const { cy } = window.__meshscope;
    const box = (e) => e.boundingBox({ includeNodes: false, includeEdges: false, includeLabels: true, includeOverlays: false });
    const nodes = cy.nodes().filter((n) => !n.isParent()).map((n) => ({ id: n.id(), b: n.boundingBox({ includeLabels: true, includeOverlays: false }) }));
    const titles = cy.nodes().filter((n) => n.isParent()).map((n) => ({ id: n.id(), b: n.boundingBox({ includeNodes: false, includeEdges: false, includeLabels: true, includeOverlays: false }) }));
    const shown = cy.edges().filter((e) => !e.hasClass("label-hidden") && e.data("label")).map((e) => ({ id: e.id(), b: box(e) }));
    const hidden = cy.edges(".label-hidden").map((e) => {
      e.removeClass("label-hidden");
      const b = box(e);
      e.addClass("label-hidden");
      return { id: e.id(), b };
    });
    return { nodes, titles, shown, hidden, zoom: cy.zoom() };
  });
  assert.ok(report.shown.length >= atLeast, `most labels are drawn: ${report.shown.length}`);
  for (let i = 0; i < report.shown.length; i++) {
    const a = report.shown[i];
    for (const n of [...report.nodes, ...report.titles]) assert.ok(!overlap(a.b, n.b), `label of ${a.id} covers ${n.id}`);
    for (const b of report.shown.slice(i + 1)) assert.ok(!overlap(a.b, b.b), `labels of ${a.id} and ${b.id} overlap`);
  }
  // A label left out would have covered something.
  for (const h of report.hidden) {
    const covers = [...report.nodes, ...report.titles, ...report.shown].some((o) => overlap(h.b, o.b));
    assert.ok(covers, `the label of ${h.id} was left out though it fits`);
  }
  // Services' own names never meet.
  for (let i = 0; i < report.nodes.length; i++) {
    for (const b of report.nodes.slice(i + 1)) assert.ok(!overlap(report.nodes[i].b, b.b), `${report.nodes[i].id} and ${b.id} overlap`);
  }
}

export async function mapChecks({ page, server, test, extraName }) {
  const { base, api } = server;
  const charts = () => page.evaluate(() => window.__meshscope.charts());

  await page.goto(base + "/");
  await waitForMap(page);

  await test("the minute still filling is a separate mark, never the line's last point", async () => {
    await clickElement(page, "shop/frontend");
    await page.waitForSelector("#panel .chart canvas");
    const svc = await api("/api/v1/services/shop%2Ffrontend?window=15m");
    const drawn = await charts();
    const calls = drawn.find((c) => c.title === "Calls (/min)");
    const series = svc.series;
    // A relative window ends with the minute holding the server's clock.
    const open = series.findIndex((p) => p.t <= svc.now && svc.now < p.t + 60_000);
    assert.equal(open, series.length - 1);
    assert.equal(calls.partialIndex, open);
    assert.equal(calls.data[1][open], null, "the line stops before the minute still filling");
    assert.deepEqual(calls.labels, ["calls", "calls, this minute so far"]);
    const [, line, partial] = calls.data;
    assert.equal(partial.filter((v) => v != null).length, 1, "one mark for the partial minute");
    // The mark shows the minute's calls so far; the line every whole minute's.
    for (let i = 0; i < series.length; i++) {
      if (i === open) assert.equal(partial[i], series[i].cpm);
      else assert.equal(line[i], series[i].cpm);
    }
    // Calls, error share, latency and Apdex: each marks the same minute.
    const marked = await page.locator("#panel .chart").evaluateAll((boxes) => boxes.map((b) => Number(b.dataset.partialMinute)));
    assert.deepEqual(marked, [series[open].t, series[open].t, series[open].t, series[open].t]);
  });

  await test("a minute without calls is a gap in the error and latency charts, not 0%", async () => {
    const svc = await api("/api/v1/services/shop%2Ffrontend?window=15m");
    const drawn = await charts();
    const errors = drawn.find((c) => c.title === "Error share");
    const latency = drawn.find((c) => c.title === "Latency");
    const quiet = svc.series.map((p, i) => [p, i]).filter(([p]) => p.calls === 0);
    assert.ok(quiet.length >= 5, "the 15 minutes hold quiet minutes before the capture");
    for (const [p, i] of quiet) {
      assert.equal(p.error_rate, 0, "the API gives 0 for a quiet minute");
      assert.equal(errors.data[1][i], null, `minute ${i} is a gap`);
      assert.equal(latency.data[2][i], null, `minute ${i} has no p95`);
    }
    for (const [i, p] of svc.series.entries()) {
      if (!p.calls) continue;
      const v = errors.data[1][i] ?? errors.data[2][i];
      assert.equal(v, p.error_rate * 100, `minute ${i}`);
    }
  });

  await test("the edge panel follows a change of range and says its range", async () => {
    const edgeUrl = (w) => `/api/v1/edges?source=shop%2Ffrontend&target=shop%2Fbackend&protocol=http&window=${w}`;
    await clickElement(page, "shop/frontend->shop/backend:http");
    await page.waitForFunction(() => document.querySelector("#panel .sub")?.textContent.includes("last 15m"));
    const wide = (await api(edgeUrl("15m"))).edges[0].metrics;
    assertFigure((await panelFigures(page)).rate, wide.cpm, "15m rate");
    await page.selectOption("#window", "5m");
    await page.waitForFunction(() => document.querySelector("#panel .sub")?.textContent.includes("last 5m"));
    const narrow = (await api(edgeUrl("5m"))).edges[0].metrics;
    // The capture's 300 calls fall in the last minutes: the same calls over a third of the time.
    assert.equal(narrow.calls, 300);
    assert.equal(narrow.cpm, 60);
    assertFigure((await panelFigures(page)).rate, 60, "5m rate");
    assert.equal((await panelFigures(page)).calls, "300");
    await page.selectOption("#window", "15m");
    await page.waitForFunction(() => document.querySelector("#panel .sub")?.textContent.includes("last 15m"));
    assertFigure((await panelFigures(page)).rate, 20, "15m rate again");
  });

  await test("an open panel follows the refresh", async () => {
    const id = `lab/${extraName}`;
    await page.evaluate((id) => window.__meshscope.cy.getElementById(id).emit("tap"), id);
    await page.waitForFunction((name) => document.querySelector("#panel h2")?.textContent === name, extraName);
    const before = readFigure((await panelFigures(page)).calls);
    // More traffic arrives; the map's refresh must bring the panel along.
    await run(["simulate", "--target", server.grpc, "--services", "5", "--rate", "10", "--duration", "2", "--namespace", "lab", "--name", extraName]);
    const path = `/api/v1/services/${encodeURIComponent(id)}?window=15m`;
    const grown = await until("the new calls in the API", async () => {
      const s = await api(path);
      return s.metrics.calls > before.value + before.slack && s;
    });
    const answered = page.waitForResponse((r) => r.url().includes(`/api/v1/services/${encodeURIComponent(id)}?`));
    await page.evaluate(() => window.__meshscope.refresh());
    const seen = await (await answered).json();
    assert.ok(seen.metrics.calls >= grown.metrics.calls);
    await until("the panel to show the refreshed answer", async () => {
      const shown = readFigure((await panelFigures(page)).calls);
      return Math.abs(shown.value - seen.metrics.calls) <= shown.slack;
    }, 10_000);
    assert.ok(seen.metrics.calls > before.value + before.slack, `${seen.metrics.calls} > ${before.value}`);
  });

  await test("the map fits beside an open panel", async () => {
    const layout = await page.evaluate(() => {
      const { cy } = window.__meshscope;
      const panel = document.querySelector("#panel").getBoundingClientRect();
      const map = document.querySelector("#map").getBoundingClientRect();
      return { panelLeft: panel.left, mapRight: map.right, width: cy.width(), height: cy.height(), boxes: cy.nodes().not(".namespace").map((n) => n.renderedBoundingBox({ includeLabels: true })) };
    });
    assert.ok(layout.mapRight <= layout.panelLeft + 1, `map ends at ${layout.mapRight}, panel starts at ${layout.panelLeft}`);
    for (const b of layout.boxes) assert.ok(b.x1 >= 0 && b.x2 <= layout.width && b.y1 >= 0 && b.y2 <= layout.height, `node inside the map: ${JSON.stringify(b)}`);
    await page.keyboard.press("Escape");
    await page.waitForSelector("#panel", { state: "hidden" });
    assert.equal(await page.evaluate(() => window.__meshscope.state().selected), "");
  });

  await test("edge labels cover no node, no name and no other label", () => checkLabels(page, 5));

  await test("edge labels show the figure chosen, or none", async () => {
    const label = () => page.evaluate(() => window.__meshscope.cy.getElementById("shop/frontend->shop/backend:http").data("label"));
    await page.selectOption("#labels", "p95");
    await until("p95 labels", async () => /^p95 \d/.test(await label()), 5000);
    await page.selectOption("#labels", "errors");
    // 50 of the capture's 300 calls to the backend failed.
    await until("error labels", async () => (await label()) === "17% err", 5000);
    assert.match(page.url(), /labels=errors/);
    await page.selectOption("#labels", "none");
    await until("no labels", async () => (await label()) === "", 5000);
    await page.selectOption("#labels", "rate");
    await until("rate labels", async () => /^\S+\/min$/.test(await label()), 5000);
  });

  await test("the mTLS mark is drawn, not written with a glyph", async () => {
    const marks = await page.evaluate(() => {
      const { cy } = window.__meshscope;
      const edge = (id) => cy.getElementById(id);
      const text = [...cy.elements().map((e) => e.data("label") ?? ""), document.body.innerText].join("\n");
      return {
        mtls: edge("shop/frontend->shop/backend:http").style("line-outline-width"),
        mtlsColor: edge("shop/frontend->shop/backend:http").style("line-outline-color"),
        plain: edge("shop/frontend->shop/payments:http").style("line-outline-width"),
        pictographs: [...text.matchAll(/\p{Extended_Pictographic}/gu)].map((m) => m[0]).filter((c) => !"©®™↔↕".includes(c)),
        legend: document.querySelectorAll("#legend-mtls svg line").length,
        mtlsVar: getComputedStyle(document.documentElement).getPropertyValue("--mtls").trim(),
      };
    });
    // The capture's frontend and backend sidecars talk mTLS; payments has no sidecar.
    assert.equal(marks.mtls, "2px");
    assert.equal(marks.plain, "0px");
    assert.ok(marks.mtlsVar, "an mTLS colour in the theme");
    assert.deepEqual(marks.pictographs, [], "no emoji anywhere on the page");
    assert.equal(marks.legend, 2, "the legend draws the mark with SVG");
  });

  await test("find highlights and centres services by part of their name", async () => {
    await page.fill("#find", "pay");
    const found = await page.evaluate(() => window.__meshscope.cy.nodes(".found").map((n) => n.id()).sort());
    assert.deepEqual(found, ["lab/payments", "shop/payments"]);
    assert.equal(await page.textContent("#find-result"), "2 found");
    await page.waitForTimeout(400);
    const inView = await page.evaluate(() => {
      const { cy } = window.__meshscope;
      return cy.nodes(".found").map((n) => {
        const p = n.renderedPosition();
        return p.x >= 0 && p.x <= cy.width() && p.y >= 0 && p.y <= cy.height();
      });
    });
    assert.deepEqual(inView, [true, true]);
    await page.fill("#find", "BACK");
    assert.deepEqual(await page.evaluate(() => window.__meshscope.cy.nodes(".found").map((n) => n.id())), ["shop/backend"]);
    await page.fill("#find", "zzz");
    assert.equal(await page.textContent("#find-result"), 'no service on the map matches "zzz"');
    await page.fill("#find", "");
    assert.equal(await page.evaluate(() => window.__meshscope.cy.elements(".found, .dimmed").length), 0);
  });

  await test("focus takes a plain service name and says clearly when nothing matches", async () => {
    await page.fill("#search", "backend");
    await page.press("#search", "Enter");
    await page.waitForFunction(() => window.__meshscope.state().service === "shop/backend");
    await page.waitForFunction(() => !window.__meshscope.cy.getElementById("shop/db").nonempty());
    const ids = await page.evaluate(() => window.__meshscope.cy.nodes().not(".namespace").map((n) => n.id()).sort());
    assert.deepEqual(ids, ["shop/backend", "shop/frontend"]);
    assert.equal(await page.inputValue("#search"), "shop/backend");
    assert.match(page.url(), /service=shop%2Fbackend/);
    await page.fill("#search", "nothing-here");
    await page.press("#search", "Enter");
    await page.waitForSelector("#notice:not([hidden])");
    assert.match(await page.textContent("#notice"), /^no service named "nothing-here" on the map in this window/);
    assert.equal(await page.evaluate(() => window.__meshscope.cy.nodes().length), 0, "the old graph does not stay");
    await page.click("#clear-focus");
    await waitForMap(page);
    assert.ok(await page.isHidden("#notice"));
  });

  await test("hide and highlight by expression", async () => {
    const truth = await api("/api/v1/topology?window=15m");
    await until("the whole map after the focus is cleared", () =>
      page.evaluate((n) => window.__meshscope.cy.nodes().not(".namespace").length === n && !window.__meshscope.stats().pending, truth.nodes.length),
    );
    const visible = () => page.evaluate(() => window.__meshscope.cy.elements(":visible").not(".namespace").map((e) => e.id()).sort());
    const rule = async (mode, text) => {
      await page.selectOption("#rule-mode", mode);
      await page.fill("#rule", text);
      await page.press("#rule", "Enter");
    };
    await rule("hide", "errors > 5%");
    const bad = truth.nodes.filter((n) => n.metrics.calls && n.metrics.error_rate > 0.05).map((n) => n.id);
    // The capture: 50 of the backend's 300 calls failed, and the callers pass them on.
    assert.ok(bad.includes("shop/backend") && !bad.includes("shop/payments"), bad.join());
    await until("the failing services hidden", async () => {
      const now = await visible();
      return bad.every((id) => !now.includes(id));
    }, 5000);
    const shown = await visible();
    assert.ok(shown.includes("shop/payments") && shown.includes("shop/db"));
    assert.match(await page.textContent("#rule-result"), new RegExp(`^${bad.length} services and \\d+ edges hidden$`));

    await rule("hide", "protocol = tcp");
    const tcp = truth.edges.filter((e) => e.protocol === "tcp").map((e) => `${e.source}->${e.target}:tcp`);
    assert.ok(tcp.includes("shop/frontend->shop/db:tcp"));
    await until("the tcp edges hidden", async () => {
      const shown = await visible();
      return tcp.every((id) => !shown.includes(id));
    }, 5000);
    assert.match(await page.textContent("#rule-result"), /^0 services and \d+ edges hidden$/);
    const afterTcp = await visible();
    assert.ok(afterTcp.includes("shop/backend"));

    await rule("highlight", "no mtls");
    const plain = truth.edges.filter((e) => !e.mtls).map((e) => `${e.source}->${e.target}:${e.protocol}`).sort();
    const ruled = () => page.evaluate(() => window.__meshscope.cy.elements(".ruled").map((e) => e.id()).sort());
    // A refresh may redraw the map between the rule and the check: wait for the redraw too.
    await until("the plain edges highlighted", async () => JSON.stringify(await ruled()) === JSON.stringify(plain), 5000);
    assert.deepEqual(await ruled(), plain);
    assert.ok(!plain.includes("shop/frontend->shop/backend:http"));

    await rule("hide", "latency > 5");
    assert.equal(await page.getAttribute("#rule", "aria-invalid"), "true");
    assert.match(await page.textContent("#rule-result"), /unknown field "latency"/);
    await rule("hide", "");
    assert.equal(await page.evaluate(() => window.__meshscope.cy.elements(".hidden-by-rule, .ruled, .dimmed").length), 0);
  });

  await test("several namespaces at once", async () => {
    const requests = [];
    const listen = (r) => r.url().includes("/api/v1/topology") && requests.push(new URL(r.url()));
    page.on("request", listen);
    await page.click("#namespace-picker summary");
    await page.check('#namespace-choices input[value="lab"]');
    await page.check('#namespace-choices input[value="shop"]');
    await until("a request for both", () => requests.some((u) => u.searchParams.get("namespace") === "lab,shop"), 5000);
    page.off("request", listen);
    await waitForMap(page);
    assert.equal(await page.textContent("#namespace-summary"), "lab, shop");
    assert.match(page.url(), /namespace=lab%2Cshop/);
    const both = await api("/api/v1/topology?window=15m&namespace=lab,shop");
    await until("the map of both", async () => {
      const ids = await page.evaluate(() => window.__meshscope.cy.nodes().not(".namespace").map((n) => n.id()).sort());
      return JSON.stringify(ids) === JSON.stringify(both.nodes.map((n) => n.id).sort());
    }, 5000);
    await page.uncheck('#namespace-choices input[value="shop"]');
    await page.waitForFunction(() => window.__meshscope.state().namespace === "lab");
    await page.waitForFunction(() => !window.__meshscope.cy.getElementById("shop/backend").nonempty());
    await page.click("#namespace-picker summary");
  });

  await test("replay moves the map through the minutes of the range", async () => {
    await page.goto(base + "/");
    await waitForMap(page);
    const topo = await api("/api/v1/topology?window=15m");
    await page.click("#replay-toggle");
    await page.waitForSelector("#replay:not([hidden])");
    assert.equal(await page.getAttribute("#replay-minute", "max"), "14");
    // The range of the map on screen, which the slider walks.
    const start = await page.evaluate(() => window.__meshscope.replay().start);
    assert.ok(Math.abs(start - topo.start) <= 60_000);
    // Find a minute with the capture's calls, and one before it without.
    const minuteOf = (i) => start + i * 60_000;
    let busy = -1;
    let busyTopo;
    for (let i = 14; i >= 0 && busy < 0; i--) {
      const t = await api(`/api/v1/topology?start=${minuteOf(i)}&end=${minuteOf(i) + 60_000}`);
      const e = t.edges.find((x) => x.source === "shop/frontend" && x.target === "shop/backend");
      if (e && e.metrics.calls > 0) [busy, busyTopo] = [i, t];
    }
    assert.ok(busy >= 0, "the capture's minute is in the range");
    const shownMinute = () => page.evaluate(() => Number(document.querySelector("#replay").dataset.shownMinute));
    const setMinute = async (i) => {
      await page.locator("#replay-minute").fill(String(i));
      await page.waitForFunction((t) => Number(document.querySelector("#replay").dataset.shownMinute) === t, minuteOf(i));
    };
    await setMinute(busy);
    const edge = busyTopo.edges.find((x) => x.source === "shop/frontend" && x.target === "shop/backend");
    const label = await page.evaluate(() => window.__meshscope.cy.getElementById("shop/frontend->shop/backend:http").data("label"));
    assertFigure(label, edge.metrics.cpm, "the minute's rate on the edge");
    // One minute's calls are its rate: cpm over a one-minute range is the call count.
    assert.equal(edge.metrics.cpm, edge.metrics.calls);
    await setMinute(0);
    const quiet = await page.evaluate(() => window.__meshscope.cy.elements().not(".namespace").filter((e) => !e.hasClass("quiet")).length);
    assert.equal(quiet, 0, "14 minutes ago, before the capture, everything is quiet");
    assert.match(await page.textContent("#replay-time"), /^\d{4}-\d\d-\d\d \d\d:\d\d UTC/);
    // Play steps a minute a second.
    await page.click("#replay-play");
    await until("two minutes played", async () => (await shownMinute()) >= minuteOf(2), 8000);
    await page.click("#replay-play");
    await page.click("#replay-close");
    await page.waitForSelector("#replay", { state: "hidden" });
    await until("the live map again", async () => (await page.evaluate(() => window.__meshscope.cy.elements(".quiet").length)) === 0, 10_000);
  });

  await test("traffic animation is off by default and moves faster on busier edges", async () => {
    assert.equal(await page.isChecked("#animate"), false);
    assert.equal(await page.evaluate(() => window.__meshscope.cy.edges(".animated").length), 0);
    await page.check("#animate");
    const offsets = () =>
      page.evaluate(() => {
        const { cy } = window.__meshscope;
        const o = (id) => Math.abs(parseFloat(cy.getElementById(id).style("line-dash-offset")));
        return { busy: o("shop/frontend->shop/backend:http"), slow: o("shop/frontend->shop/db:tcp") };
      });
    await page.waitForTimeout(300);
    const a = await offsets();
    await page.waitForTimeout(700);
    const b = await offsets();
    // The backend edge carries ten times the db edge's calls (300 against 30).
    assert.ok(b.busy - a.busy > b.slow - a.slow && b.slow > a.slow, `${JSON.stringify(a)} → ${JSON.stringify(b)}`);
    await page.uncheck("#animate");
    assert.equal(await page.evaluate(() => window.__meshscope.cy.edges(".animated").length), 0);
  });

  await test("the keyboard reaches the list, an edge's panel, Esc and sorting", async () => {
    await page.goto(base + "/");
    await waitForMap(page);
    const active = () => page.evaluate(() => document.activeElement?.id || document.activeElement?.textContent || "");
    for (let i = 0; i < 40 && (await active()) !== "list-toggle"; i++) await page.keyboard.press("Tab");
    assert.equal(await active(), "list-toggle", "Tab reaches the list button");
    await page.keyboard.press("Enter");
    await page.waitForSelector("#element-list:not([hidden]) button");
    for (let i = 0; i < 40 && !(await active()).startsWith("shop/frontend → shop/backend (http)"); i++) await page.keyboard.press("Tab");
    assert.match(await active(), /^shop\/frontend → shop\/backend \(http\) · \S+\/min · 17% errors · errors ≥ 5% · mTLS$/);
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => document.querySelector("#panel h2")?.textContent === "shop/frontend → shop/backend");
    await page.keyboard.press("Escape");
    await page.waitForSelector("#panel", { state: "hidden" });
    // Sorting from the keyboard: the service panel's instance table.
    await page.locator('#element-list button[data-element="node:shop/frontend"]').focus();
    await page.keyboard.press("Enter");
    await page.waitForSelector("#panel table.sortable th button");
    const th = page.locator("#panel table.sortable").first().locator("th").first();
    await th.locator("button").focus();
    await page.keyboard.press("Enter");
    assert.equal(await th.getAttribute("aria-sort"), "ascending");
    await page.keyboard.press("Enter");
    assert.equal(await th.getAttribute("aria-sort"), "descending");
    await page.keyboard.press("Escape");
    await page.waitForSelector("#panel", { state: "hidden" });
    await page.keyboard.press("Escape");
    await page.waitForSelector("#element-list", { state: "hidden" });
  });

  await test("the instance level draws a service's instances inside it", async () => {
    const instances = (await api("/api/v1/services/shop%2Ffrontend/instances?window=15m")).instances;
    assert.ok(instances.length >= 1, "the capture's frontend has a sidecar that names its pod");
    await clickElement(page, "shop/frontend");
    await page.waitForSelector("#panel .instances-toggle");
    await page.click("#panel .instances-toggle");
    await until("instances on the map", () => page.evaluate((n) => window.__meshscope.cy.nodes(".instance").length === n, instances.length), 10_000);
    const drawn = await page.evaluate(() =>
      window.__meshscope.cy.nodes(".instance").map((n) => ({ name: n.data("name"), parent: n.parent().id(), label: n.data("label") })),
    );
    assert.deepEqual(drawn.map((d) => d.name).sort(), instances.map((i) => i.name).sort());
    for (const d of drawn) {
      assert.equal(d.parent, "shop/frontend");
      const inst = instances.find((i) => i.name === d.name);
      assertFigure(d.label.split("\n")[1], inst.metrics.cpm, `${d.name}'s rate`);
    }
    assert.match(page.url(), /instances=shop%2Ffrontend/);
    assert.equal(await page.getAttribute("#panel .instances-toggle", "aria-pressed"), "true");
    // They stay through a refresh, and the labels still keep clear of them.
    await page.evaluate(() => window.__meshscope.refresh());
    assert.equal(await page.evaluate(() => window.__meshscope.cy.nodes(".instance").length), instances.length);
    await checkLabels(page, 3);
    await page.click("#panel .instances-toggle");
    await until("instances gone", () => page.evaluate(() => window.__meshscope.cy.nodes(".instance").length === 0), 10_000);
    await page.keyboard.press("Escape");
  });

  await test("health is told by shape and words as well as colour", async () => {
    const n = await page.evaluate(() => {
      const { cy } = window.__meshscope;
      const b = cy.getElementById("shop/backend");
      const p = cy.getElementById("shop/payments");
      return { bad: b.style("shape"), label: b.data("label"), ok: p.style("shape") };
    });
    assert.equal(n.bad, "octagon");
    assert.equal(n.ok, "ellipse");
    assert.match(n.label, /^backend\n\S+\/min · 17% err$/);
  });
}
