from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied

from participants.exceptions import ScreeningError
from participants.models import Participant
from participants.services.enrollment import participant_record_eligibility, participant_screen

pytestmark = pytest.mark.django_db


def test_screening_numbers_are_consecutive_per_site(small_trial):
    nurse_a = small_trial.users["nurse-A1"]
    numbers = [
        participant_screen(
            trial=small_trial.trial,
            site=small_trial.sites["A1"],
            user=nurse_a,
            screened_on=dt.date(2026, 2, 1),
            sex="M",
            birth_year=1970,
        ).screening_number
        for _ in range(3)
    ]
    assert numbers == ["A1-0001", "A1-0002", "A1-0003"]


def test_screening_is_refused_at_another_sites_and_for_other_roles(small_trial):
    with pytest.raises(ScreeningError):
        participant_screen(
            trial=small_trial.trial,
            site=small_trial.sites["B2"],
            user=small_trial.users["nurse-A1"],
            screened_on=dt.date(2026, 2, 1),
            sex="M",
            birth_year=1970,
        )
    with pytest.raises(PermissionDenied):
        participant_screen(
            trial=small_trial.trial,
            site=small_trial.sites["A1"],
            user=small_trial.users["coord"],
            screened_on=dt.date(2026, 2, 1),
            sex="M",
            birth_year=1970,
        )


def test_an_unmet_criterion_makes_a_screen_failure_with_that_criterion(small_trial):
    nurse = small_trial.users["nurse-A1"]
    participant = participant_screen(
        trial=small_trial.trial,
        site=small_trial.sites["A1"],
        user=nurse,
        screened_on=dt.date(2026, 2, 1),
        sex="F",
        birth_year=1980,
    )
    criteria = {c.code: c for c in small_trial.trial.eligibility_criteria.all()}
    answers = {criteria["IN01"].pk: True, criteria["EX01"].pk: True}  # pregnant: exclusion met
    participant = participant_record_eligibility(
        participant=participant,
        user=nurse,
        answers=answers,
        consent_date=dt.date(2026, 2, 1),
        consent_version="1.0",
        strata={},
    )
    assert participant.status == Participant.Status.SCREEN_FAILED
    assert participant.screen_failure_criterion == criteria["EX01"]


@pytest.mark.parametrize(
    ("answers", "consent", "strata", "message"),
    [
        ({"IN01": True}, dt.date(2026, 2, 1), {"severity": "low"}, "missing: EX01"),
        ({"IN01": True, "EX01": False}, None, {"severity": "low"}, "date of informed consent"),
        ({"IN01": True, "EX01": False}, dt.date(2026, 2, 1), {"severity": "medium"}, "Choose severity"),
    ],
)
def test_incomplete_eligibility_is_refused_and_changes_nothing(small_trial, answers, consent, strata, message):
    nurse = small_trial.users["nurse-A1"]
    participant = participant_screen(
        trial=small_trial.trial,
        site=small_trial.sites["A1"],
        user=nurse,
        screened_on=dt.date(2026, 2, 1),
        sex="F",
        birth_year=1980,
    )
    criteria = {c.code: c.pk for c in small_trial.trial.eligibility_criteria.all()}
    with pytest.raises(ScreeningError, match=message):
        participant_record_eligibility(
            participant=participant,
            user=nurse,
            answers={criteria[k]: v for k, v in answers.items()},
            consent_date=consent,
            consent_version="1.0",
            strata=strata,
        )
    participant.refresh_from_db()
    assert participant.status == Participant.Status.SCREENING
    assert not participant.eligibility_answers.exists()
