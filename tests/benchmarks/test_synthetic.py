"""The synthetic trial generator: reproducible, realistic enough to analyse, and its import file imports."""

from __future__ import annotations

import csv

import pytest

from benchmarks.synthetic import build_trial, write_outcome_csv
from participants.models import AdverseEvent, DoseAdministration, OutcomeMeasurement, Participant, Randomization, Visit


def _content(trial):
    participants = Participant.objects.filter(trial=trial)
    return {
        "participants": sorted(participants.values_list("screening_number", "status", "sex", "birth_year")),
        "arms": sorted(Randomization.objects.filter(trial=trial).values_list("randomization_number", "arm__code")),
        "values": sorted(
            OutcomeMeasurement.objects.filter(visit__participant__trial=trial).values_list(
                "visit__participant__screening_number", "visit__visit_definition__code", "endpoint__code", "value"
            )
        ),
    }


@pytest.mark.django_db
def test_build_trial_creates_the_requested_size_with_every_kind_of_record():
    trial = build_trial(30, seed=3)

    randomized = Randomization.objects.filter(trial=trial)
    assert randomized.count() == 30
    assert Participant.objects.filter(trial=trial, status="screen_failed").exists()
    assert trial.visit_definitions.count() == 12
    assert set(randomized.values_list("arm__code", flat=True)) == {"PBO", "LOW", "HIGH"}
    visits = Visit.objects.filter(participant__trial=trial)
    assert visits.filter(visit_definition__code="BL").count() == 30
    assert visits.filter(visit_definition__code="W40").exists()
    primary = OutcomeMeasurement.objects.filter(visit__participant__trial=trial, endpoint__code="WOMACP")
    assert primary.filter(visit__visit_definition__code="BL").count() == 30
    assert primary.filter(visit__visit_definition__code="W12").count() > 20
    assert DoseAdministration.objects.filter(participant__trial=trial).count() == 30
    assert AdverseEvent.objects.filter(participant__trial=trial).exists()


@pytest.mark.django_db
def test_the_same_seed_gives_the_same_rows_and_another_seed_others():
    first = _content(build_trial(12, seed=5, protocol_code="BENCH-A"))
    again = _content(build_trial(12, seed=5, protocol_code="BENCH-B"))
    other = _content(build_trial(12, seed=6, protocol_code="BENCH-C"))

    assert first == again
    assert first != other


@pytest.mark.django_db
def test_an_existing_code_or_a_too_short_schedule_is_refused_before_writing():
    build_trial(3, protocol_code="BENCH-X")
    with pytest.raises(ValueError, match="exists already"):
        build_trial(3, protocol_code="BENCH-X")
    with pytest.raises(ValueError, match="at least 5 visits"):
        build_trial(3, visits=4, protocol_code="BENCH-Y")
    assert Participant.objects.filter(trial__protocol_code="BENCH-X").count() >= 3
    assert not Participant.objects.filter(trial__protocol_code="BENCH-Y").exists()


@pytest.mark.django_db
def test_outcome_csv_holds_the_requested_rows_of_values_not_stored_yet(tmp_path):
    trial = build_trial(10, follow_up=False)
    assert not Visit.objects.filter(participant__trial=trial, visit_definition__code="W4").exists()

    path = write_outcome_csv(trial, tmp_path / "outcomes.csv", rows=120)

    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 120
    assert len({(r["screening_number"], r["visit"], r["endpoint"]) for r in rows}) == 120
    assert {r["visit"] for r in rows} >= {"W4", "W12", "W40"}
    with pytest.raises(ValueError, match="only 130 outcome values left"):
        write_outcome_csv(trial, tmp_path / "too-many.csv", rows=131)
    assert not (tmp_path / "too-many.csv").exists()
