"""The audit trail is captured by the database: every path is audited, and history is append-only."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import DatabaseError, connection, transaction

from audit.context import INITIAL_ENTRY, audit_context
from audit.exceptions import ReasonForChangeRequiredError
from audit.history import record_history
from participants.models import AdverseEvent
from trials.models import Trial

pytestmark = pytest.mark.django_db


def make_trial(code: str = "TST-AUD-1") -> Trial:
    with audit_context(reason=INITIAL_ENTRY):
        return Trial.objects.create(protocol_code=code, title="Audit test", phase="II", target_enrollment=10)


def events_of(obj):
    return list(type(obj).pgh_event_model.objects.filter(pgh_obj_id=obj.pk).order_by("pgh_id"))


def test_change_without_reason_is_refused_by_the_database():
    # given
    trial = make_trial()
    trial.title = "Changed silently"
    # when / then
    with pytest.raises(DatabaseError, match="reason for change is required"), transaction.atomic():
        trial.save()
    trial.refresh_from_db()
    assert trial.title == "Audit test"
    assert [e.pgh_label for e in events_of(trial)] == ["insert"]


def test_audit_context_turns_the_refusal_into_a_domain_error():
    trial = make_trial()
    with pytest.raises(ReasonForChangeRequiredError), transaction.atomic(), audit_context(reason="  "):
        Trial.objects.filter(pk=trial.pk).update(title="x")


def test_queryset_update_is_audited_per_row_with_old_and_new_values(django_user_model):
    # given
    user = django_user_model.objects.create_user("auditor", password="x-pass-12345")
    first, second = make_trial("TST-AUD-1"), make_trial("TST-AUD-2")
    # when
    with audit_context(reason="sponsor renamed the programme", user=user):
        updated = Trial.objects.filter(pk__in=[first.pk, second.pk]).update(sponsor="New Sponsor")
    # then
    assert updated == 2
    for trial in (first, second):
        update = events_of(trial)[-1]
        assert update.pgh_label == "update"
        assert update.sponsor == "New Sponsor"
        assert update.pgh_context["reason"] == "sponsor renamed the programme"
        assert update.pgh_context["username"] == "auditor"
        assert update.pgh_context["user"] == user.pk
        history = record_history(trial)
        assert history[-1].changes[0].field == "sponsor"
        assert (history[-1].changes[0].old, history[-1].changes[0].new) == ("", "New Sponsor")
        assert history[-1].reason == "sponsor renamed the programme"
        assert history[-1].username == "auditor"


def test_raw_sql_update_is_audited_with_the_context_it_sets():
    trial = make_trial()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('pghistory.context_metadata', %s, true)",
            ['{"reason": "data fix ticket 42", "username": "dba"}'],
        )
        cursor.execute("UPDATE trials_trial SET title = 'Fixed by SQL' WHERE id = %s", [trial.pk])
    update = events_of(trial)[-1]
    assert (update.pgh_label, update.title) == ("update", "Fixed by SQL")
    assert update.pgh_context == {"reason": "data fix ticket 42", "username": "dba"}


def test_raw_sql_update_without_reason_is_refused():
    trial = make_trial()
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE trials_trial SET title = 'sneaky' WHERE id = %s", [trial.pk])


def test_bulk_create_is_audited():
    with audit_context(reason=INITIAL_ENTRY):
        created = Trial.objects.bulk_create(
            [Trial(protocol_code=f"TST-BULK-{i}", title="t", phase="I", target_enrollment=5) for i in range(3)]
        )
    for trial in created:
        assert [e.pgh_label for e in events_of(trial)] == ["insert"]


def test_unchanged_save_needs_no_reason_and_writes_no_event():
    trial = make_trial()
    trial.save()  # nothing changed: no update event, no refusal
    assert [e.pgh_label for e in events_of(trial)] == ["insert"]


def test_delete_needs_a_reason_and_is_recorded():
    trial = make_trial()
    with pytest.raises(DatabaseError), transaction.atomic():
        Trial.objects.filter(pk=trial.pk).delete()
    with audit_context(reason="created in error"):
        Trial.objects.filter(pk=trial.pk).delete()
    labels = [e.pgh_label for e in Trial.pgh_event_model.objects.filter(pgh_obj_id=trial.pk).order_by("pgh_id")]
    assert labels == ["insert", "delete"]


@pytest.mark.parametrize("statement", ["UPDATE {table} SET title = 'forged'", "DELETE FROM {table}"])
def test_audit_tables_refuse_update_and_delete(statement):
    make_trial()
    table = Trial.pgh_event_model._meta.db_table
    with (
        pytest.raises(DatabaseError, match="Cannot update or delete"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement.format(table=table))


def test_orm_cannot_edit_an_audit_event():
    trial = make_trial()
    event = events_of(trial)[0]
    event.title = "forged"
    with pytest.raises(DatabaseError), transaction.atomic():
        event.save()


def test_event_time_is_the_database_utc_clock():
    trial = make_trial()
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        (database_now,) = cursor.fetchone()
    created_at = events_of(trial)[0].pgh_created_at
    assert created_at.utcoffset() == dt.timedelta(0)
    # now() is the transaction start time: the insert happened in this (test) transaction.
    assert created_at == database_now


def test_clinical_change_is_audited_with_reason(demo_trial, coordinator):
    event = AdverseEvent.objects.filter(participant__trial=demo_trial).order_by("pk").first()
    with audit_context(reason="grade corrected after source review", user=coordinator):
        AdverseEvent.objects.filter(pk=event.pk).update(grade=2 if event.grade != 2 else 1)
    last = record_history(event)[-1]
    assert last.action == "update"
    assert last.reason == "grade corrected after source review"
    assert last.username == "demo-coordinator"
    assert [c.field for c in last.changes] == ["grade"]
