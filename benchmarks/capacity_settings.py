"""Settings of the capacity load test (``python -m benchmarks.capacity``, R37): production-like, but local.

The product's settings and URLs (no benchmark-only endpoint), ``DEBUG`` off, persistent database connections
(``CONN_MAX_AGE`` as in production) and a real broker: Redis when ``REDIS_URL`` is set, else kombu's filesystem
transport in a folder of its own. Local in what production would refuse: plain HTTP on loopback, the development
``SECRET_KEY`` and static files without a manifest (the API serves none). Logging is the product's (one line per
request from the correlation-id middleware included): the runner sends gunicorn's and the worker's to log files.

``CAPACITY_DATABASE_NAME`` (default ``exotrial_capacity``) names the database on the server of ``DATABASE_URL``
(else in the embedded cluster); the runner drops and recreates it, so ``make run`` data are never touched. Tasks
go to a queue of their own (``CAPACITY_QUEUE``), which only the runner's worker consumes: a ``make run`` or test
worker on the same Redis database never takes them, and the runner's worker never takes theirs.
"""

import os

from config.settings.base import *  # noqa: F403
from config.settings.base import VAR_DIR, celery_broker, database_settings

DEBUG = False
CAPACITY_DATABASE_NAME = os.environ.get("CAPACITY_DATABASE_NAME", "exotrial_capacity")
DATABASES = {"default": {**database_settings(), "NAME": CAPACITY_DATABASE_NAME}}
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
CELERY_BROKER_URL, CELERY_BROKER_TRANSPORT_OPTIONS = celery_broker(VAR_DIR / "capacity-celery-broker")
CAPACITY_QUEUE = "exotrial-capacity"
CELERY_TASK_DEFAULT_QUEUE = CAPACITY_QUEUE
ARTIFACT_ROOT = VAR_DIR / "capacity-artifacts"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
