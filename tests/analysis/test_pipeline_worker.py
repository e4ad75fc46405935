"""The analysis pipeline through a real Celery worker process (Redis and PostgreSQL in CI)."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model

from analysis.models import AnalysisRun
from analysis.services import analysis_run_request
from trials import demo


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(420)
def test_an_interim_run_requested_on_the_web_side_is_executed_by_a_worker(celery_worker_process):
    # given the demo trial, committed, and a worker process
    trial = demo.seed_demo(password="worker-pass-2026").trial
    statistician = get_user_model().objects.get(username="demo-unblinded-stat")
    # when the unblinded statistician requests an interim analysis (queued after commit)
    run = analysis_run_request(trial=trial, user=statistician, kind="interim", cutoff=demo.ENROLMENT_END)
    # then the worker runs it to completion, reporting progress on the way
    deadline = time.monotonic() + 360
    seen_steps = set()
    while time.monotonic() < deadline:
        run.refresh_from_db()
        seen_steps.add(run.step)
        if run.status in (AnalysisRun.Status.SUCCEEDED, AnalysisRun.Status.FAILED):
            break
        time.sleep(0.5)
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
    assert run.attempts == 1
    assert run.artifacts.filter(name="closed/report.pdf").exists()
    assert len(seen_steps - {"", "done"}) >= 1
    from django_celery_results.models import TaskResult

    stored = TaskResult.objects.filter(task_name="analysis.execute_run").order_by("-date_done").first()
    assert stored is not None
    # task results hold ids and a status only, never clinical data or treatment
    for arm in ("PBO", "LOW", "HIGH"):
        assert arm not in (stored.result or "")
