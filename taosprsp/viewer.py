"""The browser dashboard: its layout document and the static files, served offline from `viewer/`.

The page (`viewer/index.html`) fetches `dashboard.json` next to itself: the WebSocket to read from and
one `<perspective-viewer>` restore config per panel. The layout is derived from the dataset unless
`viewer.layout` names a JSON file with the same shape.
"""

from __future__ import annotations

import json
import mimetypes
import os
import webbrowser
from pathlib import Path
from typing import Any

import tornado.web

from taosprsp.config import Config
from taosprsp.datasets import SUBTABLE_COLUMN, get_dataset
from taosprsp.errors import ConfigError, ExitCode, TaosprspError, cannot_listen

VIEWER_DIR_ENV = "TAOSPRSP_VIEWER_DIR"
REQUIRED_ASSET = Path("node_modules/@perspective-dev/viewer/dist/cdn/perspective-viewer.js")

# /etc/mime.types may map these differently; WebAssembly refuses to compile from any other type.
for _type, _suffix in (("application/wasm", ".wasm"), ("text/javascript", ".js"), ("text/javascript", ".mjs"), ("text/css", ".css")):
    mimetypes.add_type(_type, _suffix)


def viewer_dir() -> Path:
    """The dashboard's files: `$TAOSPRSP_VIEWER_DIR`, else `viewer/` beside the package."""
    return Path(os.environ.get(VIEWER_DIR_ENV) or Path(__file__).resolve().parent.parent / "viewer")


def check_assets(directory: Path) -> None:
    """Fail clearly when the npm assets were never installed."""
    if not (directory / REQUIRED_ASSET).is_file():
        raise TaosprspError(
            f"the dashboard's npm assets are missing in {directory}: run `npm ci --prefix {directory}` "
            f"(or point {VIEWER_DIR_ENV} at a viewer directory that has node_modules)"
        )


def _chart_config(theme: str, plugin: str, **view: Any) -> dict[str, Any]:
    base = {"plugin": plugin, "settings": False, "theme": theme, "group_by": [], "split_by": [], "sort": [], "filter": []}
    return {**base, **view}


def default_panels(config: Config) -> list[dict[str, Any]]:
    """The seeds' grid grouped by the dataset's group tag, a line chart over time, and the latest rows."""
    dataset = get_dataset(config.dataset.name)
    theme = config.viewer.theme
    window, latest = config.perspective_table, config.latest_table
    first = dataset.headline[0]
    timestamp = dataset.timestamp.name
    return [
        {
            "table": window,
            "title": f"Mean {' and '.join(dataset.headline)} by {dataset.group_tag}",
            "config": _chart_config(
                theme, "Datagrid", group_by=[dataset.group_tag], columns=list(dataset.headline),
                aggregates={name: "avg" for name in dataset.headline},
            ),
        },
        {
            "table": window,
            "title": f"{first.capitalize()} over time by {dataset.group_tag} (1 s mean)",
            "config": _chart_config(
                theme, "Y Line", expressions={f"{timestamp}_1s": f"bucket(\"{timestamp}\", '1s')"},
                group_by=[f"{timestamp}_1s"], split_by=[dataset.group_tag], columns=[first],
                aggregates={first: "avg"}, group_rollup_mode="flat",
            ),
        },
        {
            "table": latest,
            "title": f"Latest row per {'meter' if dataset.name == 'meters' else 'subtable'}",
            "colspan": 2,
            "config": _chart_config(
                theme, "Datagrid", columns=[SUBTABLE_COLUMN, *(f.name for f in dataset.fields)],
                sort=[[SUBTABLE_COLUMN, "asc"]],
            ),
        },
    ]


def dashboard_document(config: Config, websocket_url: str | None = None) -> dict[str, Any]:
    """What `dashboard.json` holds: `websocket` (None: same origin), title, columns, panels.

    Panels come from `[[viewer.panels]]` in the config, else from the JSON file `viewer.layout`, else
    from the dataset's defaults.
    """
    if config.viewer.panels:
        document = {"title": config.viewer.title, "columns": 2, "panels": config.viewer.panels}
    elif config.viewer.layout:
        path = Path(config.viewer.layout)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"viewer.layout: {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"viewer.layout: {path} is not valid JSON: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("panels"), list):
            raise ConfigError(f"viewer.layout: {path} must be an object with a list of \"panels\"")
    else:
        document = {"title": config.viewer.title, "columns": 2, "panels": default_panels(config)}
    return {**document, "websocket": websocket_url}


class DashboardJson(tornado.web.RequestHandler):
    def initialize(self, document: dict[str, Any]) -> None:
        self.document = document

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps(self.document))


class NoCacheStatic(tornado.web.StaticFileHandler):
    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")


def dashboard_routes(document: dict[str, Any], directory: Path) -> list[tuple]:
    """Tornado routes for the dashboard; put them after any other route (the static one catches all)."""
    return [
        (r"/dashboard.json", DashboardJson, {"document": document}),
        (r"/(.*)", NoCacheStatic, {"path": str(directory), "default_filename": "index.html"}),
    ]


def serve_viewer(config: Config, websocket_url: str, open_browser: bool, on_ready: Any = None) -> None:
    """Serve the dashboard against the Perspective server at `websocket_url` until interrupted."""
    import tornado.ioloop

    if not websocket_url.startswith(("ws://", "wss://")):
        raise TaosprspError(f"--ws must be a WebSocket URL such as ws://127.0.0.1:8080/websocket, got {websocket_url!r}", ExitCode.USAGE)
    directory = viewer_dir()
    check_assets(directory)
    app = tornado.web.Application(dashboard_routes(dashboard_document(config, websocket_url), directory))
    try:
        server = app.listen(config.viewer.port, address=config.viewer.host)
    except OSError as exc:
        raise cannot_listen(config.viewer.host, config.viewer.port, exc) from exc
    port = next(iter(server._sockets.values())).getsockname()[1]
    url = f"http://{config.viewer.host}:{port}/"
    if on_ready:
        on_ready(url)
    if open_browser:
        webbrowser.open(url)
    try:
        tornado.ioloop.IOLoop.current().start()
    finally:
        server.stop()
