"""Celery tasks of the analysis pipeline: thin, take ids, idempotent (see analysis.services)."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from operations.execution import IdempotentTask, current_attempt


@shared_task(
    name="analysis.execute_run",
    base=IdempotentTask,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=3,
)
def execute_analysis_run(run_id: int) -> dict[str, object]:
    """Execute analysis run ``run_id``. Returns ids and the status only: results stay in the database."""
    from analysis.services import analysis_run_execute

    attempt = current_attempt()
    run = analysis_run_execute(run_id=run_id, previous_attempt_lost=bool(attempt and attempt.redelivered))
    return {"run_id": run_id, "status": run.status if run else "missing"}


@shared_task(name="analysis.mark_stuck_runs")
def mark_stuck_runs_task() -> dict[str, int]:
    from analysis.services import mark_stuck_runs

    return {"marked_failed": mark_stuck_runs()}


@shared_task(name="analysis.check_planned_looks")
def check_planned_looks_task() -> dict[str, int]:
    from analysis.looks import notify_reached_looks

    return {"notified": notify_reached_looks()}
