"""The Celery application. Configuration lives in Django settings under the CELERY_ namespace."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

app = Celery("exotrial")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="exotrial.worker_health")
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
