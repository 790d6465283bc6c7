// What the browser tests and the benchmark share: a real meshscope on free ports, its
// subcommands as feeders, and headless Chromium with a fresh profile.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "../..");
export const bin = process.env.MESHSCOPE_BIN ?? join(repo, "target/debug/meshscope");
export const fixtures = process.env.MESHSCOPE_FIXTURES ?? resolve(repo, "tests/fixtures");

export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/// Runs a meshscope subcommand to its end.
export function run(args) {
  return new Promise((ok, fail) => {
    const p = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    p.stderr.on("data", (d) => (err += d));
    p.on("error", fail);
    p.on("exit", (code) => (code === 0 ? ok() : fail(new Error(`meshscope ${args[0]} exited ${code}: ${err}`))));
  });
}

/// Runs a meshscope subcommand to its end and reads what it printed as JSON.
export function runJson(args) {
  return new Promise((ok, fail) => {
    const p = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    p.on("error", fail);
    p.on("exit", (code) => {
      if (code !== 0) return fail(new Error(`meshscope ${args[0]} exited ${code}: ${err}`));
      try {
        ok(JSON.parse(out));
      } catch (e) {
        fail(new Error(`meshscope ${args[0]} printed no JSON: ${e.message}`));
      }
    });
  });
}

export async function until(what, fn, ms = 30_000) {
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

/// `meshscope serve` on free ports with its own data directory, and `extraArgs` (`--demo`).
export async function startServer(extraArgs = []) {
  const grpcPort = await freePort();
  const httpPort = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), "meshscope-ui-"));
  const base = `http://127.0.0.1:${httpPort}`;
  const child = spawn(bin, ["serve", "--grpc-addr", `127.0.0.1:${grpcPort}`, "--http-addr", `127.0.0.1:${httpPort}`, "--data-dir", dataDir, ...extraArgs], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const server = {
    base,
    grpc: `http://127.0.0.1:${grpcPort}`,
    api: async (path) => (await fetch(base + path)).json(),
    /// Stops the server and, once it has written its last files and exited, removes its data.
    async stop() {
      const exited = child.exitCode != null || child.signalCode != null ? Promise.resolve() : new Promise((ok) => child.once("exit", ok));
      child.kill("SIGTERM");
      await Promise.race([exited, new Promise((ok) => setTimeout(ok, 10_000))]);
      try {
        rmSync(dataDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
      } catch (e) {
        console.warn(`could not remove ${dataDir}: ${e.message}`);
      }
    },
  };
  try {
    await until("meshscope to answer", async () => (await fetch(base + "/healthz")).ok);
  } catch (e) {
    await server.stop();
    throw e;
  }
  return server;
}

/// Headless Chromium with a fresh profile each run, so nothing cached from an earlier build
/// is reused.
export async function launchBrowser() {
  const profileDir = mkdtempSync(join(tmpdir(), "meshscope-chromium-"));
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1600, height: 900 },
  });
  // MESHSCOPE_UI_DIST serves the dashboard from a fresh `npm run build` instead of the one
  // embedded in the binary, to try a UI change without building the binary again.
  const dist = process.env.MESHSCOPE_UI_DIST;
  if (dist) {
    const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };
    await context.route(
      (url) => !url.pathname.startsWith("/api/") && url.pathname !== "/healthz",
      (route) => {
        const path = new URL(route.request().url()).pathname;
        const file = join(dist, path === "/" || !existsSync(join(dist, path)) ? "index.html" : path);
        const ext = file.slice(file.lastIndexOf("."));
        return route.fulfill({ body: readFileSync(file), contentType: types[ext] ?? "application/octet-stream" });
      },
    );
  }
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    async close() {
      await context.close();
      rmSync(profileDir, { recursive: true, force: true });
    },
  };
}

/// Resolves once the map has drawn and laid out what it loaded.
export function waitForMap(page, timeout = 30_000) {
  return page.waitForFunction(
    () => {
      const m = window.__meshscope;
      return m && m.cy.nodes().length > 0 && m.stats().layouts > 0 && !m.stats().pending;
    },
    null,
    { timeout },
  );
}

/// Clicks where the element is drawn, as a user would.
export async function clickElement(page, id) {
  const box = await page.locator("#map").boundingBox();
  const p = await page.evaluate((id) => {
    const el = window.__meshscope.cy.getElementById(id);
    return el.isNode() ? el.renderedPosition() : el.renderedMidpoint();
  }, id);
  await page.mouse.click(box.x + p.x, box.y + p.y);
}

/// The shop-mesh captures (both access logs and the proxies' statistics) and a simulated
/// namespace, as the browser tests use them.
export async function feedShopMesh(server, extraName) {
  await run([
    "replay",
    "--target",
    server.grpc,
    "--metrics",
    join(fixtures, "shop-mesh/metrics.bin"),
    join(fixtures, "shop-mesh/als_http.bin"),
    join(fixtures, "shop-mesh/als_tcp.bin"),
  ]);
  await run(["simulate", "--target", server.grpc, "--services", "5", "--rate", "10", "--duration", "2", "--namespace", "lab", "--name", extraName]);
}

/// The large graph: 500 services in 10 namespaces and 5,000 edges, every edge reported by
/// both sides.
export async function feedWideMesh(server) {
  await run(["simulate-wide", "--target", server.grpc, "--services", "500", "--edges", "5000", "--namespaces", "10"]);
  return until(
    "the wide mesh in the API",
    async () => {
      const t = await server.api("/api/v1/topology?window=15m");
      return t.nodes.length === 500 && t.edges.length === 5000 && t;
    },
    60_000,
  );
}
