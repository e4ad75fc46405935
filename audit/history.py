"""Readable audit history of one record, from the pghistory event tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pghistory.models import Events

HIDDEN = "(hidden)"


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: object
    new: object


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    action: str
    username: str
    reason: str
    changes: tuple[FieldChange, ...]


def record_history(obj, *, hidden_fields: frozenset[str] = frozenset()) -> list[HistoryEntry]:
    """Every insert/update/delete of ``obj`` in time order, with old → new values per field."""
    entries = []
    events = Events.objects.tracks(obj).order_by("pgh_created_at", "pgh_id")
    for event in events:
        context = event.pgh_context or {}
        if event.pgh_label == "insert":
            changes = tuple(
                FieldChange(name, None, HIDDEN if name in hidden_fields else value)
                for name, value in sorted(event.pgh_data.items())
                if not name.startswith("pgh_")
            )
        else:
            diff = event.pgh_diff or {}
            changes = tuple(
                FieldChange(name, *((HIDDEN, HIDDEN) if name in hidden_fields else values))
                for name, values in sorted(diff.items())
            )
        entries.append(
            HistoryEntry(
                at=event.pgh_created_at,
                action=event.pgh_label,
                username=str(context.get("username") or context.get("user") or "system"),
                reason=str(context.get("reason") or ""),
                changes=changes,
            )
        )
    return entries
