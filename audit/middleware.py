from __future__ import annotations

from pghistory.middleware import HistoryMiddleware

from audit.context import actor_context


class AuditContextMiddleware(HistoryMiddleware):
    """Open an audit context per request carrying the user, username, url and client address."""

    def get_context(self, request) -> dict[str, object]:
        user = getattr(request, "user", None)
        return {
            **actor_context(user),
            "url": request.path,
            "remote_addr": request.META.get("REMOTE_ADDR"),
        }
