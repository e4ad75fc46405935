"""Health endpoints (config/health.py): anonymous, cheap, bounded in time, JSON, 200 or 503, nothing revealed.

Broker outages are simulated on loopback only: a closed port (Redis down), a socket that accepts connections and
never answers, and a private redis-server under ``CLIENT PAUSE`` (Redis paused, celery #4296). The shared Redis
of the test run is never paused.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from config.celery import app as celery_app

pytestmark = pytest.mark.django_db

HEALTH_URLS = ["/health/", "/health/live/", "/health/db/", "/health/broker/", "/health/workers/"]
WRITES = re.compile(r"^\s*(INSERT|UPDATE|DELETE|TRUNCATE|MERGE|COPY)\b", re.IGNORECASE)


def assert_health_body(response, status: str, checks: set[str]) -> dict:
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    body = response.json()
    assert set(body) == {"status", "checks"}
    assert body["status"] == status
    assert set(body["checks"]) == checks
    for result in body["checks"].values():
        assert set(result) == {"status", "duration_ms"}  # no error text, host names or worker names
        assert result["status"] in {"ok", "unavailable"}
        assert result["duration_ms"] >= 0
    return body


def _forget_broker_connections() -> None:
    # The app keeps a connection pool and a producer pool bound to the broker URL of their first use: without
    # this, every later publish of the test session would go to the URL this test pointed at (and be lost).
    # Not closed: kombu keeps one pool per broker URL, and the app finds the same pool again for its own URL.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def broker_url():
    """Point the Celery app at another broker for the test; the configured one is restored afterwards."""
    saved = celery_app.conf.broker_url

    def point_at(url: str) -> None:
        celery_app.conf.broker_url = url
        _forget_broker_connections()

    yield point_at
    celery_app.conf.broker_url = saved
    _forget_broker_connections()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port():
    """A loopback port that accepts TCP connections (the kernel completes the handshake) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture
def paused_redis(tmp_path, closed_port):
    """A private redis-server on loopback, paused for every client with CLIENT PAUSE (as in celery #4296)."""
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        pytest.skip("redis-server is not installed")
    server = subprocess.Popen(  # noqa: S603
        ["redis-server", "--port", str(closed_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],  # noqa: S607
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(closed_port)]
    try:
        deadline = time.monotonic() + 10
        while subprocess.run([*cli, "PING"], capture_output=True, text=True).stdout.strip() != "PONG":  # noqa: S603
            assert time.monotonic() < deadline, "the private redis-server did not start"
            time.sleep(0.05)
        subprocess.run([*cli, "CLIENT", "PAUSE", "20000", "ALL"], check=True, capture_output=True)  # noqa: S603
        yield f"redis://127.0.0.1:{closed_port}/0"
    finally:
        server.kill()
        server.wait()


def test_liveness_answers_an_anonymous_caller(client):
    response = client.get("/health/live/")
    assert response.status_code == 200
    assert_health_body(response, "ok", {"live"})
    assert response["X-Request-ID"]  # the correlation id of the probe, for the logs
    assert not response.cookies  # no session, no CSRF cookie


@pytest.mark.req("R34")
def test_database_health_answers_an_anonymous_caller(client):
    response = client.get("/health/db/")
    assert response.status_code == 200
    body = assert_health_body(response, "ok", {"db"})
    assert body["checks"]["db"]["status"] == "ok"


@pytest.mark.req("R34")
def test_a_database_statement_slower_than_the_timeout_is_cancelled(client, settings, monkeypatch):
    # the probe query stands in for a database that accepts connections but does not answer in time
    monkeypatch.setattr("config.health.DB_PROBE_SQL", "SELECT 1 FROM pg_sleep(10)")
    settings.HEALTH_CHECK_TIMEOUT = 0.5
    started = time.monotonic()
    response = client.get("/health/db/")
    assert time.monotonic() - started < 3
    assert response.status_code == 503
    assert_health_body(response, "unavailable", {"db"})
    # the test's own transaction (and so the connection) is still usable: the timeout ended with the probe
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_sleep(0.6)")
        assert cursor.fetchone() == (1,)


@pytest.mark.req("R32")
def test_broker_health_answers_when_the_broker_is_up(client):
    response = client.get("/health/broker/")
    assert response.status_code == 200
    assert_health_body(response, "ok", {"broker"})


@pytest.mark.req("R32")
@pytest.mark.parametrize("url", ["/health/broker/", "/health/workers/", "/health/"])
def test_a_closed_broker_port_gives_503_within_3_seconds(client, broker_url, closed_port, url):
    broker_url(f"redis://127.0.0.1:{closed_port}/0")
    started = time.monotonic()
    response = client.get(url)
    assert time.monotonic() - started < 3
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    if url == "/health/":
        body = assert_health_body(response, "unavailable", {"live", "db", "broker", "workers"})
        assert body["checks"]["live"]["status"] == body["checks"]["db"]["status"] == "ok"
        assert body["checks"]["broker"]["status"] == body["checks"]["workers"]["status"] == "unavailable"


@pytest.mark.req("R32")
def test_a_broker_that_never_answers_gives_503_within_3_seconds(client, broker_url, silent_port):
    broker_url(f"redis://127.0.0.1:{silent_port}/0")
    started = time.monotonic()
    response = client.get("/health/broker/")
    assert time.monotonic() - started < 3
    assert response.status_code == 503


@pytest.mark.req("R32")
@pytest.mark.timeout(60)
def test_a_paused_redis_gives_503_within_3_seconds(client, broker_url, paused_redis):
    broker_url(paused_redis)
    for url in ("/health/broker/", "/health/workers/"):
        started = time.monotonic()
        response = client.get(url)
        assert time.monotonic() - started < 3, url
        assert response.status_code == 503, url


def test_workers_health_is_503_when_no_worker_answers(client, broker_url, settings):
    broker_url("memory://")  # a broker of this process alone: no worker anywhere can answer
    settings.HEALTH_CHECK_TIMEOUT = 0.5
    started = time.monotonic()
    response = client.get("/health/workers/")
    assert time.monotonic() - started < 2
    assert response.status_code == 503
    assert_health_body(response, "unavailable", {"workers"})


@pytest.mark.req("R32")
@pytest.mark.celery_worker
@pytest.mark.timeout(180)
def test_workers_health_is_200_with_a_running_worker(client, celery_worker_process):
    deadline = time.monotonic() + 90
    response = client.get("/health/workers/")
    while response.status_code != 200 and time.monotonic() < deadline:  # the worker is still starting
        assert celery_worker_process.poll() is None, "the worker exited"
        response = client.get("/health/workers/")
    assert response.status_code == 200
    assert_health_body(response, "ok", {"workers"})
    started = time.monotonic()
    response = client.get("/health/")
    assert time.monotonic() - started < 2  # the ping returns at the first answer, not at the timeout
    assert response.status_code == 200
    assert_health_body(response, "ok", {"live", "db", "broker", "workers"})


def test_health_needs_no_mfa_and_is_not_session_activity(client, django_user_model):
    from accounts.services.sessions import LAST_SEEN_AT

    staff = django_user_model.objects.create_user("ops-staff", password="not-used-0", is_staff=True)
    client.force_login(staff)  # staff must verify MFA: every page sends this session to the MFA step
    assert client.get("/").status_code == 302
    session = client.session
    session[LAST_SEEN_AT] = last_seen = time.time() - 20 * 60  # idle for 20 minutes, not yet expired
    session.save()
    for url in ("/health/live/", "/health/db/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.json()["status"] == "ok"
    assert client.session[LAST_SEEN_AT] == last_seen  # the probes did not keep the session alive


def test_health_ignores_credentials_and_never_involves_axes(client):
    from axes.models import AccessAttempt, AccessFailureLog

    # not DRF views: a token header is not even looked at, so nothing can count as a failed login
    response = client.get("/health/live/", HTTP_AUTHORIZATION="Token not-a-real-token")
    assert response.status_code == 200
    assert not AccessAttempt.objects.exists()
    assert not AccessFailureLog.objects.exists()


@pytest.mark.req("R32", "R34")
def test_health_checks_write_nothing(client, settings):
    from django.contrib.sessions.models import Session

    settings.HEALTH_CHECK_TIMEOUT = 0.5  # no worker answers here: do not wait 2 s twice

    sessions_before = Session.objects.count()
    with CaptureQueriesContext(connection) as queries:
        for url in HEALTH_URLS:
            client.get(url, HTTP_X_REQUEST_ID=str(uuid.uuid4()))
    writes = [query["sql"] for query in queries.captured_queries if WRITES.match(query["sql"])]
    assert writes == []  # no audit context row, no session, no task result
    assert Session.objects.count() == sessions_before


def test_health_accepts_head_and_refuses_other_methods(client):
    assert client.head("/health/live/").status_code == 200
    assert client.put("/health/live/").status_code in (403, 405)  # CSRF refuses first; never served
