from __future__ import annotations

import contextvars

from pghistory.middleware import HistoryMiddleware

from audit.context import actor_context

# The request being served, for code that records a security event without being handed the request
# (model signals fired by the admin, a service called from a view).
current_request: contextvars.ContextVar = contextvars.ContextVar("audit_current_request", default=None)


class AuditContextMiddleware(HistoryMiddleware):
    """Open an audit context per request carrying the user, username, url and client address."""

    def __call__(self, request):
        token = current_request.set(request)
        try:
            return super().__call__(request)
        finally:
            current_request.reset(token)

    def get_context(self, request) -> dict[str, object]:
        user = getattr(request, "user", None)
        return {
            **actor_context(user),
            "url": request.path,
            "remote_addr": request.META.get("REMOTE_ADDR"),
        }
