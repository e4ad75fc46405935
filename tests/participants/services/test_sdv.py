from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import F

from audit.context import INITIAL_ENTRY, audit_context
from audit.exceptions import ApplicationError
from audit.history import record_history
from participants.models import OutcomeMeasurement, SourceVerification, Visit
from participants.services.locking import participant_lock
from participants.services.sdv import (
    CHANGED_SINCE_VERIFICATION,
    NOT_VERIFIED,
    VERIFIED,
    verification_status,
    verification_statuses,
    visit_content_hash,
    visit_verify,
)
from trials.models import MembershipSite, Role, TrialMembership

pytestmark = pytest.mark.django_db


def add_member(small, username: str, role: str, sites: tuple[str, ...] = ()):
    with audit_context(reason=INITIAL_ENTRY):
        user = get_user_model().objects.create_user(username)
        membership = TrialMembership.objects.create(user=user, trial=small.trial, role=role)
        for code in sites:
            MembershipSite.objects.create(membership=membership, site=small.sites[code])
    return user


def record_visit(small, site_code: str = "A1", *, missed: bool = False) -> tuple[Visit, OutcomeMeasurement | None]:
    (participant,) = small.screen_eligible(site_code)
    with audit_context(reason=INITIAL_ENTRY):
        definition = small.trial.visit_definitions.get(code="BL")
        if missed:
            visit = Visit.objects.create(
                participant=participant, visit_definition=definition, status="missed", missed_reason="Hospitalised"
            )
            return visit, None
        visit = Visit.objects.create(
            participant=participant, visit_definition=definition, visit_date=dt.date(2026, 1, 12), study_day=0
        )
        measurement = OutcomeMeasurement.objects.create(
            visit=visit, endpoint=small.trial.endpoints.get(code="SCORE"), value=42.5, measured_on=visit.visit_date
        )
    return visit, measurement


@pytest.fixture
def visit_and_measurement(small_trial):
    return record_visit(small_trial)


@pytest.fixture
def monitor(small_trial):
    return small_trial.users["monitor"]


def change(queryset, **values) -> None:
    with audit_context(reason="correction after query"):
        assert queryset.update(**values) == 1


def test_monitor_verifies_a_completed_visit(visit_and_measurement, monitor):
    # given
    visit, _ = visit_and_measurement
    assert verification_status(visit) == NOT_VERIFIED
    # when
    verification = visit_verify(visit=visit, user=monitor)
    # then
    verification.refresh_from_db()
    assert verification.visit == visit
    assert verification.verified_by == monitor
    assert verification.content_hash == visit_content_hash(visit)
    assert verification_status(visit) == VERIFIED
    assert record_history(verification)[0].reason == "source data verified"


@pytest.mark.parametrize(
    "changes",
    [
        {"measurement": {"value": 42.0}},
        {"measurement": {"not_done_reason": "Questionnaire incomplete"}},
        {"visit": {"visit_date": dt.date(2026, 1, 13)}},
        {"visit": {"in_window": False}},
    ],
    ids=["measurement value", "measurement reason", "visit date", "visit window flag"],
)
def test_a_later_change_clears_the_verification(visit_and_measurement, monitor, changes):
    # given
    visit, measurement = visit_and_measurement
    visit_verify(visit=visit, user=monitor)
    # when
    if "measurement" in changes:
        change(OutcomeMeasurement.objects.filter(pk=measurement.pk), **changes["measurement"])
    else:
        change(Visit.objects.filter(pk=visit.pk), **changes["visit"])
    # then
    assert verification_status(visit) == CHANGED_SINCE_VERIFICATION


def test_a_measurement_added_later_clears_the_verification(small_trial, visit_and_measurement, monitor):
    # given
    visit, _ = visit_and_measurement
    visit_verify(visit=visit, user=monitor)
    with audit_context(reason=INITIAL_ENTRY):
        endpoint = small_trial.trial.endpoints.create(
            code="PAIN2", name="Pain 2", kind="continuous", role="secondary", direction="lower_better"
        )
    # when
    with audit_context(reason=INITIAL_ENTRY):
        OutcomeMeasurement.objects.create(visit=visit, endpoint=endpoint, value=3.0, measured_on=visit.visit_date)
    # then
    assert verification_status(visit) == CHANGED_SINCE_VERIFICATION


def test_reading_or_bumping_a_version_keeps_the_verification(visit_and_measurement, monitor):
    # given
    visit, measurement = visit_and_measurement
    visit_verify(visit=visit, user=monitor)
    # when: a save that changes no value, only the version counter
    change(OutcomeMeasurement.objects.filter(pk=measurement.pk), version=F("version") + 1)
    # then
    assert verification_status(visit) == VERIFIED


def test_reverifying_renews_the_same_mark(small_trial, visit_and_measurement, monitor):
    # given
    visit, measurement = visit_and_measurement
    first = visit_verify(visit=visit, user=monitor)
    change(OutcomeMeasurement.objects.filter(pk=measurement.pk), value=40.0)
    second_monitor = add_member(small_trial, "sdv-monitor-2", Role.MONITOR, ("A1",))
    # when
    again = visit_verify(visit=visit, user=second_monitor)
    # then
    again.refresh_from_db()
    assert again.pk == first.pk
    assert SourceVerification.objects.filter(visit=visit).count() == 1
    assert again.verified_by == second_monitor
    assert again.verified_at > first.verified_at
    assert again.content_hash != first.content_hash
    assert verification_status(visit) == VERIFIED
    assert record_history(again)[-1].reason == "source data re-verified"


def test_a_missed_visit_cannot_be_verified(small_trial, monitor):
    # given
    visit, _ = record_visit(small_trial, missed=True)
    # when
    with pytest.raises(ApplicationError) as refused:
        visit_verify(visit=visit, user=monitor)
    # then
    assert refused.value.field == "status"
    assert not SourceVerification.objects.filter(visit=visit).exists()


@pytest.mark.parametrize("name", ["nurse-A1", "coord", "stat", "blind-stat", "data manager"])
def test_only_a_monitor_may_verify(small_trial, visit_and_measurement, name):
    # given
    visit, _ = visit_and_measurement
    user = {**small_trial.users, "data manager": add_member(small_trial, "sdv-dm", Role.DATA_MANAGER)}[name]
    # when / then
    with pytest.raises(PermissionDenied):
        visit_verify(visit=visit, user=user)
    assert verification_status(visit) == NOT_VERIFIED


def test_a_monitor_of_another_site_may_not_verify(small_trial, monitor):
    # given: the small trial's monitor covers A1 only
    visit, _ = record_visit(small_trial, "B2")
    # when / then
    with pytest.raises(PermissionDenied):
        visit_verify(visit=visit, user=monitor)
    assert verification_status(visit) == NOT_VERIFIED


def test_a_locked_casebook_can_still_be_verified(small_trial, visit_and_measurement, monitor):
    # given
    visit, _ = visit_and_measurement
    manager = add_member(small_trial, "sdv-dm", Role.DATA_MANAGER)
    participant_lock(participant=visit.participant, user=manager, reason="clean")
    # when
    visit_verify(visit=visit, user=monitor)
    # then
    assert verification_status(visit) == VERIFIED


def test_statuses_of_a_page_of_visits(small_trial, monitor):
    # given: one visit never verified, one verified, one changed since, one missed
    visits = [record_visit(small_trial) for _ in range(3)]
    missed, _ = record_visit(small_trial, missed=True)
    visit_verify(visit=visits[1][0], user=monitor)
    visit_verify(visit=visits[2][0], user=monitor)
    change(OutcomeMeasurement.objects.filter(pk=visits[2][1].pk), value=1.0)
    # when
    statuses = verification_statuses([v for v, _ in visits] + [missed])
    # then
    assert statuses == {
        visits[0][0].pk: NOT_VERIFIED,
        visits[1][0].pk: VERIFIED,
        visits[2][0].pk: CHANGED_SINCE_VERIFICATION,
        missed.pk: NOT_VERIFIED,
    }
    assert verification_statuses([]) == {}


def test_statuses_take_the_same_few_queries_for_few_or_many_visits(
    demo_trial, django_assert_num_queries, django_assert_max_num_queries
):
    # given: the demo trial's visits at S01 (some verified when seeded), one verified and one changed below
    monitor = get_user_model().objects.get(username="demo-monitor")
    visits = list(
        Visit.objects.filter(
            participant__trial=demo_trial,
            participant__site__code="S01",
            status="completed",
            measurements__value__isnull=False,
        )
        .distinct()
        .order_by("pk")[:80]
    )
    verified = visit_verify(visit=visits[0], user=monitor).visit
    visit_verify(visit=visits[2], user=monitor)
    with audit_context(reason="correction after query"):
        OutcomeMeasurement.objects.filter(visit=visits[2], value__isnull=False).update(value=F("value") + 1)
    # when / then: three queries (visits, measurements, verifications), independent of the page size
    with django_assert_num_queries(3):
        few = verification_statuses(visits[:2])
    with django_assert_max_num_queries(3):
        many = verification_statuses(visits)
    # then
    assert len(many) == 80
    assert few[verified.pk] == many[verified.pk] == VERIFIED
    assert many[visits[2].pk] == CHANGED_SINCE_VERIFICATION
    assert many == {visit.pk: verification_status(visit) for visit in visits}


def test_demo_monitor_is_limited_to_the_first_site(demo_trial):
    # given
    monitor = get_user_model().objects.get(username="demo-monitor")
    visit = (
        Visit.objects.filter(participant__trial=demo_trial, participant__site__code="S02", status="completed")
        .order_by("pk")
        .first()
    )
    # when / then
    with pytest.raises(PermissionDenied):
        visit_verify(visit=visit, user=monitor)


def test_content_hash_covers_only_that_visit(small_trial, visit_and_measurement):
    # given
    visit, _ = visit_and_measurement
    other, other_measurement = record_visit(small_trial)
    before = visit_content_hash(visit)
    # when
    change(OutcomeMeasurement.objects.filter(pk=other_measurement.pk), value=0.0)
    # then
    assert visit_content_hash(visit) == before
    assert visit_content_hash(other) != before
