from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied

from audit.context import INITIAL_ENTRY, audit_context
from audit.exceptions import ApplicationError
from audit.history import record_history
from participants.exceptions import DataValidationError, QueryStateError
from participants.models import (
    AdverseEvent,
    DataQuery,
    DoseAdministration,
    OutcomeMeasurement,
    Participant,
    ProtocolDeviation,
    Visit,
)
from participants.services.locking import participant_lock, trial_lock
from participants.services.queries import (
    open_queries,
    queries_by_target,
    query_answer,
    query_close,
    query_raise,
    query_reopen,
)
from trials.models import Role, TrialMembership

pytestmark = pytest.mark.django_db


@dataclass
class Casebook:
    participant: Participant
    visit: Visit
    measurement: OutcomeMeasurement
    adverse_event: AdverseEvent
    dose: DoseAdministration
    deviation: ProtocolDeviation


def build_casebook(small, site_code: str = "A1") -> Casebook:
    (participant,) = small.screen_eligible(site_code)
    trial = small.trial
    with audit_context(reason=INITIAL_ENTRY):
        visit = Visit.objects.create(
            participant=participant,
            visit_definition=trial.visit_definitions.get(code="BL"),
            visit_date=dt.date(2026, 1, 12),
            study_day=0,
        )
        measurement = OutcomeMeasurement.objects.create(
            visit=visit, endpoint=trial.endpoints.get(code="SCORE"), value=42.5, measured_on=dt.date(2026, 1, 12)
        )
        adverse_event = AdverseEvent.objects.create(
            participant=participant,
            term="Headache",
            soc="10029205",
            onset_date=dt.date(2026, 1, 13),
            grade=1,
            causality="not_related",
            expected=True,
            action_taken="none",
            outcome="recovered",
            site_aware_at=dt.datetime(2026, 1, 13, 9, tzinfo=dt.UTC),
        )
        dose = DoseAdministration.objects.create(
            participant=participant,
            visit=visit,
            administered_at=dt.datetime(2026, 1, 12, 10, 30, tzinfo=dt.UTC),
            volume_ml=2.0,
            particles_given=0.0,
            route="intravenous",
            administered_by="Nurse A",
        )
        deviation = ProtocolDeviation.objects.create(
            participant=participant,
            category="procedure",
            description="Blood sample taken 2 h late",
            occurred_on=dt.date(2026, 1, 12),
            detected_on=dt.date(2026, 1, 12),
        )
    return Casebook(participant, visit, measurement, adverse_event, dose, deviation)


@pytest.fixture
def casebook(small_trial):
    return build_casebook(small_trial)


@pytest.fixture
def users(small_trial):
    """The small trial's users, with a trial-wide data manager added."""
    with audit_context(reason=INITIAL_ENTRY):
        manager = get_user_model().objects.create_user("query-dm", first_name="Dana", last_name="Manager")
        TrialMembership.objects.create(user=manager, trial=small_trial.trial, role=Role.DATA_MANAGER)
    small_trial.users["monitor"].first_name = "Mona"
    small_trial.users["monitor"].save()
    return {**small_trial.users, "data manager": manager}


def raise_on_value(casebook, user, message="SCORE differs from the paper questionnaire total.") -> DataQuery:
    return query_raise(
        participant=casebook.participant, user=user, target=casebook.measurement, field_name="value", message=message
    )


def test_query_lifecycle_open_answered_closed_reopened(casebook, users):
    # given
    monitor, nurse = users["monitor"], users["nurse-A1"]
    # when: raised
    query = raise_on_value(casebook, monitor)
    # then
    assert query.status == DataQuery.Status.OPEN
    assert query.target_model == "participants.outcomemeasurement"
    assert query.target_id == casebook.measurement.pk
    assert query.field_name == "value"
    assert query.raised_by == monitor
    # when: answered by the site
    query = query_answer(query=query, user=nurse, answer="Transcription error; corrected to 41.")
    # then
    assert query.status == DataQuery.Status.ANSWERED
    assert query.answered_by == nurse
    assert query.answered_at is not None
    # when: closed by the monitor who raised it
    query = query_close(query=query, user=monitor)
    # then
    assert query.status == DataQuery.Status.CLOSED
    assert query.closed_by == monitor
    assert query.closed_at is not None
    # when: reopened with a follow-up
    query = query_reopen(query=query, user=monitor, message="The source says 40, not 41.")
    # then: the whole conversation reads top to bottom, and the query waits for the site again
    query.refresh_from_db()
    assert query.status == DataQuery.Status.OPEN
    assert query.reopened_count == 1
    assert query.answer == ""
    assert query.answered_at is None
    assert query.closed_at is None
    lines = query.message.splitlines()
    assert lines[0] == "SCORE differs from the paper questionnaire total."
    assert "Transcription error; corrected to 41." in lines
    assert lines[-1] == "The source says 40, not 41."
    assert any(line.startswith("— Answered ") and line.endswith(f"by {nurse.username}:") for line in lines)
    assert any(line.startswith("— Reopened ") and line.endswith("UTC by Mona:") for line in lines)
    # when: answered and closed again, this time by a data manager who did not raise it
    query = query_answer(query=query, user=nurse, answer="Corrected to 40.")
    query = query_close(query=query, user=users["data manager"])
    # then
    assert query.status == DataQuery.Status.CLOSED
    assert query.closed_by == users["data manager"]
    reasons = [entry.reason for entry in record_history(query)]
    assert reasons == [
        "data query raised",
        "data query answered",
        "data query closed",
        "data query reopened",
        "data query answered",
        "data query closed",
    ]


@pytest.mark.parametrize(
    ("target", "field_name"),
    [
        ("participant", "consent_date"),
        ("visit", "visit_date"),
        ("measurement", "value"),
        ("adverse_event", "grade"),
        ("dose", "volume_ml"),
        ("deviation", "description"),
        ("visit", "visit_definition"),
    ],
)
def test_queries_can_target_every_kind_of_casebook_record(casebook, users, target, field_name):
    # given
    record = casebook.participant if target == "participant" else getattr(casebook, target)
    # when
    query = query_raise(
        participant=casebook.participant, user=users["data manager"], target=record, field_name=field_name, message="?"
    )
    # then
    assert (query.target_model, query.target_id, query.field_name) == (
        record._meta.label_lower,
        record.pk,
        field_name,
    )


def test_a_foreign_key_column_name_is_stored_as_the_field_name(casebook, users):
    query = query_raise(
        participant=casebook.participant,
        user=users["monitor"],
        target=casebook.visit,
        field_name="visit_definition_id",
        message="Was this the baseline visit?",
    )
    assert query.field_name == "visit_definition"


def test_a_record_of_another_participant_cannot_be_queried_here(small_trial, casebook, users):
    # given
    other = build_casebook(small_trial)
    # when / then
    for target in (other.participant, other.visit, other.measurement, other.adverse_event, other.dose):
        with pytest.raises(ApplicationError) as refused:
            query_raise(
                participant=casebook.participant, user=users["monitor"], target=target, field_name="id", message="?"
            )
        assert refused.value.field == "target"
    assert not DataQuery.objects.filter(participant=casebook.participant).exists()


def test_a_record_that_is_not_part_of_a_casebook_cannot_be_queried(small_trial, casebook, users):
    # given: trial set-up, and a measurement that was never saved
    unsaved = OutcomeMeasurement(visit=casebook.visit, endpoint=casebook.measurement.endpoint, value=1.0)
    for target in (small_trial.sites["A1"], small_trial.trial, unsaved):
        # when / then
        with pytest.raises(ApplicationError) as refused:
            query_raise(
                participant=casebook.participant, user=users["monitor"], target=target, field_name="name", message="?"
            )
        assert refused.value.field == "target"


@pytest.mark.parametrize("field_name", ["womac", "", "id", "version", "visit_id__x", "measurements", "deviations"])
def test_the_field_must_be_a_recorded_value_of_the_target(casebook, users, field_name):
    # when
    with pytest.raises(DataValidationError) as refused:
        query_raise(
            participant=casebook.participant,
            user=users["monitor"],
            target=casebook.visit,
            field_name=field_name,
            message="?",
        )
    # then
    assert refused.value.field == "field_name"


@pytest.mark.parametrize("message", ["", "  \n "])
def test_a_query_needs_a_message(casebook, users, message):
    with pytest.raises(DataValidationError) as refused:
        raise_on_value(casebook, users["monitor"], message=message)
    assert refused.value.field == "message"


@pytest.mark.parametrize("name", ["nurse-A1", "coord", "stat", "blind-stat"])
def test_only_monitors_and_data_managers_raise_queries(casebook, users, name):
    with pytest.raises(PermissionDenied):
        raise_on_value(casebook, users[name])
    assert not DataQuery.objects.filter(participant=casebook.participant).exists()


def test_a_monitor_of_another_site_may_not_raise_but_a_data_manager_may(small_trial, users):
    # given: the small trial's monitor covers A1 only
    at_b2 = build_casebook(small_trial, "B2")
    # when / then
    with pytest.raises(PermissionDenied):
        raise_on_value(at_b2, users["monitor"])
    assert raise_on_value(at_b2, users["data manager"]).status == DataQuery.Status.OPEN


@pytest.mark.parametrize("name", ["monitor", "data manager", "coord", "stat", "nurse-B2"])
def test_only_site_staff_of_the_participants_site_answer(casebook, users, name):
    # given
    query = raise_on_value(casebook, users["monitor"])
    # when / then
    with pytest.raises(PermissionDenied):
        query_answer(query=query, user=users[name], answer="Checked.")
    query.refresh_from_db()
    assert query.status == DataQuery.Status.OPEN


def test_an_answer_must_say_something(casebook, users):
    query = raise_on_value(casebook, users["monitor"])
    with pytest.raises(DataValidationError) as refused:
        query_answer(query=query, user=users["nurse-A1"], answer="   ")
    assert refused.value.field == "answer"


def test_only_open_queries_can_be_answered(casebook, users):
    # given
    monitor, nurse = users["monitor"], users["nurse-A1"]
    answered = query_answer(query=raise_on_value(casebook, monitor), user=nurse, answer="Checked.")
    closed = query_close(query=raise_on_value(casebook, monitor), user=monitor)
    # when / then
    for query in (answered, closed):
        with pytest.raises(QueryStateError) as refused:
            query_answer(query=query, user=nurse, answer="Again.")
        assert refused.value.field == "status"
    answered.refresh_from_db()
    assert answered.answer == "Checked."


def test_an_open_query_can_be_closed_without_an_answer_but_not_twice(casebook, users):
    # given
    query = raise_on_value(casebook, users["monitor"])
    # when
    closed = query_close(query=query, user=users["monitor"])
    # then
    assert closed.status == DataQuery.Status.CLOSED
    with pytest.raises(QueryStateError):
        query_close(query=closed, user=users["monitor"])


@pytest.mark.parametrize("name", ["nurse-A1", "coord", "stat"])
def test_site_staff_and_other_roles_may_not_close(casebook, users, name):
    # given
    query = query_answer(query=raise_on_value(casebook, users["monitor"]), user=users["nurse-A1"], answer="Checked.")
    # when / then
    with pytest.raises(PermissionDenied):
        query_close(query=query, user=users[name])
    query.refresh_from_db()
    assert query.status == DataQuery.Status.ANSWERED


def test_a_monitor_of_another_site_may_not_close_but_the_raiser_may(small_trial, users):
    # given: a data manager's query at site B2, which the A1 monitor cannot see
    at_b2 = build_casebook(small_trial, "B2")
    query = raise_on_value(at_b2, users["data manager"])
    # when / then
    with pytest.raises(PermissionDenied):
        query_close(query=query, user=users["monitor"])
    assert query_close(query=query, user=users["data manager"]).status == DataQuery.Status.CLOSED


def test_a_raiser_who_left_the_trial_may_not_close(casebook, users):
    # given
    monitor = users["monitor"]
    query = raise_on_value(casebook, monitor)
    with audit_context(reason="monitor reassigned"):
        TrialMembership.objects.filter(user=monitor).update(is_active=False)
    monitor = get_user_model().objects.get(pk=monitor.pk)  # drop the memoised membership
    # when / then
    with pytest.raises(PermissionDenied):
        query_close(query=query, user=monitor)


def test_only_answered_or_closed_queries_can_be_reopened(casebook, users):
    # given
    query = raise_on_value(casebook, users["monitor"])
    # when / then
    with pytest.raises(QueryStateError) as refused:
        query_reopen(query=query, user=users["monitor"], message="Still?")
    assert refused.value.field == "status"
    # and an answered query can be reopened without being closed first
    answered = query_answer(query=query, user=users["nurse-A1"], answer="Checked.")
    assert query_reopen(query=answered, user=users["data manager"], message="Not enough.").reopened_count == 1


@pytest.mark.parametrize("name", ["nurse-A1", "coord", "stat"])
def test_only_query_raisers_may_reopen(casebook, users, name):
    # given
    query = query_close(query=raise_on_value(casebook, users["monitor"]), user=users["monitor"])
    # when / then
    with pytest.raises(PermissionDenied):
        query_reopen(query=query, user=users[name], message="Again.")


def test_reopening_needs_a_message(casebook, users):
    query = query_close(query=raise_on_value(casebook, users["monitor"]), user=users["monitor"])
    with pytest.raises(DataValidationError) as refused:
        query_reopen(query=query, user=users["monitor"], message=" ")
    assert refused.value.field == "message"
    query.refresh_from_db()
    assert query.status == DataQuery.Status.CLOSED


def test_queries_can_be_raised_and_answered_on_a_locked_casebook(small_trial, casebook, users):
    # given
    participant_lock(participant=casebook.participant, user=users["data manager"], reason="clean")
    trial_lock(trial=small_trial.trial, user=users["data manager"], reason="database lock")
    # when
    query = raise_on_value(casebook, users["monitor"])
    query = query_answer(query=query, user=users["nurse-A1"], answer="Value matches the source.")
    # then
    assert query_close(query=query, user=users["monitor"]).status == DataQuery.Status.CLOSED


def test_open_queries_and_queries_by_target_take_one_sql_query(small_trial, casebook, users, django_assert_num_queries):
    # given: two queries on the value, one on the visit date, one closed, and one on another participant
    monitor = users["monitor"]
    first = raise_on_value(casebook, monitor, message="first")
    second = raise_on_value(casebook, monitor, message="second")
    on_date = query_raise(
        participant=casebook.participant, user=monitor, target=casebook.visit, field_name="visit_date", message="?"
    )
    closed = query_close(query=raise_on_value(casebook, monitor, message="closed"), user=monitor)
    raise_on_value(build_casebook(small_trial), monitor)
    participant = Participant.objects.get(pk=casebook.participant.pk)
    # when
    with django_assert_num_queries(1):
        waiting = open_queries(participant)
        assert all(query.raised_by.username for query in waiting)
    with django_assert_num_queries(1):
        grouped = queries_by_target(participant)
        assert all(q.raised_by.username for queries in grouped.values() for q in queries)
    # then
    assert {query.pk for query in waiting} == {first.pk, second.pk, on_date.pk}
    value_key = ("participants.outcomemeasurement", casebook.measurement.pk, "value")
    date_key = ("participants.visit", casebook.visit.pk, "visit_date")
    assert set(grouped) == {value_key, date_key}
    assert [q.pk for q in grouped[value_key]] == [closed.pk, second.pk, first.pk]
    assert [q.pk for q in grouped[date_key]] == [on_date.pk]


def test_demo_monitor_and_investigator_work_a_query_at_their_site_only(demo_trial):
    # given
    users = {
        u.username: u
        for u in get_user_model().objects.filter(username__in=["demo-monitor", "demo-site", "demo-datamanager"])
    }
    here, elsewhere = (
        OutcomeMeasurement.objects.filter(visit__participant__trial=demo_trial, visit__participant__site__code=code)
        .select_related("visit__participant")
        .order_by("pk")
        .first()
        for code in ("S01", "S02")
    )
    # when
    query = query_raise(
        participant=here.visit.participant, user=users["demo-monitor"], target=here, field_name="value", message="?"
    )
    query = query_answer(query=query, user=users["demo-site"], answer="Matches the source.")
    # then
    assert query.status == DataQuery.Status.ANSWERED
    with pytest.raises(PermissionDenied):
        query_raise(
            participant=elsewhere.visit.participant,
            user=users["demo-monitor"],
            target=elsewhere,
            field_name="value",
            message="?",
        )
    elsewhere_query = query_raise(
        participant=elsewhere.visit.participant,
        user=users["demo-datamanager"],
        target=elsewhere,
        field_name="value",
        message="?",
    )
    with pytest.raises(PermissionDenied):
        query_answer(query=elsewhere_query, user=users["demo-site"], answer="Not mine.")
