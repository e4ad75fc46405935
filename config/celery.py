"""The Celery application. Configuration lives in Django settings under the CELERY_ namespace."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun
from django.db import InterfaceError, OperationalError, close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

app = Celery("exotrial")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# R34 — survive PostgreSQL restarts. A worker process lives for days and keeps its database connection from one
# task to the next; a connection terminated by the server (pg_terminate_backend, failover, restart) stays dead in
# it. In the web, Django runs close_old_connections() at the start and end of every request, which is what makes
# CONN_MAX_AGE and CONN_HEALTH_CHECKS work; nothing does that in a worker unless we do. Around every task it drops
# connections that had errors or outlived CONN_MAX_AGE, and re-arms the health check so the task's first query
# finds out whether the connection still works and reconnects if not. (Celery's own Django fix-up also closes
# connections around tasks, but it can be switched off with CELERY_DB_REUSE_MAX; this guarantee is ours.) Without
# it workers were seen failing every task with InterfaceError("connection already closed") for days.
# Not for a task run in-process (``task.apply()``, eager mode): that shares its caller's connection and transaction
# (a test's, a request's), which must not be closed under it — Django's test client skips the web hook likewise.
@task_prerun.connect(dispatch_uid="exotrial.close_old_connections_before_task")
def _close_old_connections_before_task(task=None, **kwargs) -> None:
    if not _runs_in_process(task):
        close_old_connections()


@task_postrun.connect(dispatch_uid="exotrial.close_old_connections_after_task")
def _close_old_connections_after_task(task=None, **kwargs) -> None:
    if not _runs_in_process(task):
        close_old_connections()


def _runs_in_process(task) -> bool:
    return bool(getattr(getattr(task, "request", None), "is_eager", False))


@app.task(
    name="exotrial.worker_health",
    # The database may be restarting (R34): try again 3 times, waiting up to 1 s, 2 s, 4 s (jittered), then fail.
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=1,
    retry_backoff_max=8,
    retry_jitter=True,
    max_retries=3,
)
def worker_health() -> dict[str, str]:
    """Prove that a worker can reach the database: returns the database clock and the worker host.

    Load balancers and the operators' health page use this to tell a live worker from a dead one.
    Only ids and timestamps are returned, never clinical data (task results are stored).
    """
    import socket

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        (database_time,) = cursor.fetchone()
    return {"database_time": database_time.isoformat(), "worker": socket.gethostname(), "pid": str(os.getpid())}
