"""Adverse events from a file: the AE form's rules per row, all or nothing, idempotent."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model

from participants.exchange.adverse_event_import import import_adverse_events
from participants.models import AdverseEvent, Participant

pytestmark = pytest.mark.django_db
HEADER = (
    "screening_number,term,soc,onset_date,stop_date,grade,hospitalization,causality,expected,action_taken,"
    "outcome,site_aware_at\n"
)


@pytest.fixture
def nurse(demo_trial):
    return get_user_model().objects.get(username="demo-site")


@pytest.fixture
def participant(demo_trial):
    return Participant.objects.filter(trial=demo_trial, site__code="S01", status="completed").order_by("pk").last()


def write(tmp_path, lines):
    path = tmp_path / "aes.csv"
    path.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def row(participant, **overrides):
    onset = participant.consent_date + dt.timedelta(days=30)
    values = {
        "screening_number": participant.screening_number,
        "term": "Knee stiffness",
        "soc": "Musculoskeletal and connective tissue disorders",
        "onset_date": onset.isoformat(),
        "stop_date": "",
        "grade": "2",
        "hospitalization": "0",
        "causality": "possible",
        "expected": "yes",
        "action_taken": "none",
        "outcome": "recovering",
        "site_aware_at": f"{onset.isoformat()}T09:30:00+00:00",
    }
    values.update(overrides)
    return ",".join(values[name] for name in HEADER.strip().split(","))


def test_each_wrong_row_is_reported_by_row_and_column_and_nothing_is_imported(tmp_path, nurse, participant, demo_trial):
    other_site = Participant.objects.filter(trial=demo_trial, site__code="S02").first()
    before = AdverseEvent.objects.count()
    path = write(
        tmp_path,
        [
            row(participant),
            row(participant, term="Rash", stop_date=participant.consent_date.isoformat()),
            row(participant, term="Fever", grade="7"),
            row(other_site, term="Cough"),
            row(participant, term="Pain", soc="Not a SOC"),
        ],
    )
    job = import_adverse_events(trial=demo_trial, user=nurse, path=path, file_name="aes.csv", dry_run=False)
    assert job.status == "invalid"
    problems = {(error["row"], error["column"]) for error in job.errors}
    assert problems == {(2, "stop_date"), (3, "grade"), (4, "screening_number"), (5, "soc")}
    assert AdverseEvent.objects.count() == before


def test_a_clean_file_imports_once_and_a_reimport_adds_nothing(tmp_path, nurse, participant, demo_trial):
    path = write(
        tmp_path,
        [
            row(participant),
            row(
                participant, term="Joint effusion", grade="3", hospitalization="1", expected="no", causality="probable"
            ),
        ],
    )
    dry = import_adverse_events(trial=demo_trial, user=nurse, path=path, file_name="aes.csv", dry_run=True)
    assert dry.status == "valid"
    assert not AdverseEvent.objects.filter(participant=participant, term="Knee stiffness").exists()
    job = import_adverse_events(trial=demo_trial, user=nurse, path=path, file_name="aes.csv", dry_run=False)
    assert (job.status, job.rows_imported) == ("imported", 2)
    serious = AdverseEvent.objects.get(participant=participant, term="Joint effusion")
    assert serious.serious
    assert serious.pgh_event_model.objects.filter(pgh_obj_id=serious.pk).first().pgh_context["username"] == "demo-site"
    again = import_adverse_events(trial=demo_trial, user=nurse, path=path, file_name="aes.csv", dry_run=False)
    assert (again.status, again.rows_imported, again.rows_unchanged) == ("imported", 0, 2)


def test_wrong_columns_are_refused_up_front(tmp_path, nurse, demo_trial):
    path = tmp_path / "aes.csv"
    path.write_text("screening_number,term,colour\nS01-0001,x,blue\n", encoding="utf-8")
    job = import_adverse_events(trial=demo_trial, user=nurse, path=path, file_name="aes.csv", dry_run=True)
    assert job.status == "invalid"
    assert "Missing columns" in job.errors[0]["message"]
    assert "colour" in job.errors[0]["message"]
