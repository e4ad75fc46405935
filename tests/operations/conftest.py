"""The configured broker's default queue, counted for real (Redis in CI, the filesystem transport otherwise)."""

from __future__ import annotations

import pytest

from config.celery import app

QUEUE = app.conf.task_default_queue


def queued_messages() -> int:
    with app.connection_for_write() as connection:
        return connection.default_channel.queue_declare(queue=QUEUE, passive=False).message_count


@pytest.fixture
def empty_queue():
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(QUEUE)
    yield
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(QUEUE)  # no worker of a later test should find our messages
