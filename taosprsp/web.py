"""The HTTP side: listening, the dashboard's static files (served offline from `viewer/`), JSON handlers,
the `viewer` command's own server, and the WebSocket URL of a served page.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import ssl
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web

from taosprsp.access import AccessControlled, application_settings, check_exposure, may_serve, server_policy
from taosprsp.access.policy import TOKEN_PARAMETER
from taosprsp.access.static import VIEWER_MODULE
from taosprsp.config import VIEWER_DIR_ENV, Config
from taosprsp.dashboard import dashboard_document
from taosprsp.endpoint import url_host
from taosprsp.errors import ExitCode, TaosprspError, cannot_listen
from taosprsp.history import history_document, history_websocket

REQUIRED_ASSET = Path(VIEWER_MODULE)
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


def http_url(host: str, port: int, tls: bool = False) -> str:
    """The page URL of a server listening on host:port (an IPv6 host in brackets), https when `tls`."""
    return f"{'https' if tls else 'http'}://{url_host(host)}:{port}/"


def ws_url(page_url: str) -> str:
    """The Perspective WebSocket of the server whose pages are at `page_url` (http -> ws, https -> wss)."""
    parts = urlsplit(page_url)
    scheme = {"http": "ws", "https": "wss"}[parts.scheme]
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + WEBSOCKET_PATH, "", ""))


class JsonHandler(AccessControlled, tornado.web.RequestHandler):
    """GET answers `document()` as JSON, never cached; to trusted hosts and, with a token set, only with it."""

    def initialize(self, document: Callable[[], Any]) -> None:
        self.document = document

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps(self.document()))


class DashboardFiles(AccessControlled, tornado.web.StaticFileHandler):
    """The files of `viewer/` the page loads (`access.VIEWER_FILES`, anything else 404), revalidated on every
    load so an upgrade shows at once.

    Opening the page as `/?token=...` stores the token in a cookie and reloads it without.
    """

    redirects_token_url = True

    def parse_url_path(self, url_path: str) -> str:
        if not may_serve(url_path):
            raise tornado.web.HTTPError(404)
        return super().parse_url_path(url_path)

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")

    def get_content_type(self) -> str:
        assert self.absolute_path is not None
        return _CONTENT_TYPES.get(Path(self.absolute_path).suffix) or super().get_content_type()


class MissingAssets(AccessControlled, tornado.web.RequestHandler):
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


def listen(
    app: tornado.web.Application, host: str, port: int, ssl_options: ssl.SSLContext | None = None
) -> tuple[tornado.httpserver.HTTPServer, int]:
    """Serve `app` on host:port from the current IOLoop, over TLS with `ssl_options`; the server and the port it
    got (port 0 picks one).

    A port in use (or not allowed) and a host that is not an address of this machine are user errors.
    """
    try:
        sockets = tornado.netutil.bind_sockets(port, address=host)
    except OSError as exc:
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            raise TaosprspError(
                f"cannot listen on {host}: not an address of this machine nor a name that resolves to one "
                f"({exc.strerror or exc}); choose another host, e.g. 127.0.0.1 or 0.0.0.0"
            ) from exc
        raise cannot_listen(host, port, exc) from exc
    server = tornado.httpserver.HTTPServer(app, ssl_options=ssl_options)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]


def page_origin(page_url: str) -> str:
    """The web origin (scheme://host:port) of a page, as `server.allowed_origins` lists it."""
    parts = urlsplit(page_url)
    return f"{parts.scheme}://{parts.netloc}"


def with_token(websocket_url: str, token: str) -> str:
    """`websocket_url` carrying `token` as its query parameter, unless it has one already or `token` is unset.

    A page served by `viewer` may live on another site than `serve`: its browser would not send `serve`'s
    cookie there, so the dashboard connects with the token in the address instead.
    """
    parts = urlsplit(websocket_url)
    query = parse_qs(parts.query)
    if not token or TOKEN_PARAMETER in query:
        return websocket_url
    joined = "&".join(filter(None, [parts.query, urlencode({TOKEN_PARAMETER: token})]))
    return urlunsplit(parts._replace(query=joined))


def serve_viewer(
    config: Config,
    websocket_url: str,
    open_browser: bool,
    on_ready: Callable[[str], None] | None = None,
    insecure: bool = False,
    on_warning: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard against the Perspective server at `websocket_url` until interrupted, its history
    panel against the history table beside it (`taosprsp.history.history_websocket`).

    The page is guarded like `serve`'s own: beyond loopback it needs `server.token` unless `insecure`
    (`on_warning` is then told so), and with a token every request must present it. The page's origin
    must be in the server's `server.allowed_origins`, or the server refuses the page's WebSocket.
    """
    if not websocket_url.startswith(("ws://", "wss://")):
        raise TaosprspError(
            f"--ws must be a WebSocket URL such as ws://127.0.0.1:8080{WEBSOCKET_PATH}, got {websocket_url!r}",
            ExitCode.USAGE,
        )
    directory = viewer_dir()
    problem = missing_assets(directory)
    if problem:
        raise TaosprspError(problem)
    warning = check_exposure(config.viewer.host, config.server.token, insecure)
    policy = server_policy(config.server, config.viewer.host)
    live = with_token(websocket_url, config.server.token)
    dataset = config.declared_dataset
    document = {
        **dashboard_document(config, live, dataset),
        "history": history_document(config, dataset, history_websocket(live)),
    }
    app = tornado.web.Application(dashboard_routes(document, directory), **application_settings(policy))
    if warning and on_warning:
        on_warning(warning)
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
