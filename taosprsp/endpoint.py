"""Where TDengine's taosAdapter listens: the endpoint from a DSN or host/port settings, and a TCP probe."""

from __future__ import annotations

import dataclasses
import socket
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit

from taosprsp.errors import ConfigError

DEFAULT_PORT = 6041
SCHEMES = ("taosws", "ws", "wss")


def url_host(host: str) -> str:
    """`host` as it goes into a URL: an IPv6 address in brackets (`[::1]`), anything else as it is."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@dataclass(frozen=True)
class Endpoint:
    """Where TDengine's taosAdapter listens, and who to log in as."""

    host: str
    port: int
    user: str
    password: str
    scheme: str = "ws"

    def dsn(self, database: str | None = None, masked: bool = False) -> str:
        """The DSN taos-ws-py connects with; `masked` hides the password, for messages."""
        password = "****" if masked else quote(self.password, safe="")
        path = f"/{database}" if database else ""
        return f"{self.scheme}://{quote(self.user, safe='')}:{password}@{url_host(self.host)}:{self.port}{path}"


def parse_dsn(dsn: str) -> Endpoint:
    """`taosws://user:pass@host:6041[/db]` (or ws://, wss://) as an Endpoint."""
    parts = urlsplit(dsn)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ConfigError(f"tdengine.dsn: expected taosws://user:password@host:6041, got {mask_dsn(dsn)!r}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ConfigError(f"tdengine.dsn: bad port in {mask_dsn(dsn)!r}") from None
    return Endpoint(
        host=parts.hostname,
        port=port,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        scheme="wss" if parts.scheme == "wss" else "ws",
    )


def mask_dsn(dsn: str) -> str:
    """The DSN with its password replaced by `****`.

    Everything up to the last `@` is taken as user info, so a password holding `@`, `:` or even an unescaped
    `/` is masked whole (a database name never holds `@`).
    """
    scheme, separator, rest = dsn.partition("://")
    userinfo, at, location = rest.rpartition("@")
    if not separator or not at or ":" not in userinfo:
        return dsn
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:****@{location}"


class EndpointSettings(Protocol):
    """What `endpoint()` reads: config's `[tdengine]` section (config imports this module, not the reverse)."""

    dsn: str
    host: str
    port: int
    user: str
    password: str


def endpoint(settings: EndpointSettings) -> Endpoint:
    """The TDengine endpoint: the DSN when set (its password may come from `tdengine.password`)."""
    if settings.dsn:
        parsed = parse_dsn(settings.dsn)
        if not parsed.password:
            parsed = dataclasses.replace(parsed, password=settings.password)
        return parsed
    return Endpoint(settings.host, settings.port, settings.user, settings.password)


def reachable(target: Endpoint, timeout: float) -> bool:
    """Whether anything accepts TCP connections at the endpoint within `timeout` seconds."""
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout):
            return True
    except OSError:
        return False
