"""Tamper evidence for the audit trail: a SHA-256 hash chain over every audit event table.

Each INSERT statement into an audit event table appends ONE link to ``audit_chain_link`` (a statement-level
trigger reading the transition table), so a million-row import costs one link, not a million:

- ``event_ids``: the statement's event ids in ascending order;
- ``event_columns``: the event table's columns when the link was written (see below);
- ``row_digests``: the 32-byte SHA-256 of each event's canonical text, concatenated in ``event_ids`` order;
- ``hash`` = SHA-256(``prev_hash`` ‖ table name ‖ 0x00 ‖ ``row_digests``); the NUL byte (which no table name
  can contain) keeps "table name, then digests" unambiguous.

Links are serialised by a transaction-level advisory lock taken before the last link is read, so ``seq`` is
gapless and its order is the chain order; a rolled-back statement takes its link with it. A transaction
running at REPEATABLE READ or SERIALIZABLE would read a stale chain head: the primary key on ``seq`` then
refuses the duplicate, so the chain can fail a write but never fork.

The canonical text of an event is ``to_jsonb(row)::text`` under fixed settings (``CANONICAL_SETTINGS``) so it
does not depend on the writer's session: the time zone and float, interval and bytea output styles all change
how a row is rendered. The verifier (``audit.verification``) renders stored rows the same way.

Why ``event_columns``: a later schema migration that adds a column to an event table gives every old event a
new key (``null`` or the column default). The verifier renders each event with the columns its link saw, so
adding a column does not break the chain, while dropping or renaming one (which does change the audit data) is
reported.
"""

from __future__ import annotations

import hashlib

import pgtrigger

CHAIN_TABLE = "audit_chain_link"
CHAIN_FUNCTION = "audit_append_chain_link"
CANONICAL_TEXT_FUNCTION = "audit_canonical_event_text"
# Any constant shared by every writer works; this one spells "EXOAUDIT" in ASCII.
CHAIN_ADVISORY_LOCK_KEY = 0x45584F4155444954
DIGEST_SIZE = 32
HASH_SEPARATOR = b"\x00"
TRANSITION_TABLE = "new_events"

CANONICAL_SETTINGS = (
    ("timezone", "UTC"),
    ("extra_float_digits", "1"),
    ("intervalstyle", "postgres"),
    ("bytea_output", "hex"),
)
_SET_CLAUSES = "\n".join(f"SET {name} = '{value}'" for name, value in CANONICAL_SETTINGS)

# Installed by audit/migrations/0001_initial.py. A trigger function, not a pgtrigger ``func`` body: pgtrigger
# renders trigger functions without SET clauses, and the canonical text needs them. It also ignores
# pgtrigger's per-connection ignore list, so the chain cannot be skipped from application code.
CHAIN_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {CHAIN_FUNCTION}() RETURNS trigger
LANGUAGE plpgsql
{_SET_CLAUSES}
AS $$
DECLARE
    id_column text := TG_ARGV[0];
    ids bigint[];
    digests bytea;
    columns text[];
    head record;
    previous_hash bytea := ''::bytea;
    next_seq bigint := 1;
BEGIN
    EXECUTE format(
        'SELECT array_agg(e.%1$I ORDER BY e.%1$I),'
        ' string_agg(sha256(convert_to(to_jsonb(e)::text, ''UTF8'')), ''''::bytea ORDER BY e.%1$I)'
        ' FROM {TRANSITION_TABLE} e',
        id_column
    ) INTO ids, digests;
    IF ids IS NULL THEN
        RETURN NULL;  -- an INSERT … SELECT that inserted no row
    END IF;
    SELECT array_agg(attname::text ORDER BY attnum) INTO columns
        FROM pg_attribute WHERE attrelid = TG_RELID AND attnum > 0 AND NOT attisdropped;
    PERFORM pg_advisory_xact_lock({CHAIN_ADVISORY_LOCK_KEY});
    SELECT seq, hash INTO head FROM {CHAIN_TABLE} ORDER BY seq DESC LIMIT 1;
    IF FOUND THEN
        next_seq := head.seq + 1;
        previous_hash := head.hash;
    END IF;
    INSERT INTO {CHAIN_TABLE} (seq, table_name, event_ids, event_columns, row_digests, prev_hash, hash, recorded_at)
    VALUES (
        next_seq, TG_TABLE_NAME, ids, columns, digests, previous_hash,
        sha256(previous_hash || convert_to(TG_TABLE_NAME, 'UTF8') || '\\x00'::bytea || digests),
        now()
    );
    RETURN NULL;
END;
$$;
"""  # noqa: S608 - DDL built from module constants only

# The verifier's rendering of one stored event: same settings, minus the columns added after its link.
CANONICAL_TEXT_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {CANONICAL_TEXT_FUNCTION}(event anyelement, later_columns text[]) RETURNS text
LANGUAGE sql STABLE
{_SET_CLAUSES}
AS $$ SELECT (to_jsonb(event) - later_columns)::text $$;
"""

DROP_FUNCTIONS_SQL = f"""
DROP FUNCTION IF EXISTS {CHAIN_FUNCTION}();
DROP FUNCTION IF EXISTS {CANONICAL_TEXT_FUNCTION}(anyelement, text[]);
"""


class ChainLinkTrigger(pgtrigger.Trigger):
    """After each INSERT statement on an audit event table, append one chain link covering its rows."""

    name = "audit_chain"
    when = pgtrigger.After
    operation = pgtrigger.Insert
    level = pgtrigger.Statement
    referencing = pgtrigger.Referencing(new=TRANSITION_TABLE)
    # pgtrigger always installs a function of its own; this one is never executed (see render_execute).
    func = "RETURN NULL;"

    def render_execute(self, model) -> str:
        return f"{CHAIN_FUNCTION}('{model._meta.pk.column}')"


class TruncateProtectTrigger(pgtrigger.Trigger):
    """TRUNCATE fires neither row nor statement UPDATE/DELETE triggers: refuse it separately."""

    name = "protect_truncate"
    when = pgtrigger.Before
    operation = pgtrigger.Truncate
    level = pgtrigger.Statement
    func = "RAISE EXCEPTION 'Audit table % is append-only: TRUNCATE is refused', TG_TABLE_NAME;"


def append_only_protection() -> list[pgtrigger.Trigger]:
    """Refuse UPDATE, DELETE and TRUNCATE (for tables pghistory's ``append_only`` does not cover)."""
    return [
        pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete),
        TruncateProtectTrigger(),
    ]


def chained_event_table_triggers(*, with_append_only: bool = True) -> list[pgtrigger.Trigger]:
    """Triggers of an audit event table: chained on insert, append-only, not truncatable.

    ``with_append_only=False`` for pghistory event models, whose UPDATE/DELETE protection pghistory adds itself.
    """
    protection = append_only_protection() if with_append_only else [TruncateProtectTrigger()]
    return [*protection, ChainLinkTrigger()]


def row_digest(canonical_text: str) -> bytes:
    return hashlib.sha256(canonical_text.encode("utf-8")).digest()


def link_hash(previous_hash: bytes, table_name: str, row_digests: bytes) -> bytes:
    return hashlib.sha256(previous_hash + table_name.encode("utf-8") + HASH_SEPARATOR + row_digests).digest()
