"""Access control for `serve` (issue 13): who may connect, what clients may ask, and how much they may cost.

- `protocol`: reads each Perspective request's kind and refuses table-changing ones (`GuardedSession`);
- `policy`: `AccessPolicy`, the exposure rule (`check_exposure`), tokens, trusted hosts, TLS;
- `websocket`: `GuardedPerspectiveHandler`, the WebSocket with origin/token checks and per-client limits;
- `static`: the viewer files the dashboard loads, the only ones served.
"""

from taosprsp.access.policy import (
    AccessControlled,
    AccessPolicy,
    application_settings,
    check_exposure,
    check_token,
    server_policy,
    tls_context,
)
from taosprsp.access.protocol import GuardedSession
from taosprsp.access.static import VIEWER_FILES, VIEWER_MODULE, may_serve
from taosprsp.access.websocket import GuardedPerspectiveHandler

__all__ = [
    "AccessControlled",
    "AccessPolicy",
    "GuardedPerspectiveHandler",
    "GuardedSession",
    "VIEWER_FILES",
    "VIEWER_MODULE",
    "application_settings",
    "check_exposure",
    "check_token",
    "may_serve",
    "server_policy",
    "tls_context",
]
