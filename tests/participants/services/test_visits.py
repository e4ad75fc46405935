"""Recording a visit: what visit_record reads in one query refuses and dates exactly as the separate reads do
(ensure_editable, check_can_enter, baseline_date), and each read is fresh."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied

from audit.context import INITIAL_ENTRY, audit_context
from participants.exceptions import DataValidationError, NotEligibleError, RecordLockedError
from participants.models import Participant, Randomization, Visit
from participants.services.editing import check_can_enter
from participants.services.locking import ensure_editable, participant_lock, participant_unlock, trial_lock
from participants.services.randomization import participant_randomize
from participants.services.visits import MeasurementInput, baseline_date, scheduled_visit, visit_record
from trials.models import Endpoint, Role, Trial, TrialMembership, VisitDefinition

pytestmark = pytest.mark.django_db

DAY0 = dt.date(2026, 1, 12)


@pytest.fixture
def schedule(small_trial):
    """Baseline and week 4, both measuring the trial's score and a second endpoint ranked before it."""
    trial = small_trial.trial
    with audit_context(reason=INITIAL_ENTRY):
        week4 = VisitDefinition.objects.create(
            trial=trial, code="W4", name="Week 4", order=2, target_day=28, window_before_days=3, window_after_days=3
        )
        pain = Endpoint.objects.create(
            trial=trial,
            code="PAIN",
            name="Pain",
            kind="continuous",
            role="secondary",
            direction="lower_better",
            rank=0,
            min_value=0,
            max_value=10,
        )
        score = trial.endpoints.get(code="SCORE")
        score.rank = 1
        score.save()
        baseline = trial.visit_definitions.get(code="BL")
        for definition in (baseline, week4):
            definition.endpoints.set([score, pain])
    return {"BL": baseline, "W4": week4, "endpoints": [pain, score]}


@pytest.fixture
def data_manager(small_trial):
    with audit_context(reason=INITIAL_ENTRY):
        user = get_user_model().objects.create_user("visits-dm")
        TrialMembership.objects.create(user=user, trial=small_trial.trial, role=Role.DATA_MANAGER, may_unlock=True)
    return user


@pytest.fixture
def participant(small_trial):
    (screened,) = small_trial.screen_eligible("A1")
    return screened


def record(participant, definition, user, visit_date, schedule):
    return visit_record(
        participant=participant,
        definition=definition,
        user=user,
        visit_date=visit_date,
        measurements={endpoint.pk: MeasurementInput(value=3) for endpoint in schedule["endpoints"]},
    )


def refusal(call) -> tuple[type[Exception], str]:
    with pytest.raises((RecordLockedError, NotEligibleError, DataValidationError)) as refused:
        call()
    return type(refused.value), refused.value.message


def lock_the_casebook(small_trial, participant, data_manager):
    participant_lock(participant=participant, user=data_manager, reason="clean after SDV")


def lock_the_trial(small_trial, participant, data_manager):
    trial_lock(trial=small_trial.trial, user=data_manager, reason="database lock")


def close_the_database(small_trial, participant, data_manager):
    participant.trial  # noqa: B018 - the participant's trial instance now predates the change
    with audit_context(reason="database locked by coordinator"):
        Trial.objects.filter(pk=small_trial.trial.pk).update(status=Trial.Status.DATABASE_LOCKED)


@pytest.mark.parametrize("lock", [lock_the_casebook, lock_the_trial, close_the_database])
def test_a_locked_casebook_is_refused_as_ensure_editable_refuses_it(
    small_trial, schedule, participant, data_manager, lock
):
    # given
    lock(small_trial, participant, data_manager)
    nurse = small_trial.users["nurse-A1"]
    # when
    refused = refusal(lambda: record(participant, schedule["BL"], nurse, DAY0, schedule))
    # then: the same error and message as the lock check that reads on its own, and nothing saved
    assert refused == refusal(lambda: ensure_editable(participant))
    assert refused[0] is RecordLockedError
    assert not Visit.objects.filter(participant=participant).exists()


def test_a_lifted_lock_takes_effect_on_the_next_recording(small_trial, schedule, participant, data_manager):
    nurse = small_trial.users["nurse-A1"]
    participant_lock(participant=participant, user=data_manager, reason="clean")
    assert refusal(lambda: record(participant, schedule["BL"], nurse, DAY0, schedule))[0] is RecordLockedError
    # when
    participant_unlock(participant=participant, user=data_manager, reason="query answered")
    # then
    assert record(participant, schedule["BL"], nurse, DAY0, schedule).pk is not None


def test_a_participant_at_another_site_is_refused_as_check_can_enter_refuses_it(small_trial, schedule, participant):
    other_nurse = small_trial.users["nurse-B2"]
    refused = refusal(lambda: record(participant, schedule["BL"], other_nurse, DAY0, schedule))
    assert refused == refusal(lambda: check_can_enter(participant, other_nurse))
    assert refused[0] is NotEligibleError


def test_a_role_without_data_entry_is_refused_before_the_lock(small_trial, schedule, participant, data_manager):
    participant_lock(participant=participant, user=data_manager, reason="clean")
    with pytest.raises(PermissionDenied, match=r"does not allow this \(enter_data\)"):
        record(participant, schedule["BL"], small_trial.users["monitor"], DAY0, schedule)


def test_a_visit_already_recorded_is_refused(small_trial, schedule, participant):
    nurse = small_trial.users["nurse-A1"]
    record(participant, schedule["BL"], nurse, DAY0, schedule)
    refused = refusal(lambda: record(participant, schedule["BL"], nurse, DAY0, schedule))
    assert refused == (DataValidationError, "Baseline is already recorded; edit it instead.")


def test_day_0_is_the_baseline_visit_as_baseline_date_reads_it(small_trial, schedule, participant):
    # given: a baseline visit later than randomization
    nurse = small_trial.users["nurse-A1"]
    participant_randomize(participant=participant, user=nurse)
    record(participant, schedule["BL"], nurse, DAY0, schedule)
    # when
    week4 = record(participant, schedule["W4"], nurse, DAY0 + dt.timedelta(days=29), schedule)
    # then
    assert baseline_date(participant) == DAY0
    assert (week4.study_day, week4.in_window) == (29, True)


def test_without_a_baseline_visit_day_0_is_randomization(small_trial, schedule, participant):
    # given: randomized 40 days ago
    nurse = small_trial.users["nurse-A1"]
    randomization = participant_randomize(participant=participant, user=nurse)
    with audit_context(reason="randomized earlier for the test"):
        Randomization.objects.filter(pk=randomization.pk).update(
            randomized_at=randomization.randomized_at - dt.timedelta(days=40)
        )
    participant = Participant.objects.get(pk=participant.pk)
    visit_date = baseline_date(participant) + dt.timedelta(days=28)
    # when
    week4 = record(participant, schedule["W4"], nurse, visit_date, schedule)
    # then
    assert (week4.study_day, week4.in_window) == (28, True)


def test_without_baseline_nor_randomization_a_later_visit_is_refused(small_trial, schedule, participant):
    refused = refusal(lambda: record(participant, schedule["W4"], small_trial.users["nurse-A1"], DAY0, schedule))
    message = f"{participant} has no baseline yet: randomize and record the baseline visit first."
    assert refused == (NotEligibleError, message)


def test_a_scheduled_visit_is_read_with_its_endpoints_in_the_models_order(
    small_trial, schedule, django_assert_num_queries
):
    # when
    with django_assert_num_queries(2):
        definition = scheduled_visit(small_trial.trial, "W4")
    # then: the same definition and endpoints as the ORM reads, held in memory
    assert definition == schedule["W4"]
    with django_assert_num_queries(0):
        endpoints = list(definition.endpoints.all())
    assert endpoints == list(VisitDefinition.objects.get(pk=definition.pk).endpoints.all()) == schedule["endpoints"]


def test_an_unknown_visit_or_one_without_endpoints(small_trial, schedule, small_trial_factory):
    with audit_context(reason=INITIAL_ENTRY):
        schedule["W4"].endpoints.clear()
    other = small_trial_factory(code="TST-OTHER-2", generate_list=False)
    assert scheduled_visit(small_trial.trial, "W12") is None
    assert scheduled_visit(other.trial, "W4") is None  # another trial's code
    assert list(scheduled_visit(small_trial.trial, "W4").endpoints.all()) == []
