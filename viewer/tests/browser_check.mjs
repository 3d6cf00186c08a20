#!/usr/bin/env node
// Headless-browser check of the taosprsp dashboard (viewer/index.html).
//
// Usage:
//   node tests/browser_check.mjs --url http://127.0.0.1:PORT/ \
//        [--screenshot out.png] [--timeout 60] [--interval 3] \
//        [--table meters] [--no-live] [--width 1600 --height 1000] \
//        [--chromium /usr/bin/chromium] [--history [--history-range "1 h"]]
//
// Prints exactly ONE JSON line on stdout:
//   {"ok": bool, "state": str, "grid_rows": n, "chart_drawn": bool,
//    "rows_first": n1, "rows_second": n2, "updates_seen": n, "table": name,
//    "panels": [{"table", "plugin", "kind", "rows", "view_rows", "drawn"}], "errors": [...], "ignored_errors": [...],
//    "failures": [...], "screenshot": path,
//    "history": {"state", "range", "rows", "view_rows", "screenshot"} (with --history)}
// and exits 0 when everything is good, 1 otherwise (2 on bad usage).
// A full-page screenshot is always written (default screenshots/dashboard.png).
//
// "Good" means: the page reached window.dashboardReady; at least one Datagrid
// panel shows data rows (regular-table tbody tr inside the plugin's shadow
// DOM); every d3fc chart panel has drawn (a series <path> with a non-trivial
// "d" in the plot-area <svg>, or a non-empty <canvas>); the table is live
// (row count grew between two reads `--interval` seconds apart, or, once
// a `limit` table is full, View.on_update fired in between; skip with
// --no-live); and no uncaught page error or unexpected console error. With --history it also opens the
// history panel, picks the range preset `--history-range` and needs the history grid to show data rows
// (a screenshot of it goes beside the main one, as history.png).

import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));

// Console "errors" Perspective 4.3.0 logs during normal operation. They are
// reported under "ignored_errors" but do not fail the check.
const BENIGN_CONSOLE_ERRORS = [
  /plugin-advised rollup mode/i,
  /favicon\.ico/i,
];

function parseArgs(argv) {
  const opts = {
    url: null,
    screenshot: path.join(HERE, "..", "screenshots", "dashboard.png"),
    timeout: 60,
    interval: 3,
    table: null,
    live: true,
    width: 1600,
    height: 1000,
    chromium: process.env.CHROMIUM || "/usr/bin/chromium",
    history: false,
    historyRange: "1 h",
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`);
      return argv[++i];
    };
    switch (a) {
      case "--url": opts.url = next(); break;
      case "--screenshot": opts.screenshot = next(); break;
      case "--timeout": opts.timeout = Number(next()); break;
      case "--interval": opts.interval = Number(next()); break;
      case "--table": opts.table = next(); break;
      case "--no-live": opts.live = false; break;
      case "--width": opts.width = Number(next()); break;
      case "--height": opts.height = Number(next()); break;
      case "--chromium": opts.chromium = next(); break;
      case "--history": opts.history = true; break;
      case "--history-range": opts.historyRange = next(); break;
      case "-h":
      case "--help":
        process.stderr.write(
          "usage: node browser_check.mjs --url URL [--screenshot PNG] [--timeout SEC] " +
            "[--interval SEC] [--table NAME] [--no-live] [--width W --height H] [--chromium PATH]\n",
        );
        process.exit(2);
      default:
        throw new Error(`unknown argument ${a}`);
    }
  }
  if (!opts.url) throw new Error("--url is required");
  if (!(opts.timeout > 0)) throw new Error("--timeout must be > 0 seconds");
  return opts;
}

// Runs inside the page: inspect every <perspective-viewer> of the dashboard.
async function inspectPanels() {
  const viewers = window.dashboardViewers && window.dashboardViewers.length
    ? window.dashboardViewers
    : Array.from(document.querySelectorAll("perspective-viewer"));
  const out = [];
  for (const viewer of viewers) {
    const info = { table: viewer.dataset.table || null, plugin: null, kind: "other", rows: 0, drawn: false };
    try {
      // the rows of the panel's view (a chart's points, a grid's rows, scrolled out of sight or not)
      info.view_rows = await (await viewer.getView()).num_rows();
      const plugin = await viewer.getPlugin();
      info.plugin = plugin ? plugin.name || plugin.tagName.toLowerCase() : null;
      const tag = plugin ? plugin.tagName.toLowerCase() : "";
      const root = plugin && plugin.shadowRoot;
      if (tag === "perspective-viewer-datagrid") {
        info.kind = "grid";
        // regular-table lives in the datagrid's shadow root; its <table> is
        // light DOM of <regular-table>, slotted into its own shadow root.
        const rt = root && root.querySelector("regular-table");
        const trs = rt ? Array.from(rt.querySelectorAll("tbody tr")) : [];
        info.rows = trs.filter((tr) =>
          Array.from(tr.querySelectorAll("td, th")).some((c) => c.textContent.trim() !== ""),
        ).length;
        info.drawn = info.rows > 0;
      } else if (tag.startsWith("perspective-viewer-d3fc")) {
        info.kind = "chart";
        const paths = root
          ? Array.from(root.querySelectorAll(".plot-area svg path, d3fc-svg.plot-area path"))
          : [];
        // series paths: line/area/bar/point; a path with a real "d" and a box.
        const series = paths.filter((p) => {
          const d = p.getAttribute("d") || "";
          const r = p.getBoundingClientRect();
          return d.length > 20 && (r.width > 0 || r.height > 0);
        });
        const canvases = root
          ? Array.from(root.querySelectorAll(".plot-area canvas, d3fc-canvas canvas"))
          : [];
        const canvasOk = canvases.some((c) => c.width > 0 && c.height > 0 && c.getBoundingClientRect().width > 0);
        info.series_paths = series.length;
        info.canvases = canvases.length;
        info.drawn = series.length > 0 || canvasOk;
      }
    } catch (e) {
      info.error = String(e && e.message ? e.message : e);
    }
    out.push(info);
  }
  return out;
}

// Runs inside the page: the history panel's state, range and the data rows its grid shows.
async function inspectHistory() {
  const panel = window.dashboardHistory;
  const info = { state: panel ? panel.state : null, range: panel && panel.range ? panel.range.label : null, rows: 0 };
  if (!panel || !panel.viewer) return info;
  try {
    const plugin = await panel.viewer.getPlugin();
    const table = plugin && plugin.shadowRoot && plugin.shadowRoot.querySelector("regular-table");
    const trs = table ? Array.from(table.querySelectorAll("tbody tr")) : [];
    info.rows = trs.filter((tr) => Array.from(tr.querySelectorAll("td")).some((c) => c.textContent.trim() !== "")).length;
    const view = await panel.viewer.getView();
    info.view_rows = await view.num_rows();
  } catch (e) {
    info.error = String(e && e.message ? e.message : e);
  }
  return info;
}

// Opens the history panel, picks a range preset and waits until its grid shows rows.
async function checkHistory(page, opts, result, remaining, fail) {
  result.history = { state: null, range: null, rows: 0, screenshot: null };
  await page.click("#history-toggle", { timeout: remaining() });
  await page.waitForFunction(
    () => window.dashboardHistory && ["ready", "error"].some((s) => String(window.dashboardHistory.state).startsWith(s)),
    null,
    { timeout: remaining(), polling: 250 },
  );
  const preset = `#history-presets button[data-label="${opts.historyRange}"]`;
  await page.click(preset, { timeout: remaining() });
  const deadline = Date.now() + remaining();
  let info = await page.evaluate(inspectHistory);
  while (!(info.state === "ready" && info.range === opts.historyRange && info.rows > 0) && Date.now() < deadline) {
    if (String(info.state).startsWith("error")) break;
    await page.waitForTimeout(500);
    info = await page.evaluate(inspectHistory);
  }
  Object.assign(result.history, info);
  if (!(info.rows > 0)) fail(`the history panel shows no rows for "${opts.historyRange}" (state: ${info.state})`);
  const shot = path.join(path.dirname(result.screenshot), "history.png");
  fs.mkdirSync(path.dirname(shot), { recursive: true });
  await page.screenshot({ path: shot, fullPage: true, timeout: 15000 });
  result.history.screenshot = shot;
  await page.click("#history-toggle", { timeout: remaining() });
}

// Runs inside the page: size of the named table (through the viewer's client)
async function tableSize(name) {
  const viewers = window.dashboardViewers || [];
  const viewer = viewers.find((v) => v.dataset.table === name) || viewers[0];
  if (!viewer) throw new Error("no perspective-viewer on the page");
  const table = await viewer.getTable();
  return await table.size();
}

// Runs inside the page: count View.on_update notifications for `seconds`.
async function countUpdates([name, seconds]) {
  const viewers = window.dashboardViewers || [];
  const viewer = viewers.find((v) => v.dataset.table === name) || viewers[0];
  const table = await viewer.getTable();
  const view = await table.view({ columns: [] });
  let n = 0;
  await view.on_update(() => { n += 1; });
  await new Promise((r) => setTimeout(r, seconds * 1000));
  await view.delete();
  return n;
}

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`${what} timed out`)), ms); }),
  ]).finally(() => clearTimeout(t));
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`browser_check: ${e.message}\n`);
    process.stdout.write(JSON.stringify({ ok: false, errors: [e.message], failures: ["usage"] }) + "\n");
    process.exit(2);
  }

  const result = {
    ok: false,
    state: null,
    grid_rows: 0,
    chart_drawn: false,
    rows_first: null,
    rows_second: null,
    updates_seen: null,
    table: opts.table,
    panels: [],
    errors: [],
    ignored_errors: [],
    failures: [],
    screenshot: path.resolve(opts.screenshot),
  };
  const deadline = Date.now() + opts.timeout * 1000;
  const remaining = () => Math.max(1000, deadline - Date.now());
  const fail = (msg) => { if (!result.failures.includes(msg)) result.failures.push(msg); };

  let browser, page;
  try {
    browser = await chromium.launch({
      executablePath: opts.chromium,
      headless: true,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
      ],
      timeout: Math.min(30000, remaining()),
    });
    page = await browser.newPage({ viewport: { width: opts.width, height: opts.height } });
    page.on("console", (msg) => {
      if (msg.type() !== "error") return;
      const loc = msg.location();
      let text = msg.text().replace(/%c/g, "").replace(/\s+/g, " ").trim();
      if (/Failed to load resource/.test(text) && loc && loc.url) text += ` (${loc.url})`;
      if (BENIGN_CONSOLE_ERRORS.some((re) => re.test(text))) result.ignored_errors.push(text);
      else result.errors.push(text);
    });
    page.on("pageerror", (err) => result.errors.push(`pageerror: ${err.message}`));
    page.on("requestfailed", (req) => {
      const u = req.url();
      if (/favicon\.ico$/.test(u)) return;
      result.errors.push(`requestfailed: ${u} ${req.failure() ? req.failure().errorText : ""}`);
    });

    await page.goto(opts.url, { waitUntil: "load", timeout: remaining() });

    // 1. dashboardReady (or an error state reported by the page)
    try {
      await page.waitForFunction(
        () => window.dashboardReady === true || String(document.body.dataset.state || "").startsWith("error"),
        null,
        { timeout: remaining(), polling: 250 },
      );
    } catch (e) {
      fail("dashboard never became ready");
    }
    result.state = await page.evaluate(() => document.body.dataset.state || null);
    const ready = await page.evaluate(() => window.dashboardReady === true);
    if (!ready) fail(`dashboard not ready (state: ${result.state})`);

    if (ready) {
      if (!result.table) {
        result.table = await page.evaluate(() => {
          const v = (window.dashboardViewers || [])[0];
          return v ? v.dataset.table : null;
        });
      }

      // 2. grid rows + chart drawn (poll until both hold or time runs out)
      const wantDrawn = async () => {
        const panels = await page.evaluate(inspectPanels);
        result.panels = panels;
        const grids = panels.filter((p) => p.kind === "grid");
        const charts = panels.filter((p) => p.kind === "chart");
        result.grid_rows = grids.length ? Math.max(...grids.map((g) => g.rows)) : 0;
        result.chart_drawn = charts.length > 0 && charts.every((c) => c.drawn);
        const gridsOk = grids.length === 0 || grids.every((g) => g.rows > 0);
        const chartsOk = charts.length === 0 || result.chart_drawn;
        return { gridsOk, chartsOk, grids, charts };
      };
      let st = await wantDrawn();
      while (!(st.gridsOk && st.chartsOk) && Date.now() < deadline) {
        await page.waitForTimeout(500);
        st = await wantDrawn();
      }
      if (st.grids.length === 0) fail("no Datagrid panel on the page");
      else if (!st.gridsOk) fail("a Datagrid panel shows no data rows");
      if (st.charts.length === 0) fail("no d3fc chart panel on the page");
      else if (!st.chartsOk) fail("a chart panel did not draw");

      // 3. live data: row count twice, `interval` seconds apart, plus on_update count
      if (result.table) {
        const interval = Math.max(0.5, opts.interval);
        result.rows_first = await withTimeout(page.evaluate(tableSize, result.table), remaining(), "table.size()");
        result.updates_seen = await withTimeout(
          page.evaluate(countUpdates, [result.table, interval]),
          remaining() + interval * 1000,
          "on_update",
        );
        result.rows_second = await withTimeout(page.evaluate(tableSize, result.table), remaining(), "table.size()");
        if (opts.live && !(result.rows_second > result.rows_first) && !(result.updates_seen > 0)) {
          fail(`table ${result.table} is not updating (rows ${result.rows_first} -> ${result.rows_second}, 0 updates)`);
        }
        if (!(result.rows_second > 0)) fail(`table ${result.table} is empty`);
      }
      if (opts.history) await checkHistory(page, opts, result, remaining, fail);
      // let the viewers repaint with the latest data before the screenshot
      await page.waitForTimeout(500);
    }
  } catch (e) {
    fail(`exception: ${e && e.message ? e.message.split("\n")[0] : e}`);
  } finally {
    if (page) {
      try {
        fs.mkdirSync(path.dirname(result.screenshot), { recursive: true });
        await page.screenshot({ path: result.screenshot, fullPage: true, timeout: 15000 });
      } catch (e) {
        fail(`screenshot failed: ${e.message.split("\n")[0]}`);
        result.screenshot = null;
      }
    } else {
      result.screenshot = null;
    }
    if (browser) await browser.close().catch(() => {});
  }

  if (result.errors.length) fail(`${result.errors.length} console/page error(s)`);
  result.ok = result.failures.length === 0;
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(result.ok ? 0 : 1);
}

main();
