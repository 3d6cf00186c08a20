"""Who may reach `serve`: the access settings, the exposure rule, tokens, trusted hosts and TLS.

Every handler of the served application checks the same `AccessPolicy`, found in the Tornado
application's settings (`application_settings`), so one object decides for the page, its files,
`/api/stats` and the WebSocket.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import ssl
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import tornado.log
import tornado.web

from taosprsp.config import ServerSettings
from taosprsp.errors import ConfigError

logger = logging.getLogger(__name__)

TOKEN_PARAMETER = "token"
TOKEN_COOKIE = "taosprsp_token"
TOKEN_ENV = "TAOSPRSP_SERVER_TOKEN"
MIN_TOKEN_LENGTH = 16
POLICY_SETTING = "taosprsp_access_policy"
# RFC 3986 unreserved characters: the token travels unchanged in a URL, a cookie and a header
TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9._~-]+")
MAKE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def is_loopback(host: str) -> bool:
    """Whether binding `host` only accepts connections from this machine ("" binds every interface)."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything: treat it as exposed


def check_exposure(bind_host: str, token: str, insecure: bool) -> str | None:
    """Refuse to serve beyond loopback without a token.

    Raises `ConfigError` when `bind_host` is not loopback, no token is set and `insecure` is false;
    returns the warning to print loudly when `insecure` overrides that; None when nothing is exposed
    without a token.
    """
    if token or is_loopback(bind_host):
        return None
    where = bind_host or "every interface"
    if not insecure:
        raise ConfigError(
            f"serving on {where} needs a token: set server.token (or {TOKEN_ENV}, or --token), "
            f"e.g. from `{MAKE_TOKEN}`; --insecure serves without one"
        )
    return f"--insecure: serving on {where} without a token; anyone who can reach this port can read the data"


def check_token(token: str) -> None:
    """Raise `ConfigError` unless `token` is unset ("") or long enough and made of URL-safe characters."""
    if token and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"server.token must be at least {MIN_TOKEN_LENGTH} characters; make one with `{MAKE_TOKEN}`")
    if token and not TOKEN_CHARACTERS.fullmatch(token):
        raise ConfigError(f"server.token may only hold letters, digits and . _ ~ -; make one with `{MAKE_TOKEN}`")


def _origin(value: str) -> str:
    text = value.strip().rstrip("/").lower()
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or parts.fragment:
        raise ConfigError(
            f"server.allowed_origins: {value!r} is not an origin such as https://dashboards.example.com:8443"
        )
    return text


@dataclass(frozen=True)
class AccessPolicy:
    """What `serve` lets a client do.

    `bind_host` is the address served on; `token`, when set, is required from every client;
    `allowed_origins` are web origins (scheme://host[:port]) besides the server's own whose pages may
    open the WebSocket; `clients_can_write` lets clients update, clear, delete and create tables;
    a client with more than `max_client_queue_bytes` of answers waiting to be sent (beyond one answer
    of any size), or more than `max_pending_requests` requests not yet executed, is disconnected.
    """

    bind_host: str
    max_client_queue_bytes: int
    max_pending_requests: int
    token: str = field(default="", repr=False)
    allowed_origins: tuple[str, ...] = ()
    clients_can_write: bool = False

    def __post_init__(self) -> None:
        check_token(self.token)
        if self.max_client_queue_bytes <= 0:
            raise ConfigError("server.max_client_queue_mb must be positive")
        if self.max_pending_requests <= 0:
            raise ConfigError("server.max_pending_requests must be positive")
        object.__setattr__(self, "allowed_origins", tuple(_origin(origin) for origin in self.allowed_origins))

    def token_matches(self, presented: str) -> bool:
        """Constant-time comparison with the configured token."""
        return bool(self.token) and hmac.compare_digest(presented.encode("utf-8"), self.token.encode("utf-8"))

    def trusts_host(self, host_name: str) -> bool:
        """Whether a request naming `host_name` in its Host header may be answered.

        Without a token this is what stops DNS rebinding: a page of evil.example whose name comes to
        resolve to 127.0.0.1 is same-origin with itself, so its Origin check passes, but its Host
        header still says evil.example. IP literals and localhost cannot be rebound.
        """
        if self.token:
            return True
        name = host_name.strip("[]").lower()
        if is_loopback(name) or name == self.bind_host.strip("[]").lower():
            return True
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return name in {urllib.parse.urlsplit(origin).hostname for origin in self.allowed_origins}

    def allows_origin(self, origin: str, host: str) -> bool:
        """Whether a page of `origin` may open the WebSocket of a server reached as `host`."""
        normalized = origin.strip().rstrip("/").lower()
        return urllib.parse.urlsplit(normalized).netloc == host.lower() or normalized in self.allowed_origins


def server_policy(settings: ServerSettings, bind_host: str) -> AccessPolicy:
    """The policy the `[server]` settings describe, for an application bound to `bind_host`."""
    return AccessPolicy(
        bind_host=bind_host,
        max_client_queue_bytes=settings.max_client_queue_mb * 1024 * 1024,
        max_pending_requests=settings.max_pending_requests,
        token=settings.token,
        allowed_origins=tuple(settings.allowed_origins),
        clients_can_write=settings.clients_can_write,
    )


def application_settings(policy: AccessPolicy) -> dict[str, Any]:
    """Settings to pass to `tornado.web.Application` for `AccessControlled` handlers and token-free logs."""
    return {POLICY_SETTING: policy, "log_function": log_request}


def _without_token(uri: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    query = [
        (key, value)
        for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if key != TOKEN_PARAMETER
    ]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access log line, with any `token` query parameter left out."""
    status = handler.get_status()
    log = (
        tornado.log.access_log.info
        if status < 400
        else tornado.log.access_log.warning
        if status < 500
        else tornado.log.access_log.error
    )
    request = handler.request
    log(
        "%d %s %s (%s) %.2fms",
        status,
        request.method,
        _without_token(request.uri or ""),
        request.remote_ip,
        1000.0 * request.request_time(),
    )


class AccessControlled(tornado.web.RequestHandler):
    """A handler answering only trusted hosts and, when a token is configured, clients presenting it.

    The token is accepted as a `token` query parameter, the `taosprsp_token` cookie or an
    `Authorization: Bearer` header. A valid query token is moved into an HttpOnly cookie and taken
    out of the request, so no later log line holds it; handlers with `redirects_token_url` also
    redirect the browser to the address without it.
    """

    redirects_token_url = False

    @property
    def access_policy(self) -> AccessPolicy:
        try:
            return self.settings[POLICY_SETTING]
        except KeyError:
            raise RuntimeError("the Tornado application needs taosprsp.access.application_settings(policy)") from None

    def _take_query_token(self) -> str | None:
        values = self.request.query_arguments.pop(TOKEN_PARAMETER, None)
        if values is None:
            return None
        self.request.arguments.pop(TOKEN_PARAMETER, None)
        self.request.uri = _without_token(self.request.uri or "")
        self.request.query = urllib.parse.urlsplit(self.request.uri).query
        return values[-1].decode("utf-8", "replace")

    def _presented_tokens(self, query_token: str | None) -> list[str]:
        presented = [query_token] if query_token is not None else []
        cookie = self.get_cookie(TOKEN_COOKIE)
        if cookie:
            presented.append(cookie)
        scheme, _, credential = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credential:
            presented.append(credential.strip())
        return presented

    def prepare(self) -> None:
        policy = self.access_policy
        query_token = self._take_query_token()
        if not policy.trusts_host(self.request.host_name):
            logger.warning(
                "refused %s %s from %s: Host %r is not this server's (add its origin to server.allowed_origins)",
                self.request.method,
                self.request.path,
                self.request.remote_ip,
                self.request.host,
            )
            raise tornado.web.HTTPError(403, reason="Host not allowed")
        if not policy.token:
            return
        if not any(policy.token_matches(token) for token in self._presented_tokens(query_token)):
            logger.warning(
                "refused %s %s from %s: no valid token", self.request.method, self.request.path, self.request.remote_ip
            )
            raise tornado.web.HTTPError(401, reason="Token required")
        if query_token is not None and policy.token_matches(query_token):
            self.set_cookie(
                TOKEN_COOKIE, policy.token, httponly=True, samesite="Strict", secure=self.request.protocol == "https"
            )
            if self.redirects_token_url and self.request.method == "GET":
                self.redirect(self.request.uri or "/", status=303)


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext | None:
    """The `ssl_options` for Tornado's `listen` from `server.certfile`/`server.keyfile`; None when both are unset."""
    if not certfile and not keyfile:
        return None
    if not certfile or not keyfile:
        raise ConfigError("server.certfile and server.keyfile go together: set both (PEM files) or neither")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except FileNotFoundError as exc:
        raise ConfigError(f"server.certfile/server.keyfile: {exc.filename or certfile} does not exist") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"server.certfile/server.keyfile: cannot load {certfile} with {keyfile}: {exc}") from None
    return context
