"""How ExoTrial audits a model: pghistory event tables filled by PostgreSQL triggers.

Triggers, not Django signals, so that ``QuerySet.update()``, ``bulk_create``, admin actions and raw
SQL are audited exactly like a form save. Each event row stores a full snapshot of the row, the
operation, the database's UTC clock (``NOW()``) and the context JSON (user, username, reason, url).
Event tables are append-only: triggers refuse UPDATE, DELETE and TRUNCATE on them, and every insert is
hash-chained (``audit.chain``) so that a change made around the triggers is detected.

A second pair of triggers on the audited table itself refuses an UPDATE that changes something, or a
DELETE, unless the transaction carries a non-empty ``reason`` in its audit context. From SQL, a
database administrator supplies one with::

    SELECT set_config('pghistory.context_metadata', '{"reason": "...", "username": "..."}', true);
"""

from __future__ import annotations

import pghistory
import pgtrigger

from audit.chain import chained_event_table_triggers

REASON_REQUIRED_SQLSTATE = "EXR01"

_REQUIRE_REASON_SQL = """
    IF coalesce(
        nullif(current_setting('pghistory.context_metadata', true), '')::jsonb ->> 'reason', ''
    ) = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = '{sqlstate}',
            MESSAGE = format('A reason for change is required to %s a row of %s', lower(TG_OP), TG_TABLE_NAME),
            HINT = 'Supply a reason in the audit context (pghistory.context_metadata).';
    END IF;
    RETURN {returned};
"""


def require_reason_triggers() -> list[pgtrigger.Trigger]:
    """Triggers that refuse an unexplained change or delete of an existing row."""
    return [
        pgtrigger.Trigger(
            name="require_reason_update",
            operation=pgtrigger.Update,
            when=pgtrigger.Before,
            condition=pgtrigger.AnyChange(),
            func=_REQUIRE_REASON_SQL.format(sqlstate=REASON_REQUIRED_SQLSTATE, returned="NEW"),
        ),
        pgtrigger.Trigger(
            name="require_reason_delete",
            operation=pgtrigger.Delete,
            when=pgtrigger.Before,
            func=_REQUIRE_REASON_SQL.format(sqlstate=REASON_REQUIRED_SQLSTATE, returned="OLD"),
        ),
    ]


def audited(**kwargs):
    """Decorator: record every insert, update and delete of the model in an append-only event table.

    The event table is also hash-chained and refuses TRUNCATE (``audit.chain``); pghistory adds its own
    UPDATE/DELETE protection (``append_only``).
    """
    meta = dict(kwargs.pop("meta", None) or {})
    meta["triggers"] = [*meta.get("triggers", []), *chained_event_table_triggers(with_append_only=False)]
    return pghistory.track(
        pghistory.InsertEvent(),
        pghistory.UpdateEvent(),
        pghistory.DeleteEvent(),
        append_only=True,
        meta=meta,
        **kwargs,
    )
