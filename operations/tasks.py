"""Celery tasks of the background-work layer: thin, no arguments, counts only in their results."""

from __future__ import annotations

from celery import shared_task


# No stored result: this runs every few seconds and its result is a count (django-celery-results would keep
# thousands of rows a day for nothing).
@shared_task(name="operations.deliver_outbox", ignore_result=True)
def deliver_outbox_task() -> dict[str, int]:
    from operations.outbox import outbox_deliver_pending

    return {"delivered": outbox_deliver_pending()}


@shared_task(name="operations.requeue_lost_work")
def requeue_lost_work_task() -> dict[str, int]:
    from operations.reconcile import requeue_lost_work

    return requeue_lost_work()
