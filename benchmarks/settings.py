"""Settings of the benchmark runs: the product's, with a database of their own and the benchmark-only URLs.

``BENCH_DATABASE_NAME`` (default ``exotrial_bench``) names the database on the server of ``DATABASE_URL`` or, without
it, in the embedded cluster of ``make run``; ``python -m benchmarks`` drops and recreates it, so ``make run`` data are
never touched. The broker is kombu's in-memory transport: a task queued by a benchmark (the analysis request queues
one) never reaches a worker of ``make run`` or the tests; the benchmarks run analyses in their own process.
"""

import os

from config.settings.base import *  # noqa: F403
from config.settings.base import VAR_DIR, database_settings

DEBUG = False
BENCH_DATABASE_NAME = os.environ.get("BENCH_DATABASE_NAME", "exotrial_bench")
DATABASES = {"default": {**database_settings(), "NAME": BENCH_DATABASE_NAME}}
ROOT_URLCONF = "benchmarks.urls"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
CELERY_BROKER_URL = "memory://"
CELERY_BROKER_TRANSPORT_OPTIONS = {}
ARTIFACT_ROOT = VAR_DIR / "bench-artifacts"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
