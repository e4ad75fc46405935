"""Idempotent, bounded Celery tasks (R30, R31).

Celery delivers at least once: with ``acks_late`` and ``task_reject_on_worker_lost`` a message whose worker
dies is handed out again, and Redis hands out an unacknowledged message again after its visibility timeout.
That is what we want for reports and imports — and it is an endless loop for a message that kills its
worker every time, because the broker counts nothing (celery/celery discussion 8969). So every writing
task runs through ``IdempotentTask``: before the body runs, the attempt is counted in PostgreSQL, in a
committed transaction of its own, keyed by the task's business key (a unique constraint). A key that
already succeeded is not run again; a key whose attempts exceed ``TASK_MAX_ATTEMPTS`` is dead-lettered and
an operator alerted, and the message is acknowledged so the loop ends.
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
from dataclasses import dataclass

from celery.contrib.django.task import DjangoTask
from celery.exceptions import Ignore, Retry
from django.conf import settings
from django.core.mail import mail_admins
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from operations.models import OperationalAlert, TaskExecution

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    execution_id: int
    key: str
    number: int
    # The previous attempt of this very message never finished: its worker died (or the broker lost the ack).
    redelivered: bool


_current_attempt: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar("current_attempt", default=None)


def current_attempt() -> Attempt | None:
    """The attempt the running task body belongs to (None outside an ``IdempotentTask``)."""
    return _current_attempt.get()


def max_attempts() -> int:
    return int(getattr(settings, "TASK_MAX_ATTEMPTS", 3))


def begin_attempt(*, task_name: str, key: str, task_id: str, limit: int) -> tuple[str, Attempt | TaskExecution]:
    """Count one more attempt of (task, key).

    Returns ("run", the attempt), or ("done", the execution) for a key that succeeded or was dead-lettered
    before, or ("dead_letter", the execution) when this delivery is one too many.
    """
    now = timezone.now()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    with transaction.atomic():
        execution, created = TaskExecution.objects.select_for_update().get_or_create(
            task_name=task_name,
            key=key,
            defaults={"first_started_at": now, "last_started_at": now, "task_id": task_id, "worker": worker},
        )
        if execution.status in (TaskExecution.Status.SUCCEEDED, TaskExecution.Status.DEAD_LETTER):
            return ("done", execution)
        redelivered = not created and execution.status == TaskExecution.Status.RUNNING and execution.task_id == task_id
        if execution.attempts >= limit:
            execution.status = TaskExecution.Status.DEAD_LETTER
            execution.finished_at = now
            execution.error = (
                f"Dead-lettered: {execution.attempts} attempt(s) did not finish "
                f"(limit {limit}); last on {execution.worker}. {execution.error}"
            )[:4000]
            execution.save()
            _alert_dead_letter(execution)
            return ("dead_letter", execution)
        execution.attempts += 1
        execution.status = TaskExecution.Status.RUNNING
        execution.task_id = task_id
        execution.worker = worker
        execution.last_started_at = now
        execution.save()
    return ("run", Attempt(execution.pk, key, execution.attempts, redelivered))


def _alert_dead_letter(execution: TaskExecution) -> None:
    subject = f"Task {execution.task_name} [{execution.key}] dead-lettered after {execution.attempts} attempts"
    detail = (
        f"{execution.error}\n\nThe message was acknowledged and will not be delivered again. Find the cause in the "
        "worker logs (search for the task id), fix it, then request the work again."
    )
    OperationalAlert.objects.create(kind=OperationalAlert.Kind.DEAD_LETTER, subject=subject[:300], detail=detail)
    logger.error("%s (task id %s)", subject, execution.task_id)
    transaction.on_commit(lambda: mail_admins(subject, detail, fail_silently=True))


def finish_attempt(attempt: Attempt, *, status: str, error: str = "", result=None) -> None:
    fields = {"status": status, "error": error[:4000], "result": result}
    if status != TaskExecution.Status.RUNNING:
        fields["finished_at"] = timezone.now()
    TaskExecution.objects.filter(pk=attempt.execution_id).update(**fields)


class IdempotentTask(DjangoTask):
    """A Celery task that runs once per business key and gives up after ``TASK_MAX_ATTEMPTS`` lost attempts.

    Subclasses (or ``@shared_task(base=IdempotentTask)``) may override ``idempotency_key``; by default the key
    is made of the task's positional arguments, which for our tasks are ids. A ``DjangoTask`` (the class the
    Django fix-up gives every task), so that ``delay_on_commit`` stays available.
    """

    abstract = True
    attempt_limit: int | None = None

    def idempotency_key(self, *args, **kwargs) -> str:
        parts = [str(value) for value in args] + [f"{name}={kwargs[name]}" for name in sorted(kwargs)]
        return ":".join(parts) or "-"

    def __call__(self, *args, **kwargs):
        key = self.idempotency_key(*args, **kwargs)
        try:
            outcome, begun = begin_attempt(
                task_name=self.name,
                key=key,
                task_id=self.request.id or "",
                limit=self.attempt_limit or max_attempts(),
            )
        except (OperationalError, InterfaceError) as unreachable:
            # The database is restarting or our connection was cut: try again shortly, a bounded number of times.
            raise self.retry(exc=unreachable, countdown=min(2**self.request.retries, 30), max_retries=8) from None
        if outcome != "run":
            logger.info("task %s [%s]: %s, not run again", self.name, key, outcome.replace("_", "-"))
            if begun.status == TaskExecution.Status.SUCCEEDED and begun.result is not None:
                return begun.result  # a redelivered message answers what the attempt that did the work answered
            return {"key": key, "status": begun.status}
        attempt = begun
        token = _current_attempt.set(attempt)
        try:
            result = super().__call__(*args, **kwargs)
        except (Retry, Ignore) as pending:
            # Celery will deliver the task again: the execution stays running and the next attempt is counted.
            finish_attempt(attempt, status=TaskExecution.Status.RUNNING, error=str(pending))
            raise
        except BaseException as error:
            finish_attempt(attempt, status=TaskExecution.Status.FAILED, error=f"{type(error).__name__}: {error}")
            raise
        finally:
            _current_attempt.reset(token)
        # Results are small dicts of ids and statuses (R35); anything else is not kept for redeliveries.
        kept = result if isinstance(result, dict | list | str | int | float | bool) else None
        finish_attempt(attempt, status=TaskExecution.Status.SUCCEEDED, result=kept)
        return result
