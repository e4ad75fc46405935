"""Celery tasks of participant data: thin, take ids, idempotent (see participants.exchange.imports)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="participants.run_import", acks_late=True)
def run_import_job(job_id: int) -> dict[str, object]:
    """Run import job ``job_id``; a finished job is left alone, so a redelivered task changes nothing.

    No automatic retry: a failed job records why, and nothing of it was written (the import is one transaction);
    the user submits the file again. Returns ids and the status only: errors stay on the job.
    """
    from participants.exchange.imports import import_job_run

    job = import_job_run(job_id=job_id)
    return {"job_id": job_id, "status": job.status if job else "missing"}
