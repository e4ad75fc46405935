"""The hash chain over the audit tables: one link per INSERT statement, verified from the stored rows (R3, R4)."""

from __future__ import annotations

import io
import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, connections, transaction

from audit.chain import DIGEST_SIZE, link_hash
from audit.context import INITIAL_ENTRY, audit_context
from audit.models import AuditChainLink, SecurityEvent
from audit.security import record_security_event
from audit.verification import verify_audit_chain
from trials.models import Trial

EVENT_TABLE = Trial.pgh_event_model._meta.db_table


def make_trials(*codes: str) -> list[Trial]:
    with audit_context(reason=INITIAL_ENTRY):
        return Trial.objects.bulk_create(
            [Trial(protocol_code=code, title="Chain test", phase="II", target_enrollment=10) for code in codes]
        )


def events_of(trial: Trial):
    return Trial.pgh_event_model.objects.filter(pgh_obj_id=trial.pk).order_by("pgh_id")


def execute(sql: str, params=None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def tamper(sql: str, params=None, *, table: str = EVENT_TABLE) -> None:
    """What a database superuser could do: switch the table's triggers off, change it, switch them back on."""
    execute(f'ALTER TABLE "{table}" DISABLE TRIGGER ALL')
    execute(sql, params)
    execute(f'ALTER TABLE "{table}" ENABLE TRIGGER ALL')


@pytest.mark.django_db
@pytest.mark.req("R4")
def test_one_insert_statement_appends_one_link_covering_each_row_in_id_order():
    before = AuditChainLink.objects.order_by("-seq").first()
    trials = make_trials("CH-1", "CH-2", "CH-3")
    link = AuditChainLink.objects.order_by("-seq").first()
    event_ids = [events_of(trial).get().pgh_id for trial in trials]
    assert link.seq == (before.seq + 1 if before else 1)
    assert (link.table_name, link.event_ids) == (EVENT_TABLE, sorted(event_ids))
    assert len(bytes(link.row_digests)) == DIGEST_SIZE * 3
    assert bytes(link.prev_hash) == (bytes(before.hash) if before else b"")
    assert bytes(link.hash) == link_hash(bytes(link.prev_hash), EVENT_TABLE, bytes(link.row_digests))


@pytest.mark.django_db
@pytest.mark.req("R4")
def test_the_chain_verifies_and_the_command_prints_one_ok_line(demo_trial):
    make_trials("CH-OK")
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("OK: audit chain verified")
    result = verify_audit_chain()
    assert result.ok
    assert result.events >= Trial.pgh_event_model.objects.count()
    assert f"{result.links} links" in lines[0]


@pytest.mark.django_db
@pytest.mark.req("R4")
def test_the_canonical_text_does_not_depend_on_the_writers_session_settings():
    execute("SET LOCAL timezone = 'Pacific/Chatham'")
    execute("SET LOCAL extra_float_digits = -3")
    execute("SET LOCAL intervalstyle = 'iso_8601'")
    make_trials("CH-TZ")
    execute("SET LOCAL timezone = 'America/Los_Angeles'")
    assert verify_audit_chain().ok


@pytest.mark.django_db
@pytest.mark.req("R4")
def test_an_altered_event_payload_is_named_by_table_event_id_and_link():
    _first, second = make_trials("CH-T1", "CH-T2")
    target = events_of(second).get()
    link = AuditChainLink.objects.get(table_name=EVENT_TABLE, event_ids__contains=[target.pgh_id])
    tamper("UPDATE trials_trialevent SET title = 'forged' WHERE pgh_id = %s", [target.pgh_id])

    result = verify_audit_chain()

    assert not result.ok
    assert result.finding_count == 1
    finding = result.first_finding
    assert (finding.seq, finding.table, finding.event_id) == (link.seq, EVENT_TABLE, target.pgh_id)
    assert "tampered" in finding.problem
    with pytest.raises(CommandError, match=rf"link seq {link.seq}, table {EVENT_TABLE}, event id {target.pgh_id}"):
        call_command("verify_audit", stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.django_db
@pytest.mark.req("R4")
def test_a_deleted_event_is_reported_missing():
    (trial,) = make_trials("CH-D1")
    target = events_of(trial).get()
    tamper("DELETE FROM trials_trialevent WHERE pgh_id = %s", [target.pgh_id])
    finding = verify_audit_chain().first_finding
    assert (finding.table, finding.event_id) == (EVENT_TABLE, target.pgh_id)
    assert "missing" in finding.problem


@pytest.mark.django_db
@pytest.mark.req("R4")
def test_a_deleted_link_is_reported_as_a_gap():
    make_trials("CH-G1")
    make_trials("CH-G2")
    make_trials("CH-G3")
    middle = AuditChainLink.objects.order_by("-seq")[1]
    tamper("DELETE FROM audit_chain_link WHERE seq = %s", [middle.seq], table="audit_chain_link")
    result = verify_audit_chain()
    gap = next(f for f in result.findings if "gap" in f.problem)
    assert gap.seq == middle.seq + 1
    assert f"links {middle.seq}…{middle.seq}" in gap.problem
    # The deleted link's events are now covered by no link.
    uncovered = {f.event_id for f in result.findings if f.seq is None}
    assert set(middle.event_ids) <= uncovered


@pytest.mark.django_db
@pytest.mark.req("R4")
def test_an_altered_link_hash_is_reported():
    make_trials("CH-H1")
    link = AuditChainLink.objects.order_by("-seq").first()
    tamper(
        "UPDATE audit_chain_link SET row_digests = row_digests || '\\x00'::bytea WHERE seq = %s",
        [link.seq],
        table="audit_chain_link",
    )
    result = verify_audit_chain()
    assert any(f.seq == link.seq and "link altered" in f.problem for f in result.findings)


@pytest.mark.django_db
@pytest.mark.req("R4")
def test_an_event_written_around_the_chain_trigger_is_reported_uncovered():
    (trial,) = make_trials("CH-U1")
    columns = ", ".join(
        f'"{field.column}"' for field in Trial.pgh_event_model._meta.concrete_fields if field.column != "pgh_id"
    )
    copy_event = f"INSERT INTO {EVENT_TABLE} ({columns}) SELECT {columns} FROM {EVENT_TABLE} "  # noqa: S608 - model names
    tamper(copy_event + "WHERE pgh_obj_id = %s", [trial.pk])
    forged = events_of(trial).last()
    finding = verify_audit_chain().first_finding
    assert (finding.seq, finding.table, finding.event_id) == (None, EVENT_TABLE, forged.pgh_id)
    assert "not covered" in finding.problem


@pytest.mark.django_db
@pytest.mark.req("R4")
def test_a_later_schema_migration_adding_a_column_does_not_break_the_chain():
    make_trials("CH-S1")
    execute(f"ALTER TABLE {EVENT_TABLE} ADD COLUMN added_later integer NOT NULL DEFAULT 7")
    make_trials("CH-S2")
    assert verify_audit_chain().ok


@pytest.mark.django_db
@pytest.mark.req("R4", "R8")
def test_security_events_are_chained_too():
    event = record_security_event(SecurityEvent.Kind.EXPORT, user=None, trial="CH", format="csv")
    link = AuditChainLink.objects.order_by("-seq").first()
    assert (link.table_name, link.event_ids) == (SecurityEvent._meta.db_table, [event.pk])
    tamper("UPDATE audit_securityevent SET details = '{}' WHERE id = %s", [event.pk], table="audit_securityevent")
    finding = verify_audit_chain().first_finding
    assert (finding.table, finding.event_id) == ("audit_securityevent", event.pk)


PROTECTED_TABLES = [EVENT_TABLE, "audit_chain_link", "audit_securityevent"]


@pytest.mark.django_db
@pytest.mark.req("R3")
@pytest.mark.parametrize("table", PROTECTED_TABLES)
@pytest.mark.parametrize(
    "statement", ["UPDATE {table} SET {column} = {column}", "DELETE FROM {table}", "TRUNCATE {table}"]
)
def test_audit_tables_refuse_update_delete_and_truncate(table, statement):
    make_trials("CH-P1")
    record_security_event(SecurityEvent.Kind.EXPORT, user=None)
    column = {"audit_chain_link": "table_name", "audit_securityevent": "kind"}.get(table, "title")
    with pytest.raises(DatabaseError, match=r"Cannot update or delete|append-only"), transaction.atomic():
        execute(statement.format(table=table, column=column))


@pytest.mark.django_db(transaction=True)
@pytest.mark.req("R4")
def test_the_chain_verifies_after_concurrent_writes_from_eight_threads():
    threads_count, writes_each = 8, 15
    errors: list[BaseException] = []
    start = threading.Barrier(threads_count, timeout=30)

    def writer(thread: int) -> None:
        try:
            start.wait()
            for write in range(writes_each):
                with transaction.atomic(), audit_context(reason=INITIAL_ENTRY):
                    Trial.objects.create(
                        protocol_code=f"CC-{thread}-{write}", title="Concurrent", phase="II", target_enrollment=1
                    )
                    if write % 3 == 0:  # a second statement in the same transaction: a second link
                        record_security_event(SecurityEvent.Kind.EXPORT, user=None, thread=thread, write=write)
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert not any(thread.is_alive() for thread in threads)

    result = verify_audit_chain()
    assert result.ok, result.summary()
    trials_written = Trial.objects.filter(protocol_code__startswith="CC-").count()
    assert trials_written == threads_count * writes_each
    seqs = list(AuditChainLink.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))


@pytest.mark.req("R3")
def test_no_application_code_switches_audit_triggers_off_with_pgtrigger_ignore():
    from pathlib import Path

    from django.conf import settings

    offenders = [
        str(path.relative_to(settings.BASE_DIR))
        for app in ("audit", "trials", "participants", "analysis", "accounts", "config")
        for path in (Path(settings.BASE_DIR) / app).rglob("*.py")
        if "migrations" not in path.parts and "pgtrigger.ignore" in path.read_text()
    ]
    assert offenders == []
