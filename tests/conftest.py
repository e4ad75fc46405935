from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection

from trials import demo

TEST_PASSWORD = "correct-horse-battery-9"


@pytest.fixture(autouse=True)
def _fresh_cache():
    """No test sees what another left in the cache: the sign-in throttle's counts per address (10 a minute), reported
    lockouts, one-time codes used."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="session", autouse=True)
def flush_past_audit_protection():
    """Transactional tests end with Django's flush, a TRUNCATE of every table, which the audit tables refuse (R3).

    The test database's superuser flushes with triggers off (``session_replication_role = replica``); an
    application role cannot do this, and nothing outside the tests does it.
    """
    from unittest import mock

    from django.db.backends.postgresql.operations import DatabaseOperations

    flush = DatabaseOperations.execute_sql_flush

    def execute_sql_flush_without_triggers(self, sql_list):
        with self.connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = replica")
        try:
            flush(self, sql_list)
        finally:
            with self.connection.cursor() as cursor:
                cursor.execute("SET session_replication_role = DEFAULT")

    with mock.patch.object(DatabaseOperations, "execute_sql_flush", execute_sql_flush_without_triggers):
        yield


@pytest.fixture(scope="session")
def demo_seed(django_db_setup, django_db_blocker):
    """EXO-OA-201 seeded once per test session (tests roll back their own changes around it)."""
    with django_db_blocker.unblock():
        return demo.seed_demo(seed=demo.DEFAULT_SEED, password=TEST_PASSWORD)


@pytest.fixture
def demo_password() -> str:
    return TEST_PASSWORD


@pytest.fixture
def demo_trial(demo_seed, db):
    from trials.models import Trial

    return Trial.objects.get(protocol_code=demo.PROTOCOL_CODE)


@pytest.fixture
def coordinator(demo_trial):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username="demo-coordinator")


@pytest.fixture
def log_in():
    """``log_in(client, user_or_username)``: a logged-in session, verified with MFA when the user's roles need it."""
    from accounts.testing import log_in

    return log_in


@pytest.fixture
def api_token():
    """``api_token(user_or_username)``: an API token as the endpoint issues it (MFA-verified if the user needs it)."""
    from accounts.testing import api_token_for

    return api_token_for


@pytest.fixture
def totp_code():
    """``totp_code(device, at=None)``: the code an authenticator app shows for ``device`` now (or at ``at``)."""
    import time

    from django_otp.oath import TOTP

    def totp_code(device, at: float | None = None) -> str:
        totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
        totp.time = time.time() if at is None else at
        return f"{totp.token():0{device.digits}d}"

    return totp_code


@pytest.fixture
def coordinator_client(client, coordinator):
    from accounts.testing import login_verified

    login_verified(client, coordinator)  # a coordinator is staff (the admin), so needs MFA
    return client


BASE_DIR = Path(settings.BASE_DIR)


def _test_database_url() -> str:
    db = connection.settings_dict
    host = quote(db["HOST"], safe="") if db["HOST"].startswith("/") else db["HOST"]
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    return f"postgres://{quote(db['USER'], safe='')}{password}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": _test_database_url()}
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "1",
            "--pool",
            "prefork",
            "--hostname",
            f"test-worker-{os.getpid()}@%h",
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
        print((tmp_path / "worker.log").read_text()[-3000:])


INTERIM_CUTOFF = dt.date(2025, 11, 15)
FINAL_CUTOFF = dt.date(2026, 11, 1)


@pytest.fixture(scope="session")
def demo_runs(demo_seed, django_db_blocker):
    """An interim (look 1) and the final analysis of the demo trial, executed in-process once per session."""
    from analysis.services import analysis_run_execute, analysis_run_request

    with django_db_blocker.unblock():
        trial = demo_seed.trial
        statistician = get_user_model().objects.get(username="demo-unblinded-stat")
        interim = analysis_run_request(trial=trial, user=statistician, kind="interim", cutoff=INTERIM_CUTOFF)
        interim = analysis_run_execute(run_id=interim.pk)
        final = analysis_run_request(trial=trial, user=statistician, kind="final", cutoff=FINAL_CUTOFF)
        final = analysis_run_execute(run_id=final.pk)
        return {"interim": interim.pk, "final": final.pk}


@pytest.fixture
def interim_run(demo_runs, db):
    from analysis.models import AnalysisRun

    return AnalysisRun.objects.get(pk=demo_runs["interim"])


@pytest.fixture
def final_run(demo_runs, db):
    from analysis.models import AnalysisRun

    return AnalysisRun.objects.get(pk=demo_runs["final"])
