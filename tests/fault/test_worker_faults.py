"""A worker killed in the middle of a task, and a task that kills every worker it runs on (R30, R31, R35).

A redis-server and a Celery worker (prefork, one child) of the test's own, on loopback; the child is killed
with SIGKILL by its PID, as the OOM killer would. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
from celery import Celery
from django.contrib.auth import get_user_model
from django.db import connection

from analysis.models import AnalysisRun
from analysis.services import artifact_root, run_folder
from audit.context import INITIAL_ENTRY, audit_context
from operations.models import OperationalAlert, TaskExecution
from tests.fault.processes import app_env, database_url, require, running, start_worker, wait_until
from tests.fault.redis_server import RedisServer, redis_available
from trials import demo

pytestmark = [pytest.mark.fault, pytest.mark.celery_worker]

QUEUE = "fault-worker"


@pytest.fixture(scope="module")
def redis_server():
    require(redis_available(), "redis-server is not installed")
    server = RedisServer()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def worker(redis_server, transactional_db, tmp_path):
    env = app_env(
        database_url(connection.settings_dict),
        REDIS_URL=redis_server.url,
        EXOTRIAL_TASK_MAX_ATTEMPTS="3",
    )
    process = start_worker(
        env,
        tmp_path / "worker.log",
        queue=QUEUE,
        hostname=f"fault-{os.getpid()}@%h",
        extra_arguments=["--include", "tests.fault.fault_tasks"],
    )
    with running(process, ready_timeout=90):
        yield process
    print(process.tail(6000))


@pytest.fixture
def sender(redis_server):
    """Publishes to the test's own Redis, as the web processes would."""
    app = Celery("fault-sender", broker=redis_server.url, set_as_current=False)
    app.conf.broker_connection_timeout = 5
    yield app
    app.close()


def execution(task_name: str, key: str) -> TaskExecution | None:
    return TaskExecution.objects.filter(task_name=task_name, key=key).first()


@pytest.mark.req("R30", "R35")
@pytest.mark.timeout(420)
def test_a_run_whose_worker_is_killed_midway_is_completed_once_by_a_fresh_worker(worker, sender):
    trial = demo.seed_demo(password="fault-pass-2026").trial
    with audit_context(reason=INITIAL_ENTRY):
        run = AnalysisRun.objects.create(
            trial=trial,
            kind=AnalysisRun.Kind.INTERIM,
            look_number=1,
            cutoff=demo.ENROLMENT_END,
            requested_by=get_user_model().objects.get(username="demo-unblinded-stat"),
        )
    message = sender.send_task("analysis.execute_run", args=[run.pk], queue=QUEUE)

    # the first attempt is under way in the worker's child process …
    first = wait_until(
        lambda: (e := execution("analysis.execute_run", str(run.pk))) and e.attempts == 1 and e,
        120,
        message="first attempt started",
    )
    child_pid = int(first.worker.rsplit(":", 1)[1])
    assert child_pid in worker.children()
    wait_until(
        lambda: AnalysisRun.objects.filter(pk=run.pk, status=AnalysisRun.Status.RUNNING).exists(), 60, interval=0.05
    )
    # … when the child is killed
    os.kill(child_pid, signal.SIGKILL)

    # a fresh child takes the redelivered message and completes the run
    wait_until(
        lambda: AnalysisRun.objects.filter(
            pk=run.pk, status__in=[AnalysisRun.Status.SUCCEEDED, AnalysisRun.Status.FAILED]
        ).exists(),
        300,
        interval=0.5,
        message="run finished",
    )
    run.refresh_from_db()
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
    assert worker.alive()
    assert child_pid not in worker.children()

    # exactly once: two attempts counted, one set of artifacts, nothing left in the scratch area
    done = execution("analysis.execute_run", str(run.pk))
    assert (done.status, done.attempts, done.task_id) == (TaskExecution.Status.SUCCEEDED, 2, message.id)
    assert run.attempts == 2
    attempts_in_history = list(
        AnalysisRun.pgh_event_model.objects.filter(pgh_obj_id=run.pk)
        .order_by("pgh_id")
        .values_list("attempts", flat=True)
    )
    assert 1 in attempts_in_history
    assert attempts_in_history[-1] == 2
    names = list(run.artifacts.values_list("name", flat=True))
    assert len(names) == len(set(names))
    assert {"closed/report.pdf", "open/report.pdf"} <= set(names)
    on_disk = {str(path.relative_to(run_folder(run))) for path in run_folder(run).rglob("*") if path.is_file()}
    assert on_disk == set(names)
    assert not list((artifact_root() / "scratch").glob(f"run-{run.pk}-*"))

    # R35: the stored task state holds ids and a status — no arm, no participant
    from django_celery_results.models import TaskResult

    stored = TaskResult.objects.get(task_id=message.id)
    assert stored.status == "SUCCESS"
    assert json.loads(stored.result) == {"run_id": run.pk, "status": "succeeded"}
    stored_text = " ".join(str(value) for value in (stored.task_args, stored.task_kwargs, stored.result))
    revealing = [arm.code for arm in trial.arms.all()] + [arm.name for arm in trial.arms.all()]
    revealing += list(trial.participants.values_list("screening_number", flat=True)[:50])
    assert not [text for text in revealing if text in stored_text]


@pytest.mark.req("R31")
@pytest.mark.timeout(240)
def test_a_task_that_kills_its_worker_every_time_is_dead_lettered_after_three_attempts(worker, sender, redis_server):
    sender.send_task("tests.fault.exit_worker", args=["poison-1"], queue=QUEUE)
    dead = wait_until(
        lambda: (e := execution("tests.fault.exit_worker", "poison-1")) and e.status == "dead_letter" and e,
        180,
        interval=0.5,
        message="poison message dead-lettered",
    )
    assert dead.attempts == 3
    alert = OperationalAlert.objects.get()
    assert alert.kind == OperationalAlert.Kind.DEAD_LETTER
    assert "tests.fault.exit_worker [poison-1]" in alert.subject
    # the loop has ended: the message was acknowledged, nothing is queued or in flight, the worker lives on
    wait_until(
        lambda: redis_server.cli("LLEN", QUEUE) == "0" and redis_server.cli("HLEN", "unacked") == "0",
        30,
        message="queue drained",
    )
    assert worker.alive()
    assert OperationalAlert.objects.count() == 1
