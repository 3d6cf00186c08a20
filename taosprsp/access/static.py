"""The files of `viewer/` the dashboard page loads: everything else there (package-lock.json, tests/,
the rest of node_modules) answers 404 (`taosprsp.web.DashboardFiles` serves only these).

Measured with the page in Chromium (viewer/tests/browser_check.mjs): index.html links the theme and
its own script and style; dashboard.js imports the four Perspective modules, which fetch the two
WebAssembly binaries. Source maps (*.map) are left out: only an open devtools asks for them.
"""

from __future__ import annotations

PAGE = "index.html"
PERSPECTIVE = "node_modules/@perspective-dev"
VIEWER_MODULE = f"{PERSPECTIVE}/viewer/dist/cdn/perspective-viewer.js"
"""The `<perspective-viewer>` element's module: its absence means `npm ci` never ran."""

VIEWER_FILES: frozenset[str] = frozenset(
    {
        PAGE,
        "dashboard.js",
        "dashboard.css",
        f"{PERSPECTIVE}/viewer/dist/css/pro-dark.css",
        VIEWER_MODULE,
        f"{PERSPECTIVE}/viewer/dist/wasm/perspective-viewer.wasm",
        f"{PERSPECTIVE}/viewer-datagrid/dist/cdn/perspective-viewer-datagrid.js",
        f"{PERSPECTIVE}/viewer-d3fc/dist/cdn/perspective-viewer-d3fc.js",
        f"{PERSPECTIVE}/client/dist/cdn/perspective.js",
        f"{PERSPECTIVE}/server/dist/wasm/perspective-server.wasm",
    }
)


def may_serve(url_path: str) -> bool:
    """Whether the URL path (relative to the dashboard's root, decoded, "" for the root) may be served."""
    return url_path == "" or url_path in VIEWER_FILES
