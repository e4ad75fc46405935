"""R38: the CONSORT flow comes from the data alone and reconciles, whatever journeys the participants took.

Hypothesis draws a cohort of journeys (screen failure on a named criterion, eligible but not randomized, or
randomized, dosed or not, then ongoing, completed, lost to follow-up or withdrawn for a coded reason). Screening,
eligibility and randomization go through the product's services; doses and dispositions are written as the data
entry stores them. The flow is then derived from the analysis freeze and checked against the journeys drawn and
against its own totals.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis import extract
from analysis.compute import consort_flow
from audit.context import INITIAL_ENTRY, audit_context
from participants.models import DoseAdministration, Participant
from participants.services.enrollment import participant_record_eligibility, participant_screen
from participants.services.randomization import participant_randomize
from tests.participants.conftest import build_small_trial

pytestmark = [pytest.mark.req("R38"), pytest.mark.django_db]

SCREENED_ON = dt.date(2026, 1, 5)
CUTOFF = dt.date(2026, 6, 30)
POOLED = "All participants"
WITHDRAWAL_REASONS = [
    reason for reason in Participant.WithdrawalReason.values if reason != Participant.WithdrawalReason.LOST_TO_FOLLOW_UP
]


@dataclass(frozen=True)
class Journey:
    stage: str  # "failed_inclusion", "failed_exclusion", "not_randomized" or "randomized"
    dosed: bool = False
    ending: str = "ongoing"  # "ongoing", "completed", "lost" or a withdrawal reason


_randomized = st.builds(
    Journey,
    stage=st.just("randomized"),
    dosed=st.booleans(),
    ending=st.sampled_from(["ongoing", "completed", "lost", *WITHDRAWAL_REASONS]),
)
_journeys = st.lists(
    st.one_of(
        st.sampled_from([Journey("failed_inclusion"), Journey("failed_exclusion"), Journey("not_randomized")]),
        _randomized,
    ),
    min_size=1,
    max_size=12,
)
_trial_numbers = itertools.count(1)


def _live(small, journey: Journey) -> tuple[Participant, str | None]:
    """Take one person through screening (and randomization) with the services; returns them and their arm."""
    nurse = small.users["nurse-A1"]
    trial = small.trial
    person = participant_screen(
        trial=trial, site=small.sites["A1"], user=nurse, screened_on=SCREENED_ON, sex="F", birth_year=1960
    )
    answers = {c.pk: c.kind == "inclusion" for c in trial.eligibility_criteria.all()}
    failed_code = {"failed_inclusion": "IN01", "failed_exclusion": "EX01"}.get(journey.stage)
    for criterion in trial.eligibility_criteria.all():
        if criterion.code == failed_code:
            answers[criterion.pk] = not answers[criterion.pk]
    person = participant_record_eligibility(
        participant=person,
        user=nurse,
        answers=answers,
        consent_date=SCREENED_ON,
        consent_version="1.0",
        strata={"severity": "low"},
    )
    if journey.stage != "randomized":
        return person, None
    randomization = participant_randomize(participant=person, user=nurse)
    with audit_context(reason=INITIAL_ENTRY, user=nurse):
        randomized_on = timezone.localdate(randomization.randomized_at)
        if journey.dosed:
            DoseAdministration.objects.create(
                participant=person,
                administered_at=randomization.randomized_at,
                volume_ml=2.0,
                particles_given=0,
                route="intravenous",
                administered_by="Nurse A1",
            )
        if journey.ending == "completed":
            person.status, person.completed_on = Participant.Status.COMPLETED, randomized_on
        elif journey.ending == "lost":
            person.status = Participant.Status.LOST_TO_FOLLOW_UP
            person.withdrawn_on, person.withdrawal_reason = (
                randomized_on,
                Participant.WithdrawalReason.LOST_TO_FOLLOW_UP,
            )
        elif journey.ending != "ongoing":
            person.status = Participant.Status.WITHDRAWN
            person.withdrawn_on, person.withdrawal_reason = randomized_on, journey.ending
        person.save()
    return person, randomization.arm.code


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(journeys=_journeys)
def test_the_consort_flow_counts_every_journey_once_and_reconciles(journeys):
    small = build_small_trial(code=f"TST-R38-{next(_trial_numbers)}", slots_target=40)
    arms = [_live(small, journey)[1] for journey in journeys]
    cutoff = max(CUTOFF, timezone.localdate())  # randomized_at is the real clock: keep everyone inside the cut
    datasets = extract.freeze(small.trial, cutoff)
    pooled = consort_flow(datasets, grouped=False)
    by_arm = consort_flow(datasets, grouped=True)
    randomized = [(journey, arm) for journey, arm in zip(journeys, arms, strict=True) if arm is not None]

    # Top of the flow: everyone assessed is either excluded, with the failed criterion as the reason, or randomized.
    assert pooled["assessed"] == len(journeys)
    assert pooled["randomized"] == len(randomized)
    assert sum(pooled["excluded"].values()) + pooled["randomized"] == pooled["assessed"]
    failed_codes = [j.stage for j in journeys if j.stage.startswith("failed_")]
    assert sum(n for reason, n in pooled["excluded"].items() if reason.startswith(("IN01", "EX01"))) == len(
        failed_codes
    )
    assert all(reason.strip() for reason in pooled["excluded"])  # every exclusion carries a coded reason
    waiting = sum(j.stage == "not_randomized" for j in journeys)
    assert pooled["excluded"].get("Eligible, not randomized by the cut-off", 0) == waiting

    # Allocation: randomized = Σ allocated, per arm exactly the arms the services assigned.
    expected_by_arm: dict[str, list[Journey]] = {}
    for journey, arm in randomized:
        expected_by_arm.setdefault(arm, []).append(journey)
    assert sum(by_arm["allocated"].values()) == by_arm["randomized"] == len(randomized)
    assert by_arm["allocated"] == {arm: len(group) for arm, group in expected_by_arm.items()}
    assert pooled["allocated"] == ({POOLED: len(randomized)} if randomized else {})

    for arm, group in expected_by_arm.items():
        # Received allocated intervention: exactly those dosed; the rest did not receive it.
        assert by_arm["received"][arm] == sum(j.dosed for j in group)
        # Follow-up: lost and discontinued (by coded reason) are the journeys that ended so, and no more.
        assert by_arm["lost_to_follow_up"][arm] == sum(j.ending == "lost" for j in group)
        withdrawn = {reason: sum(j.ending == reason for j in group) for reason in WITHDRAWAL_REASONS}
        assert by_arm["discontinued"][arm] == {r.upper(): n for r, n in withdrawn.items() if n}
        # Analysis (ITT): allocated = analysed + excluded from analysis, and nobody randomized is excluded.
        assert by_arm["analysed"][arm] == by_arm["allocated"][arm] == len(group)

    # The pooled flow (the only one the blinded open report draws) names no arm anywhere.
    for stage in ("allocated", "received", "lost_to_follow_up", "discontinued", "analysed"):
        assert set(pooled[stage]) <= {POOLED}
        pooled_total = sum(
            sum(value.values()) if isinstance(value, dict) else value for value in pooled[stage].values()
        )
        arm_total = sum(sum(value.values()) if isinstance(value, dict) else value for value in by_arm[stage].values())
        assert pooled_total == arm_total, stage
    flow_text = str(pooled)
    assert not [code for code in small.trial.arms.values_list("code", flat=True) if code in flow_text]
