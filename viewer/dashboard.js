// taosprsp offline dashboard.
//
// Plain ES module, no bundler. All Perspective code is imported from the
// local ./node_modules (npm @perspective-dev/* pinned to exactly 4.3.0, to
// match perspective-python 4.3.0 on the server side).
//
// Page contract (used by tests/browser_check.mjs and the Python server):
//   GET ./dashboard.json ->
//     {"websocket": "ws://host:port/websocket" | null,   // null = same origin /websocket
//      "title": "...",
//      "columns": 2,                                      // optional grid column count
//      "panels": [{"table": "meters", "title": "...", "config": {<viewer restore config>}}]}
//   window.dashboardReady = true          once every panel's viewer has loaded + restored
//   document.body.dataset.state           'loading' | 'ready' | 'error: <message>'
//   window.dashboardError                 last error message (or null)
//   window.dashboardViewers               array of the <perspective-viewer> elements
//   window.dashboardHistory               {state: 'closed' | 'loading' | 'ready' | 'error: <message>',
//                                          viewer, range: {label, from, to}} of the history panel, shown
//                                          when dashboard.json has "history": {table, websocket | null,
//                                          path, timestamp, presets: [{label, seconds | null}], title, config}
//                                          (websocket null: `path` on the live WebSocket's server)

// The modules are imported dynamically (not with static `import`) so that a
// missing ./node_modules (forgot `npm ci` in viewer/) shows an error banner
// instead of a silently blank page.
const MODULES = {
  viewer: "./node_modules/@perspective-dev/viewer/dist/cdn/perspective-viewer.js",
  datagrid: "./node_modules/@perspective-dev/viewer-datagrid/dist/cdn/perspective-viewer-datagrid.js",
  d3fc: "./node_modules/@perspective-dev/viewer-d3fc/dist/cdn/perspective-viewer-d3fc.js",
  client: "./node_modules/@perspective-dev/client/dist/cdn/perspective.js",
};

async function loadPerspective() {
  try {
    // The viewer must be defined before its plugins register themselves.
    await import(MODULES.viewer);
    await Promise.all([import(MODULES.datagrid), import(MODULES.d3fc)]);
    const mod = await import(MODULES.client);
    await customElements.whenDefined("perspective-viewer");
    return mod.default;
  } catch (e) {
    throw new Error(
      `cannot load the Perspective JS/WASM modules from ./node_modules (was \`npm ci\` run in viewer/? is .wasm served as application/wasm?): ${e && e.message ? e.message : e}`,
    );
  }
}

const CONNECT_TIMEOUT_MS = 15000;
const PANEL_TIMEOUT_MS = 30000;

window.dashboardReady = false;
window.dashboardError = null;
window.dashboardViewers = [];

function setState(state) {
  document.body.dataset.state = state;
  const status = document.getElementById("status");
  if (status) status.textContent = state;
}

function showError(message) {
  const msg = String(message && message.message ? message.message : message);
  window.dashboardError = msg;
  window.dashboardReady = false;
  setState(`error: ${msg}`);
  const banner = document.getElementById("error-banner");
  if (banner) {
    banner.textContent = `Dashboard error: ${msg}`;
    banner.hidden = false;
  }
  console.error(`[dashboard] ${msg}`);
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms / 1000}s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function websocketUrl(configured) {
  if (configured) return configured;
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}/websocket`;
}

async function loadConfig() {
  let resp;
  try {
    resp = await fetch("./dashboard.json", { cache: "no-store" });
  } catch (e) {
    throw new Error(`cannot fetch dashboard.json (${e.message || e})`);
  }
  if (!resp.ok) throw new Error(`dashboard.json: HTTP ${resp.status}`);
  const cfg = await resp.json();
  if (!cfg || !Array.isArray(cfg.panels) || cfg.panels.length === 0) {
    throw new Error("dashboard.json has no panels");
  }
  return cfg;
}

function layoutGrid(grid, n, columns) {
  const cols = Math.max(1, Math.min(n, columns || Math.ceil(Math.sqrt(n))));
  const rows = Math.ceil(n / cols);
  grid.style.gridTemplateColumns = `repeat(${cols}, minmax(0, 1fr))`;
  grid.style.gridTemplateRows = `repeat(${rows}, minmax(0, 1fr))`;
}

function makePanel(grid, panel, index) {
  const section = document.createElement("section");
  section.className = "panel";
  section.dataset.panelIndex = String(index);
  section.dataset.table = panel.table;
  if (panel.colspan) section.style.gridColumn = `span ${panel.colspan}`;
  if (panel.rowspan) section.style.gridRow = `span ${panel.rowspan}`;

  const title = document.createElement("h2");
  title.className = "panel-title";
  title.textContent = panel.title || panel.table;
  section.appendChild(title);

  const viewer = document.createElement("perspective-viewer");
  viewer.dataset.table = panel.table;
  viewer.dataset.panelIndex = String(index);
  section.appendChild(viewer);
  grid.appendChild(section);
  return { section, viewer };
}

async function loadPanel(client, panel, viewer) {
  // Perspective 4.x: load the Client, then restore with `table` set, which
  // renders once (loading a Table and then restoring would render twice).
  // Fail early with a clear message if the table is not hosted.
  await client.open_table(panel.table).catch((e) => {
    throw new Error(`table "${panel.table}" is not available: ${e && e.message ? e.message : e}`);
  });
  await viewer.load(client);
  const config = Object.assign({ theme: "Pro Dark" }, panel.config || {}, { table: panel.table });
  await viewer.restore(config);
}

// The history panel: a virtual table on its own WebSocket (dashboard.json "history".path beside the live
// tables' /websocket), whose views run as SQL in the store over everything it holds. A time range becomes
// filters on the timestamp column; the server picks the bucket width from that range (bucket(ts, 'auto')).
const historyPanel = { state: "closed", viewer: null, range: null };
window.dashboardHistory = historyPanel;

function setHistoryState(state) {
  historyPanel.state = state;
  document.getElementById("history").dataset.state = state;
}

function historyUrl(liveUrl, path) {
  const url = new URL(liveUrl);
  url.pathname = url.pathname.replace(/\/websocket$/, "") + path;
  return url.toString();
}

// A time as a datetime-local input's value (local time, seconds).
function inputValue(ms) {
  const local = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 19);
}

function showRange(range, message) {
  const fmt = (ms) => new Date(ms).toLocaleString();
  const text = range.from === null ? "everything stored" : `${fmt(range.from)} → ${fmt(range.to)}`;
  document.getElementById("history-range").textContent = message || text;
  for (const button of document.querySelectorAll("#history-presets button")) {
    button.setAttribute("aria-pressed", String(button.dataset.label === range.label));
  }
  if (range.from !== null) {
    document.getElementById("history-from").value = inputValue(range.from);
    document.getElementById("history-to").value = inputValue(range.to);
  }
}

async function applyRange(spec, range) {
  // a view replaced while its last draw still reads it fails that read ("View not found"): let it finish
  await historyPanel.viewer.flush();
  const saved = await historyPanel.viewer.save();
  const kept = (saved.filter || []).filter((f) => f[0] !== spec.timestamp);
  const bounds = range.from === null ? [] : [[spec.timestamp, ">=", range.from], [spec.timestamp, "<", range.to]];
  setHistoryState("loading");
  await historyPanel.viewer.restore({ filter: [...kept, ...bounds] });
  await historyPanel.viewer.flush();
  historyPanel.range = range;
  showRange(range);
  setHistoryState("ready");
}

function presetRange(preset) {
  const to = Date.now();
  return preset.seconds === null
    ? { label: preset.label, from: null, to: null }
    : { label: preset.label, from: to - preset.seconds * 1000, to };
}

async function guarded(action) {
  try {
    await action();
  } catch (e) {
    const message = e && e.message ? e.message : String(e);
    setHistoryState(`error: ${message}`);
    document.getElementById("history-range").textContent = `error: ${message}`;
  }
}

async function openHistory(perspective, spec, liveUrl) {
  const section = document.getElementById("history");
  const viewer = document.createElement("perspective-viewer");
  viewer.dataset.table = spec.table;
  section.appendChild(viewer);
  historyPanel.viewer = viewer;
  setHistoryState("loading");
  const url = spec.websocket || historyUrl(liveUrl, spec.path);
  const client = await withTimeout(perspective.websocket(url), CONNECT_TIMEOUT_MS, `websocket ${url}`);
  await client.open_table(spec.table);
  await viewer.load(client);
  const range = presetRange(spec.presets.find((p) => p.seconds === 3600) || spec.presets[0]);
  const bounds = range.from === null ? [] : [[spec.timestamp, ">=", range.from], [spec.timestamp, "<", range.to]];
  const config = Object.assign({ theme: "Pro Dark" }, spec.config, { table: spec.table });
  await viewer.restore({ ...config, filter: [...(config.filter || []), ...bounds] });
  await viewer.flush();
  historyPanel.range = range;
  showRange(range);
  setHistoryState("ready");
}

function setupHistory(perspective, spec, liveUrl) {
  const toggle = document.getElementById("history-toggle");
  const section = document.getElementById("history");
  document.getElementById("history-title").textContent = spec.title || "History";
  const presets = document.getElementById("history-presets");
  for (const preset of spec.presets) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = preset.label;
    button.dataset.label = preset.label;
    button.addEventListener("click", () => guarded(() => applyRange(spec, presetRange(preset))));
    presets.appendChild(button);
  }
  document.getElementById("history-apply").addEventListener("click", () =>
    guarded(async () => {
      const from = new Date(document.getElementById("history-from").value).getTime();
      const to = new Date(document.getElementById("history-to").value).getTime();
      if (!(from < to)) throw new Error("the custom range needs a start before its end");
      await applyRange(spec, { label: "custom", from, to });
    }),
  );
  toggle.hidden = false;
  toggle.addEventListener("click", () => {
    const open = section.hidden;
    section.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open && historyPanel.viewer === null) guarded(() => openHistory(perspective, spec, liveUrl));
  });
}

async function main() {
  setState("loading");
  const [perspective, cfg] = await Promise.all([loadPerspective(), loadConfig()]);
  const title = cfg.title || "taosprsp dashboard";
  document.title = title;
  document.getElementById("title").textContent = title;

  const url = websocketUrl(cfg.websocket);
  let client;
  try {
    client = await withTimeout(perspective.websocket(url), CONNECT_TIMEOUT_MS, `websocket ${url}`);
  } catch (e) {
    throw new Error(`cannot connect to ${url}: ${e && e.message ? e.message : e}`);
  }
  window.dashboardClient = client;
  if (cfg.history) setupHistory(perspective, cfg.history, url);
  // Later failures (server stopped, connection dropped) surface here.
  client.on_error((message) => {
    showError(`connection to ${url} lost (reload the page to reconnect): ${message && message.message ? message.message : message}`);
  });

  const grid = document.getElementById("grid");
  layoutGrid(grid, cfg.panels.length, cfg.columns);
  const panels = cfg.panels.map((p, i) => ({ panel: p, ...makePanel(grid, p, i) }));
  window.dashboardViewers = panels.map((p) => p.viewer);

  const results = await Promise.allSettled(
    panels.map(({ panel, viewer }) =>
      withTimeout(loadPanel(client, panel, viewer), PANEL_TIMEOUT_MS, `panel "${panel.title || panel.table}"`),
    ),
  );
  const failed = [];
  results.forEach((r, i) => {
    if (r.status === "rejected") {
      const { panel, section, viewer } = panels[i];
      const msg = `${panel.title || panel.table}: ${r.reason && r.reason.message ? r.reason.message : r.reason}`;
      failed.push(msg);
      section.classList.add("panel-error");
      viewer.remove();
      const div = document.createElement("div");
      div.className = "panel-error-msg";
      div.textContent = msg;
      section.appendChild(div);
    }
  });
  if (failed.length) throw new Error(`panel(s) failed: ${failed.join("; ")}`);

  if (!window.dashboardError) {
    setState("ready");
    window.dashboardReady = true;
  }
}

// Unexpected asynchronous failures should also be visible.
window.addEventListener("unhandledrejection", (ev) => {
  if (!window.dashboardReady && !window.dashboardError) showError(ev.reason);
});

main().catch(showError);
