"""A real Celery worker process, started by the fixture, runs a task and hands the result back.

With REDIS_URL set (CI) the broker is that Redis; otherwise kombu's filesystem transport. The worker
connects to the test database, so the test must commit (transactional_db).
"""

from __future__ import annotations

import os

import pytest

from config.celery import app, worker_health


@pytest.mark.celery_worker
@pytest.mark.timeout(180)
def test_real_worker_runs_a_task_against_the_test_database(celery_worker_process):
    # given a worker process started by the fixture
    assert celery_worker_process.poll() is None
    # when a task is sent through the configured broker
    result = worker_health.delay()
    # then the worker runs it (it queries the database) and the result comes back through the backend
    payload = result.get(timeout=90)
    assert payload["pid"] != str(os.getpid())
    assert int(payload["pid"]) != celery_worker_process.pid  # a prefork child did the work
    assert payload["database_time"]
    from django_celery_results.models import TaskResult

    stored = TaskResult.objects.get(task_id=result.id)
    assert stored.status == "SUCCESS"


def test_broker_matches_the_environment():
    if os.environ.get("REDIS_URL"):
        assert app.conf.broker_url.startswith("redis://")
    else:
        assert app.conf.broker_url == "filesystem://"


def test_effective_celery_configuration_is_what_we_rely_on():
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.result_backend == "django-db"
    assert 0 < conf.task_soft_time_limit < conf.task_time_limit
    if os.environ.get("REDIS_URL"):
        assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
