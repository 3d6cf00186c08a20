"""The HTTP side: listening, the dashboard's static files (served offline from `viewer/`), JSON handlers,
the `viewer` command's own server, and the WebSocket URL of a served page.
"""

from __future__ import annotations

import json
import os
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web

from taosprsp.config import Config
from taosprsp.dashboard import dashboard_document
from taosprsp.errors import ExitCode, TaosprspError, cannot_listen

VIEWER_DIR_ENV = "TAOSPRSP_VIEWER_DIR"
REQUIRED_ASSET = Path("node_modules/@perspective-dev/viewer/dist/cdn/perspective-viewer.js")
WEBSOCKET_PATH = "/websocket"
# Set here rather than guessed: /etc/mime.types may map these differently, and WebAssembly refuses to
# compile from any other type.
_CONTENT_TYPES = {".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css"}


def viewer_dir() -> Path:
    """The dashboard's files: `$TAOSPRSP_VIEWER_DIR`, else `viewer/` beside the package."""
    return Path(os.environ.get(VIEWER_DIR_ENV) or Path(__file__).resolve().parent.parent / "viewer")


def missing_assets(directory: Path) -> str:
    """What to do when the dashboard's npm assets were never installed in `directory`; '' when they were."""
    if (directory / REQUIRED_ASSET).is_file():
        return ""
    return (
        f"the dashboard's npm assets are missing in {directory}: run `npm ci --prefix {directory}` "
        f"(or point {VIEWER_DIR_ENV} at a viewer directory that has node_modules)"
    )


def http_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/"


def ws_url(page_url: str) -> str:
    """The Perspective WebSocket of the server whose pages are at `page_url` (http -> ws, https -> wss)."""
    parts = urlsplit(page_url)
    scheme = {"http": "ws", "https": "wss"}[parts.scheme]
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + WEBSOCKET_PATH, "", ""))


class JsonHandler(tornado.web.RequestHandler):
    """GET answers `document()` as JSON, never cached."""

    def initialize(self, document: Callable[[], Any]) -> None:
        self.document = document

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps(self.document()))


class DashboardFiles(tornado.web.StaticFileHandler):
    """The dashboard's files, revalidated on every load so an upgrade shows at once."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")

    def get_content_type(self) -> str:
        assert self.absolute_path is not None
        return _CONTENT_TYPES.get(Path(self.absolute_path).suffix) or super().get_content_type()


class MissingAssets(tornado.web.RequestHandler):
    """Every page answers 503 with what to install."""

    def initialize(self, message: str) -> None:
        self.message = message

    def get(self, _: str = "") -> None:
        self.set_status(503)
        self.set_header("Content-Type", "text/plain")
        self.write(self.message + "\n")


def dashboard_routes(document: dict[str, Any], directory: Path) -> list[tornado.web.Rule]:
    """Tornado routes for the dashboard, or a 503 saying what to install when its assets are missing.

    Put them after any other route: the last one catches every path.
    """
    problem = missing_assets(directory)
    if problem:
        return [tornado.web.url(r"/(.*)", MissingAssets, {"message": problem})]
    return [
        tornado.web.url(r"/dashboard.json", JsonHandler, {"document": lambda: document}),
        tornado.web.url(r"/(.*)", DashboardFiles, {"path": str(directory), "default_filename": "index.html"}),
    ]


def listen(app: tornado.web.Application, host: str, port: int) -> tuple[tornado.httpserver.HTTPServer, int]:
    """Serve `app` on host:port from the current IOLoop; the server and the port it got (port 0 picks one).

    A port in use (or not allowed) is a user error.
    """
    try:
        sockets = tornado.netutil.bind_sockets(port, address=host)
    except OSError as exc:
        raise cannot_listen(host, port, exc) from exc
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]


def serve_viewer(
    config: Config, websocket_url: str, open_browser: bool, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve the dashboard against the Perspective server at `websocket_url` until interrupted."""
    if not websocket_url.startswith(("ws://", "wss://")):
        raise TaosprspError(
            f"--ws must be a WebSocket URL such as ws://127.0.0.1:8080{WEBSOCKET_PATH}, got {websocket_url!r}",
            ExitCode.USAGE,
        )
    directory = viewer_dir()
    problem = missing_assets(directory)
    if problem:
        raise TaosprspError(problem)
    app = tornado.web.Application(dashboard_routes(dashboard_document(config, websocket_url), directory))
    server, port = listen(app, config.viewer.host, config.viewer.port)
    url = http_url(config.viewer.host, port)
    if on_ready:
        on_ready(url)
    if open_browser:
        webbrowser.open(url)
    try:
        tornado.ioloop.IOLoop.current().start()
    finally:
        server.stop()
