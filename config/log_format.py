"""One JSON object per log line (python-json-logger), carrying only the fields that are named.

python-json-logger adds every ``extra`` attribute of a record to the JSON by default. Libraries pass more there
than their message shows: Django's request logger the request object (its repr holds the query string), Celery's
worker the task's arguments (``extra={"data": {..., "args": ..., "kwargs": ...}}``). Log lines must never carry
participant data, so this formatter writes the UTC timestamp, the fields named in ``fmt`` (renamed), and an
exception's traceback, in that order, and nothing else: a JSON line says what the plain line said, plus its
metadata.
"""

from __future__ import annotations

from typing import Any

from pythonjsonlogger.json import JsonFormatter


class NamedFieldsJsonFormatter(JsonFormatter):
    def add_fields(self, log_data: dict[str, Any], record, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        timestamp = self.timestamp if isinstance(self.timestamp, str) else "timestamp"
        named = [timestamp, *self._required_fields, "exc_info", "stack_info"]
        keys = [self.rename_fields.get(field, field) for field in named]
        ordered = {key: log_data[key] for key in keys if key in log_data}
        log_data.clear()
        log_data.update(ordered)
