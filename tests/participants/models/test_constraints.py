from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError

from audit.context import INITIAL_ENTRY, audit_context
from participants.models import AdverseEvent, DoseAdministration, OutcomeMeasurement, Participant, Randomization

pytestmark = pytest.mark.django_db


@pytest.fixture
def participant(demo_trial):
    return Participant.objects.filter(trial=demo_trial, status="completed").order_by("pk").first()


def ae_kwargs(participant, **overrides):
    values = {
        "participant": participant,
        "term": "Headache",
        "soc": "10029205",
        "onset_date": dt.date(2025, 5, 1),
        "grade": 1,
        "causality": "not_related",
        "expected": True,
        "action_taken": "none",
        "outcome": "recovered",
        "site_aware_at": dt.datetime(2025, 5, 1, 9, tzinfo=dt.UTC),
    }
    return {**values, **overrides}


@pytest.mark.parametrize(
    "overrides",
    [
        {"grade": 0},
        {"grade": 6},
        {"stop_date": dt.date(2025, 4, 30)},  # stops before onset
        {"serious": True},  # serious without any criterion
        {"hospitalization": True},  # a criterion but not marked serious
        {"grade": 5},  # grade 5 is death: outcome must be fatal
        {"outcome": "fatal"},  # fatal outcome must be grade 5
        {"soc": "99999999"},
    ],
)
def test_adverse_event_constraints(participant, overrides):
    event = AdverseEvent(**ae_kwargs(participant, **overrides))
    with pytest.raises(IntegrityError), transaction.atomic(), audit_context(reason=INITIAL_ENTRY):
        event.save()


def test_valid_serious_adverse_event_is_a_susar_when_related_and_unexpected(participant):
    with audit_context(reason=INITIAL_ENTRY):
        event = AdverseEvent.objects.create(
            **ae_kwargs(participant, serious=True, hospitalization=True, grade=3, causality="probable", expected=False)
        )
    assert event.is_related
    assert event.is_susar


def test_measurement_needs_a_value_or_a_reason_not_done(participant):
    visit = participant.visits.filter(status="completed").first()
    endpoint = participant.trial.endpoints.get(code="RESP")
    with pytest.raises(IntegrityError), transaction.atomic(), audit_context(reason=INITIAL_ENTRY):
        OutcomeMeasurement.objects.create(visit=visit, endpoint=endpoint, value=None, measured_on=visit.visit_date)


def test_measurement_is_unique_per_visit_and_endpoint(participant):
    existing = OutcomeMeasurement.objects.filter(visit__participant=participant).first()
    with pytest.raises(IntegrityError), transaction.atomic(), audit_context(reason=INITIAL_ENTRY):
        OutcomeMeasurement.objects.create(
            visit=existing.visit, endpoint=existing.endpoint, value=1, measured_on=existing.measured_on
        )


@pytest.mark.req("R18")
def test_participant_cannot_be_randomized_twice(participant):
    randomization = participant.randomization
    with pytest.raises(IntegrityError), transaction.atomic(), audit_context(reason=INITIAL_ENTRY):
        Randomization.objects.create(
            trial=randomization.trial,
            participant=participant,
            arm=randomization.arm,
            randomization_number="R9999",
            stratum=randomization.stratum,
            randomized_at=randomization.randomized_at,
            randomized_by=randomization.randomized_by,
        )


def test_withdrawal_needs_date_and_reason(participant):
    with pytest.raises(IntegrityError), transaction.atomic(), audit_context(reason="withdrew consent"):
        Participant.objects.filter(pk=participant.pk).update(status="withdrawn")


def test_randomized_participant_must_have_consent(participant):
    with pytest.raises(IntegrityError), transaction.atomic(), audit_context(reason="test"):
        Participant.objects.filter(pk=participant.pk).update(consent_date=None)


def test_dose_without_lot_must_be_placebo(participant):
    with pytest.raises(IntegrityError), transaction.atomic(), audit_context(reason=INITIAL_ENTRY):
        DoseAdministration.objects.create(
            participant=participant,
            lot=None,
            administered_at=dt.datetime(2025, 5, 1, tzinfo=dt.UTC),
            volume_ml=2,
            particles_given=1e9,
            route="intra_articular",
            administered_by="x",
        )


def test_clinical_data_cannot_be_orphaned(participant):
    with pytest.raises(ProtectedError), transaction.atomic(), audit_context(reason="attempted delete"):
        Participant.objects.filter(pk=participant.pk).delete()
    # Below the ORM the foreign keys refuse too.
    with pytest.raises(IntegrityError), transaction.atomic():
        delete_participant_row_with_sql(participant.pk)


def delete_participant_row_with_sql(participant_id: int) -> None:
    with audit_context(reason="attempted delete"), connection.cursor() as cursor:
        # Django declares foreign keys deferred: check now, not at commit.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("DELETE FROM participants_participant WHERE id = %s", [participant_id])
