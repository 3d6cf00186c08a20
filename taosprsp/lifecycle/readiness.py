"""Where a TDengine that taosprsp starts answers, and waiting until taosAdapter's REST API does."""

from __future__ import annotations

import base64
import json
import time
import urllib.request

from taosprsp import progress
from taosprsp.endpoint import Endpoint, url_host
from taosprsp.errors import StoreUnreachable

# taosd's own port, fixed in both the container and the native config; taosAdapter's comes from the config.
NATIVE_PORT = 6030
PROBE_SECONDS = 0.5

# Loopback requests must not go through an HTTP proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def rest_url(target: Endpoint) -> str:
    """taosAdapter's REST SQL endpoint at `target`."""
    scheme = "https" if target.scheme == "wss" else "http"
    return f"{scheme}://{url_host(target.host)}:{target.port}/rest/sql"


def _ask_version(target: Endpoint, timeout: float) -> tuple[str | None, str]:
    """(the server version, "") when taosAdapter answers `SELECT SERVER_VERSION()`, else (None, why not)."""
    credentials = base64.b64encode(f"{target.user}:{target.password}".encode()).decode()
    request = urllib.request.Request(
        rest_url(target),
        data=b"SELECT SERVER_VERSION()",
        method="POST",
        headers={"Authorization": f"Basic {credentials}", "Content-Type": "text/plain"},
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            body = json.loads(response.read())
    except (OSError, ValueError) as exc:
        return None, str(getattr(exc, "reason", None) or exc)
    if not isinstance(body, dict):
        return None, "an answer that is not TDengine's"
    if body.get("code") == 0 and body.get("data"):
        return str(body["data"][0][0]), ""
    return None, f"code {body.get('code')}: {body.get('desc', '')}"


def wait_ready(target: Endpoint, seconds: float, show_progress: bool = False, hint: str = "") -> str:
    """Poll taosAdapter's REST API until it answers; its server version, or StoreUnreachable after `seconds`."""
    url = rest_url(target)
    deadline = time.monotonic() + seconds
    with progress.spinner(f"waiting for TDengine to answer at {url}", show_progress):
        while True:
            version, why = _ask_version(target, max(0.1, min(2.0, deadline - time.monotonic())))
            if version is not None:
                return version
            if time.monotonic() >= deadline:
                break
            time.sleep(min(PROBE_SECONDS, max(0.0, deadline - time.monotonic())))
    raise StoreUnreachable(f"TDengine did not answer {url} within {seconds:g} s (last: {why}){hint}")
