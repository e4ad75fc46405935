"""Server-side session lifetime (R25): idle and absolute timeouts, kept as timestamps inside the session."""

from __future__ import annotations

import time

from django.conf import settings

STARTED_AT = "accounts:started_at"
LAST_SEEN_AT = "accounts:last_seen_at"
# Writing the session on every request would cost a database write per page; a minute's precision is enough.
LAST_SEEN_RESOLUTION_SECONDS = 60


def session_start(session) -> None:
    now = time.time()
    session[STARTED_AT] = now
    session[LAST_SEEN_AT] = now


def session_expired(session) -> bool:
    """Whether the session has been idle too long or has lived too long since login.

    A session without timestamps (created before this rule existed) counts as expired: it cannot prove its age.
    """
    started, last_seen = session.get(STARTED_AT), session.get(LAST_SEEN_AT)
    if started is None or last_seen is None:
        return True
    now = time.time()
    return now - last_seen > settings.SESSION_IDLE_SECONDS or now - started > settings.SESSION_ABSOLUTE_SECONDS


def session_touch(session) -> None:
    now = time.time()
    if now - session.get(LAST_SEEN_AT, 0) >= LAST_SEEN_RESOLUTION_SECONDS:
        session[LAST_SEEN_AT] = now
