"""A web request that publishes a task waits for the broker a bounded time, then answers anyway (R32)."""

from __future__ import annotations

import threading
import time

import pytest

from analysis.tasks import execute_analysis_run
from operations.publishing import publish_within_budget


@pytest.mark.req("R32")
def test_a_broker_that_does_not_answer_holds_the_request_no_longer_than_the_budget(settings, monkeypatch):
    settings.PUBLISH_BUDGET_SECONDS = 0.5
    broker_back = threading.Event()
    published = []

    def hanging_publish(args):  # a paused Redis: the write blocks until the pause ends
        broker_back.wait(10)
        published.append(args)

    monkeypatch.setattr(execute_analysis_run, "apply_async", hanging_publish)
    started = time.monotonic()
    assert publish_within_budget(execute_analysis_run, 42) is False
    assert time.monotonic() - started < 1.5
    # when the broker answers again, the message that was waiting goes out
    broker_back.set()
    deadline = time.monotonic() + 5
    while not published and time.monotonic() < deadline:
        time.sleep(0.01)
    assert published == [(42,)]


@pytest.mark.req("R32")
def test_a_dead_broker_is_logged_and_the_request_goes_on(settings, monkeypatch, caplog):
    settings.PUBLISH_BUDGET_SECONDS = 2

    def refused(args):
        raise ConnectionRefusedError("redis is down")

    monkeypatch.setattr(execute_analysis_run, "apply_async", refused)
    assert publish_within_budget(execute_analysis_run, 7) is True
    assert "the row stays queued and beat publishes it again" in caplog.text
