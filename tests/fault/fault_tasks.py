"""Tasks that exist only for the fault tests; a worker started by them loads this module with --include."""

from __future__ import annotations

import os

from celery import shared_task

from operations.execution import IdempotentTask


@shared_task(name="tests.fault.exit_worker", base=IdempotentTask)
def exit_worker(key: str) -> None:
    """A poison message: every attempt kills the worker process that runs it, as a segfault or the OOM killer would."""
    os._exit(1)
