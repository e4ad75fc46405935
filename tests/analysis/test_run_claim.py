"""Who executes a run: the lock of a live worker versus the leftovers of a dead one (R30)."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from analysis.models import AnalysisRun
from analysis.services import RUN_LOCK_NAMESPACE, _claim, mark_stuck_runs
from audit.context import audit_context

pytestmark = pytest.mark.django_db


@pytest.fixture
def running_run(demo_trial):
    """A run left RUNNING by an attempt, its heartbeat an hour old."""
    with audit_context(reason="test set-up"):
        return AnalysisRun.objects.create(
            trial=demo_trial,
            kind=AnalysisRun.Kind.FINAL,
            cutoff=dt.date(2026, 11, 1),
            requested_by=get_user_model().objects.get(username="demo-unblinded-stat"),
            status=AnalysisRun.Status.RUNNING,
            attempts=1,
            started_at=timezone.now() - dt.timedelta(hours=1),
            heartbeat_at=timezone.now() - dt.timedelta(hours=1),
        )


@pytest.fixture
def other_worker():
    """A second database session, as another worker's connection would be."""
    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings.get("PASSWORD") or None,
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        autocommit=True,
    ) as session:
        yield session


@pytest.mark.req("R30")
def test_a_run_whose_worker_died_is_taken_over_at_once(running_run):
    # nobody holds the run's lock: its worker's connection is gone, so the redelivered task runs it again
    claimed = _claim(running_run.pk)
    assert claimed is not None
    assert claimed.attempts == 2
    assert claimed.step == "starting again: the last worker died"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [RUN_LOCK_NAMESPACE, running_run.pk])


@pytest.mark.req("R30")
def test_a_run_a_live_worker_holds_is_left_alone_however_old_its_heartbeat(running_run, other_worker):
    other_worker.execute("SELECT pg_advisory_lock(%s, %s)", [RUN_LOCK_NAMESPACE, running_run.pk])
    assert _claim(running_run.pk) is None
    assert mark_stuck_runs() == 0  # slow, not dead
    running_run.refresh_from_db()
    assert (running_run.status, running_run.attempts) == (AnalysisRun.Status.RUNNING, 1)
    other_worker.execute("SELECT pg_advisory_unlock(%s, %s)", [RUN_LOCK_NAMESPACE, running_run.pk])
    # once that worker is gone, the stale run is marked failed so it can be requested again
    assert mark_stuck_runs() == 1
    running_run.refresh_from_db()
    assert running_run.status == AnalysisRun.Status.FAILED
    assert "no worker holds the run" in running_run.error
