"""Publishing a task from a web request without letting the broker hold the request (R29, R32).

``delay_on_commit`` publishes when the transaction commits — right (R29) — but publishing itself can hang: a
Redis that is paused (``CLIENT PAUSE``) or half-dead keeps a pooled connection waiting with no timeout, and
Celery's retry policy is honoured unevenly (celery issues 4296, 4556, 4383). The work is already safe in
PostgreSQL at that point (the run or import job row is committed, status "queued", and beat re-publishes a
message that never arrives: operations.reconcile), so the request only needs to *try*. It publishes from a
daemon thread and waits at most ``PUBLISH_BUDGET_SECONDS``; if the broker has not taken the message by then, the
request answers anyway and the thread finishes (or fails, logged) on its own.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)


def _publish(task, args: tuple, finished: threading.Event) -> None:
    try:
        task.apply_async(args=args)
    except Exception:
        logger.warning(
            "could not publish %s%r: the broker is unreachable; the row stays queued and beat publishes it again",
            task.name,
            args,
            exc_info=True,
        )
    finally:
        finished.set()


def publish_within_budget(task, *args) -> bool:
    """Publish now, waiting at most PUBLISH_BUDGET_SECONDS; True if the broker took the message in time."""
    finished = threading.Event()
    threading.Thread(target=_publish, args=(task, args, finished), daemon=True, name=f"publish-{task.name}").start()
    if finished.wait(settings.PUBLISH_BUDGET_SECONDS):
        return True
    logger.warning(
        "publishing %s%r takes longer than %.1f s: answering without waiting",
        task.name,
        args,
        settings.PUBLISH_BUDGET_SECONDS,
    )
    return False


def enqueue_on_commit(task, *args) -> None:
    """Publish ``task(*args)`` when the current transaction commits, within the publishing budget."""
    transaction.on_commit(lambda: publish_within_budget(task, *args))
