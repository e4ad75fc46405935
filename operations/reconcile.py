"""Re-publishing work whose broker message was lost (R33).

PostgreSQL, not the broker, is the record of what was asked for: an analysis run or an import job is a row
in status "queued" before its task is published (on commit). If Redis dies before a worker takes the
message, and it runs without an append-only file, the message is gone while the row still waits. Every
ten minutes beat looks for such rows — queued for longer than ``LOST_AFTER`` and never begun (no
``TaskExecution``) — and publishes their task again. The tasks are idempotent, so a message that was only
slow, not lost, costs a no-op.
"""

from __future__ import annotations

import datetime as dt
import logging

from celery import current_app
from django.apps import apps
from django.conf import settings
from django.utils import timezone

from operations.models import TaskExecution

logger = logging.getLogger(__name__)

LOST_AFTER = dt.timedelta(minutes=10)


def requeue_lost_work(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Publish again the task of every row queued for longer than LOST_AFTER whose task never began."""
    cutoff = (now or timezone.now()) - LOST_AFTER
    requeued: dict[str, int] = {}
    for model_label, queued_status, requested_field, task_name in settings.RECONCILED_WORK:
        model = apps.get_model(model_label)
        waiting = list(
            model.objects.filter(status=queued_status, **{f"{requested_field}__lt": cutoff}).values_list(
                "pk", flat=True
            )
        )
        begun = set(
            TaskExecution.objects.filter(task_name=task_name, key__in=[str(pk) for pk in waiting]).values_list(
                "key", flat=True
            )
        )
        lost = [pk for pk in waiting if str(pk) not in begun]
        for pk in lost:
            current_app.send_task(task_name, args=[pk])
        if lost:
            logger.warning("re-published %s for %s %s: their messages were lost", task_name, model_label, lost)
        requeued[task_name] = len(lost)
    return requeued
