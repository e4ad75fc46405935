"""Capture is below the ORM (R2): every write path leaves exactly one audit event per affected row."""

from __future__ import annotations

import pytest
from django.db import connection

from audit.context import INITIAL_ENTRY, audit_context
from audit.history import record_history
from trials.models import Trial

pytestmark = pytest.mark.django_db
REASON = "sponsor merger"


def make_trials(prefix: str, count: int = 3) -> list[Trial]:
    with audit_context(reason=INITIAL_ENTRY):
        return Trial.objects.bulk_create(
            [
                Trial(protocol_code=f"{prefix}-{n}", title="Capture", phase="II", target_enrollment=5, sponsor="Old")
                for n in range(count)
            ]
        )


def events_of(trials: list[Trial], label: str):
    return Trial.pgh_event_model.objects.filter(pgh_obj_id__in=[t.pk for t in trials], pgh_label=label)


def queryset_update(trials):
    with audit_context(reason=REASON):
        Trial.objects.filter(pk__in=[t.pk for t in trials]).update(sponsor="New")


def bulk_update(trials):
    for trial in trials:
        trial.sponsor = "New"
    with audit_context(reason=REASON):
        Trial.objects.bulk_update(trials, ["sponsor"])


def raw_sql_update(trials):
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('pghistory.context_metadata', %s, true)", [f'{{"reason": "{REASON}"}}'])
        cursor.execute("UPDATE trials_trial SET sponsor = 'New' WHERE id = ANY(%s)", [[t.pk for t in trials]])


@pytest.mark.req("R2")
def test_bulk_create_writes_one_insert_event_per_row():
    trials = make_trials("CAP-BC", count=5)
    inserts = events_of(trials, "insert")
    assert inserts.count() == 5
    assert sorted(inserts.values_list("pgh_obj_id", flat=True)) == sorted(t.pk for t in trials)
    assert {event.pgh_context["reason"] for event in inserts} == {INITIAL_ENTRY}


@pytest.mark.req("R2")
@pytest.mark.parametrize("write", [queryset_update, bulk_update, raw_sql_update], ids=lambda f: f.__name__)
def test_each_update_path_writes_one_event_per_affected_row_with_old_and_new_values(write):
    trials = make_trials(f"CAP-{write.__name__[:6]}")
    untouched = make_trials("CAP-OTHER", count=1)

    write(trials)

    updates = events_of(trials, "update")
    assert updates.count() == len(trials)
    assert {event.pgh_context["reason"] for event in updates} == {REASON}
    assert events_of(untouched, "update").count() == 0
    for trial in trials:
        (change,) = record_history(trial)[-1].changes
        assert (change.field, change.old, change.new) == ("sponsor", "Old", "New")
