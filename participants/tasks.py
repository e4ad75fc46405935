"""Celery tasks of participant data: thin, take ids, idempotent (see participants.exchange.imports)."""

from __future__ import annotations

from celery import shared_task

from operations.execution import IdempotentTask


@shared_task(name="participants.run_import", base=IdempotentTask, acks_late=True)
def run_import_job(job_id: int) -> dict[str, object]:
    """Run import job ``job_id``; a finished job is left alone, so a redelivered task changes nothing.

    No automatic retry: a failed job records why, and nothing of it was written (the import is one transaction);
    the user submits the file again. Returns ids and the status only: errors stay on the job.
    """
    from participants.exchange.imports import import_job_run

    job = import_job_run(job_id=job_id)
    return {"job_id": job_id, "status": job.status if job else "missing"}


@shared_task(name="participants.check_safety_clocks", ignore_result=True)
def check_safety_clocks_task() -> dict[str, int]:
    """Queue reminders for SAEs whose 24-hour sponsor clock is ending unreported (clocks are rows, not timers)."""
    from participants.notifications import queue_sae_clock_reminders

    return {"queued": queue_sae_clock_reminders()}
