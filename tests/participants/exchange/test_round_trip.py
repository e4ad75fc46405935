"""Export → import into a new trial gives the same data."""

from __future__ import annotations

import csv

import pytest
from django.contrib.auth import get_user_model

from audit.context import audit_context
from participants.exchange.exports import export_tables
from participants.exchange.imports import import_outcomes
from participants.models import OutcomeMeasurement, RecordLock
from trials import demo
from trials.models import Trial

pytestmark = pytest.mark.django_db


def measurements(trial, site_code: str) -> set[tuple]:
    rows = OutcomeMeasurement.objects.filter(visit__participant__trial=trial, visit__participant__site__code=site_code)
    return set(
        rows.values_list(
            "visit__participant__screening_number",
            "visit__visit_definition__code",
            "endpoint__code",
            "value",
            "event_occurred",
            "measured_on",
            "not_done_reason",
        )
    )


def test_outcomes_exported_from_one_trial_import_into_a_copy_with_the_same_values(demo_trial, tmp_path):
    nurse = get_user_model().objects.get(username="demo-site")
    original = measurements(demo_trial, "S01")
    # given the first site's measurements exported as CSV
    table = export_tables(trial=demo_trial, user=nurse)["outcome_measurements"]
    exported = [dict(zip(table.columns, row, strict=True)) for row in table.rows()]
    path = tmp_path / "outcomes.csv"
    prefix = f"{demo_trial.protocol_code}-"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["screening_number", "visit", "endpoint", "value", "unit", "measured_on", "event", "not_done_reason"]
        )
        for row in exported:
            event = "" if row["event_occurred"] in (None, "") else ("1" if row["event_occurred"] else "0")
            writer.writerow(
                [
                    row["subject_id"].removeprefix(prefix),
                    row["visit_code"],
                    row["endpoint_code"],
                    "" if row["value"] is None else row["value"],
                    row["unit"],
                    row["measured_on"],
                    event,
                    row["not_done_reason"],
                ]
            )
    # and a new trial with the same design and participants, but no outcome data yet
    with audit_context(reason="test: keep the session's demo trial aside"):
        Trial.objects.filter(pk=demo_trial.pk).update(protocol_code="EXO-OA-201-ORIG", registry_id="")
    copy = demo.seed_demo(seed=demo.DEFAULT_SEED, password="round-trip-pass-1").trial
    with audit_context(reason="test: empty the copy before the import"):
        OutcomeMeasurement.objects.filter(visit__participant__trial=copy).delete()
        RecordLock.objects.filter(trial=copy).update(unlocked_by=nurse, unlock_reason="test", unlocked_at="2026-01-01")
    assert measurements(copy, "S01") == set()
    # when the file is imported into the copy
    job = import_outcomes(trial=copy, user=nurse, path=path, file_name="outcomes.csv", dry_run=False)
    # then every value is back, identical
    assert job.status == "imported", job.errors[:3] or job.message
    assert job.rows_imported == len(exported)
    assert measurements(copy, "S01") == original
