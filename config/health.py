"""Health endpoints for load balancers and operators (R32, R34).

    GET /health/live/      the process answers; touches no dependency
    GET /health/db/        ``SELECT 1`` on the default database under a short statement timeout
    GET /health/broker/    a connection to the Celery broker (one attempt, socket timeouts bounded)
    GET /health/workers/   a Celery ``ping`` broadcast: at least one worker answers within the timeout
    GET /health/           all of the above

Each answers 200 when healthy and 503 otherwise, with ``{"status": "ok"|"unavailable", "checks": {name:
{"status", "duration_ms"}}}`` and ``Cache-Control: no-store``. The body names checks only: no error text (it
could carry host names or URLs), no worker names, no data. A failure is logged (WARNING, with the request's
correlation id) for operators.

Every probe is bounded by ``HEALTH_CHECK_TIMEOUT`` seconds (default 2; a setting so that tests can shorten
it). The database: ``statement_timeout`` on the request's own (pooled) connection; establishing a *new*
connection is bounded by libpq's ``connect_timeout`` (``?connect_timeout=2`` on DATABASE_URL, or
PGCONNECT_TIMEOUT), not here. The broker and the workers: a fresh kombu connection with a connect timeout and,
for Redis, a socket timeout, one attempt and no retry sleep; and the probe runs in a daemon thread that the
request stops waiting for at the timeout (plus GRACE_SECONDS), so a paused or stopped Redis (celery #4296,
#4556) cannot hold a web worker whatever kombu retries.

Access: these are plain Django views, not DRF views, so no DRF authentication runs (no token lookup, hence
nothing for django-axes to count) and they are outside the OpenAPI schema (the deny-by-default and fuzz tests
walk the schema and DRF views only). They are GET/HEAD only, so CSRF never applies; they read no session or
user. accounts.middleware lets them through for a session that still owes MFA and does not count them as
session activity; the audit middleware's context records nothing because they execute SELECTs only.
tests/config/test_access_matrix.py states their rule (open to every role) and tests/config/test_health.py
proves the rest.

Why not django-health-check (4.8.0 on the index)? Its ``HealthCheckView`` answers 500 rather than 503, renders
HTML unless the client asks for JSON, and returns a flat ``{repr(check): "OK" | error text}`` body (error text
included, no durations). Its Celery ``Ping`` check calls ``app.control.ping()``, which publishes through the
app's shared producer pool (no socket timeout, retried publish), then makes a second ``inspect`` round trip;
and it has no broker check that works with every kombu transport (only a redis-py one), so the filesystem
transport of development and tests would need another path. Adapting it meant replacing the view's status
and rendering and both checks we need, leaving nothing of it in use; this module does the same directly.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection, transaction
from django.http import JsonResponse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_safe

from config.celery import app as celery_app

logger = logging.getLogger("exotrial.health")

DEFAULT_TIMEOUT_SECONDS = 2.0
DB_PROBE_SQL = "SELECT 1"
# Beyond the timeout, for a broker probe to report its own error before it is given up on.
GRACE_SECONDS = 0.5


class CheckFailedError(Exception):
    """A dependency answered, but not as a healthy one does."""


def timeout_seconds() -> float:
    return float(getattr(settings, "HEALTH_CHECK_TIMEOUT", DEFAULT_TIMEOUT_SECONDS))


def check_live(timeout: float) -> None:
    """Reaching this function is the proof."""


def check_db(timeout: float) -> None:
    # is_local: the timeout ends with this transaction and never applies to the connection's next user.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(max(1, int(timeout * 1000)))])
        cursor.execute(DB_PROBE_SQL)
        if cursor.fetchone() != (1,):
            raise CheckFailedError("SELECT 1 did not return 1")


def broker_connection(timeout: float):
    """A fresh connection to the configured broker that gives up after ``timeout`` (connect and each read)."""
    return celery_app.connection_for_write(
        connect_timeout=timeout,
        # Read by the Redis transport (a paused Redis accepts the TCP connection and then never answers);
        # other transports ignore them.
        transport_options={"socket_timeout": timeout, "socket_connect_timeout": timeout},
    )


def within(timeout: float, probe: Callable[[], None]) -> None:
    """Run ``probe`` in a daemon thread and stop waiting for it after ``timeout`` seconds.

    The socket timeouts above bound each broker operation, but kombu retries a failed publish without limit
    (``Producer.publish(retry=True)`` inside the ping); this bounds the probe as a whole, whatever the library does.
    """
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            probe()
        except BaseException as error:  # handed to the waiting request thread
            outcome["error"] = error

    thread = threading.Thread(target=contextvars.copy_context().run, args=(run,), name="health-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]


def check_broker(timeout: float) -> None:
    def probe() -> None:
        with broker_connection(timeout) as conn:
            # One attempt: kombu's default retries sleep 2 s, 4 s, … between attempts.
            conn.ensure_connection(max_retries=0)

    within(timeout + GRACE_SECONDS, probe)


def check_workers(timeout: float) -> None:
    replies: list = []

    def probe() -> None:
        deadline = time.monotonic() + timeout
        with broker_connection(timeout) as conn:
            conn.ensure_connection(max_retries=0)
            # Celery's control.ping() would publish through the app's shared producer pool, whose connection has
            # no socket timeout; this mailbox is bound to the bounded connection above instead.
            mailbox = celery_app.control.mailbox(conn)
            mailbox.producer_pool = None
            # limit=1: return as soon as one worker answers instead of waiting out the timeout.
            replies.extend(mailbox.multi_call("ping", timeout=max(0.1, deadline - time.monotonic()), limit=1))

    within(timeout + GRACE_SECONDS, probe)
    if not any(answer == {"ok": "pong"} for reply in replies for answer in reply.values()):
        raise CheckFailedError("no Celery worker answered the ping")


CHECKS: dict[str, Callable[[float], None]] = {
    "live": check_live,
    "db": check_db,
    "broker": check_broker,
    "workers": check_workers,
}


def run_check(name: str, timeout: float) -> dict[str, object]:
    started = time.perf_counter()
    try:
        CHECKS[name](timeout)
    except Exception as error:  # any failure of a dependency is "unavailable"
        status = "unavailable"
        logger.warning("health check %s failed: %s: %s", name, type(error).__name__, error)
    else:
        status = "ok"
    return {"status": status, "duration_ms": round((time.perf_counter() - started) * 1000, 1)}


def health_response(names: list[str]) -> JsonResponse:
    timeout = timeout_seconds()
    results: dict[str, dict[str, object]] = {}
    for name in names:
        if name == "workers" and results.get("broker", {}).get("status") == "unavailable":
            # Workers are reached through the broker: do not wait a second timeout to learn the same thing.
            results[name] = {"status": "unavailable", "duration_ms": 0.0}
            continue
        results[name] = run_check(name, timeout)
    healthy = all(result["status"] == "ok" for result in results.values())
    response = JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": results}, status=200 if healthy else 503
    )
    add_never_cache_headers(response)  # Cache-Control: max-age=0, no-cache, no-store, must-revalidate, private
    return response


@require_safe
def health(request):
    return health_response(list(CHECKS))


@require_safe
def live(request):
    return health_response(["live"])


@require_safe
def db(request):
    return health_response(["db"])


@require_safe
def broker(request):
    return health_response(["broker"])


@require_safe
def workers(request):
    return health_response(["workers"])
