from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import F

from audit.context import INITIAL_ENTRY, audit_context
from audit.history import record_history
from participants.exceptions import DataValidationError, SignatureAuthenticationError
from participants.models import (
    AdverseEvent,
    DoseAdministration,
    EligibilityAnswer,
    OutcomeMeasurement,
    Participant,
    ProtocolDeviation,
    Signature,
    Visit,
)
from participants.services.signatures import (
    casebook_hash,
    casebook_sign,
    signature_is_valid,
    signature_manifestation,
    signatures_invalidate,
)
from trials.models import Role, TrialMembership

pytestmark = pytest.mark.django_db

PASSWORD = "sign-me-0451"


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
            in_window=True,
        )
        measurement = OutcomeMeasurement.objects.create(
            visit=visit,
            endpoint=trial.endpoints.get(code="SCORE"),
            value=42.5,
            unit="points",
            measured_on=dt.date(2026, 1, 12),
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
            visit=visit,
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
def investigator(small_trial):
    nurse = small_trial.users["nurse-A1"]
    nurse.first_name, nurse.last_name = "Ines", "Vestigator"
    nurse.set_password(PASSWORD)
    nurse.save()
    return nurse


def change(queryset, **values) -> None:
    with audit_context(reason="correction after query"):
        assert queryset.update(**values) == 1


# One change per kind of casebook record: each must move the hash.
CHANGES = {
    "participant": lambda c: change(Participant.objects.filter(pk=c.participant.pk), consent_version="1.1"),
    "eligibility answer": lambda c: change(
        EligibilityAnswer.objects.filter(participant=c.participant, criterion__code="EX01"), answer=True
    ),
    "visit": lambda c: change(Visit.objects.filter(pk=c.visit.pk), visit_date=dt.date(2026, 1, 13)),
    "measurement value": lambda c: change(OutcomeMeasurement.objects.filter(pk=c.measurement.pk), value=42.6),
    "measurement float precision": lambda c: change(
        OutcomeMeasurement.objects.filter(pk=c.measurement.pk), value=42.50000000000001
    ),
    "measurement unit": lambda c: change(OutcomeMeasurement.objects.filter(pk=c.measurement.pk), unit="mm"),
    "adverse event": lambda c: change(AdverseEvent.objects.filter(pk=c.adverse_event.pk), grade=2),
    "dose time": lambda c: change(
        DoseAdministration.objects.filter(pk=c.dose.pk), administered_at=dt.datetime(2026, 1, 12, 10, 31, tzinfo=dt.UTC)
    ),
    "deviation": lambda c: change(ProtocolDeviation.objects.filter(pk=c.deviation.pk), severity="major"),
}


@pytest.mark.parametrize("what", CHANGES)
def test_any_change_of_a_casebook_value_changes_the_hash(casebook, what):
    # given
    before = casebook_hash(casebook.participant)
    # when
    CHANGES[what](casebook)
    # then
    assert casebook_hash(casebook.participant) != before


def test_reading_or_bumping_versions_does_not_change_the_hash(casebook):
    # given
    before = casebook_hash(casebook.participant)
    # when: reading everything, and a save that changes no value but the version counter
    list(OutcomeMeasurement.objects.filter(visit__participant=casebook.participant))
    change(Visit.objects.filter(pk=casebook.visit.pk), version=F("version") + 1)
    # then
    assert casebook_hash(casebook.participant) == before
    assert len(before) == 64
    assert set(before) <= set("0123456789abcdef")


def test_hash_reads_the_database_not_a_stale_instance(casebook):
    # given: an instance held in memory across a change made elsewhere
    stale = Participant.objects.get(pk=casebook.participant.pk)
    before = casebook_hash(stale)
    # when
    change(Participant.objects.filter(pk=stale.pk), consent_version="9.9")
    # then
    assert stale.consent_version != "9.9"
    assert casebook_hash(stale) != before


def test_hash_of_another_participant_differs(small_trial, casebook):
    # given
    other = build_casebook(small_trial)
    # then
    assert casebook_hash(other.participant) != casebook_hash(casebook.participant)


def test_hash_of_a_real_casebook_takes_a_fixed_number_of_queries(demo_trial, django_assert_max_num_queries):
    # given: a completed demo participant with a full casebook
    participant = Participant.objects.filter(trial=demo_trial, status="completed").order_by("pk").first()
    # when / then: one query per kind of record, however many records
    with django_assert_max_num_queries(7):
        first = casebook_hash(participant)
    assert casebook_hash(participant) == first


def test_site_investigator_signs_after_reentering_the_password(casebook, investigator):
    # when
    signature = casebook_sign(
        participant=casebook.participant, user=investigator, password=PASSWORD, meaning=Signature.Meaning.APPROVAL
    )
    # then
    signature.refresh_from_db()
    assert signature.signer == investigator
    assert signature.signer_name == "Ines Vestigator"
    assert signature.meaning == "approval"
    assert signature.content_hash == casebook_hash(casebook.participant)
    assert signature.invalidated_at is None
    assert signature_is_valid(signature)
    assert record_history(signature)[0].reason == "casebook signed (approval)"


def test_signer_without_a_full_name_is_printed_by_username(small_trial, casebook):
    # given
    nurse = small_trial.users["nurse-A1"]
    nurse.set_password(PASSWORD)
    nurse.save()
    # when
    signature = casebook_sign(participant=casebook.participant, user=nurse, password=PASSWORD, meaning="review")
    # then
    assert signature.signer_name == nurse.username


@pytest.mark.parametrize("password", ["wrong-password", "", None])
def test_wrong_password_is_refused_and_nothing_is_stored(casebook, investigator, password):
    # when
    with pytest.raises(SignatureAuthenticationError) as refused:
        casebook_sign(participant=casebook.participant, user=investigator, password=password, meaning="approval")
    # then
    assert refused.value.field == "password"
    assert not Signature.objects.filter(participant=casebook.participant).exists()


def test_unknown_meaning_is_refused(casebook, investigator):
    # when
    with pytest.raises(DataValidationError) as refused:
        casebook_sign(participant=casebook.participant, user=investigator, password=PASSWORD, meaning="agree")
    # then
    assert refused.value.field == "meaning"
    assert not Signature.objects.filter(participant=casebook.participant).exists()


@pytest.mark.parametrize("name", ["monitor", "coord", "stat", "blind-stat", "data manager"])
def test_only_site_staff_may_sign(small_trial, casebook, name):
    # given: a correct password, so only the role can be what refuses
    if name == "data manager":
        with audit_context(reason=INITIAL_ENTRY):
            user = get_user_model().objects.create_user("sig-dm")
            TrialMembership.objects.create(user=user, trial=small_trial.trial, role=Role.DATA_MANAGER)
    else:
        user = small_trial.users[name]
    user.set_password(PASSWORD)
    user.save()
    # when / then
    with pytest.raises(PermissionDenied):
        casebook_sign(participant=casebook.participant, user=user, password=PASSWORD, meaning="approval")
    assert not Signature.objects.filter(participant=casebook.participant).exists()


def test_site_staff_of_another_site_may_not_sign(small_trial, casebook):
    # given
    other_nurse = small_trial.users["nurse-B2"]
    other_nurse.set_password(PASSWORD)
    other_nurse.save()
    # when / then
    with pytest.raises(PermissionDenied):
        casebook_sign(participant=casebook.participant, user=other_nurse, password=PASSWORD, meaning="approval")
    assert not Signature.objects.filter(participant=casebook.participant).exists()


def test_later_change_of_one_measurement_value_invalidates_the_signature(casebook, investigator):
    # given
    signature = casebook_sign(participant=casebook.participant, user=investigator, password=PASSWORD, meaning="review")
    # when
    change(OutcomeMeasurement.objects.filter(pk=casebook.measurement.pk), value=41.0)
    # then: invalid at once, before anyone records the invalidation
    assert not signature_is_valid(signature)
    # when: the invalidation is recorded
    count = signatures_invalidate(participant=casebook.participant, reason="SCORE corrected after query")
    # then
    signature.refresh_from_db()
    assert count == 1
    assert signature.invalidated_at is not None
    assert signature.invalidated_reason == "SCORE corrected after query"
    assert record_history(signature)[-1].reason == "SCORE corrected after query"
    assert signatures_invalidate(participant=casebook.participant, reason="again") == 0


def test_invalidation_without_force_leaves_matching_signatures_alone(casebook, investigator):
    # given
    signature = casebook_sign(participant=casebook.participant, user=investigator, password=PASSWORD, meaning="review")
    # when
    count = signatures_invalidate(participant=casebook.participant, reason="nothing changed")
    # then
    signature.refresh_from_db()
    assert count == 0
    assert signature.invalidated_at is None
    assert signature_is_valid(signature)


def test_forced_invalidation_marks_matching_signatures_too(casebook, investigator):
    # given
    signature = casebook_sign(participant=casebook.participant, user=investigator, password=PASSWORD, meaning="review")
    # when
    count = signatures_invalidate(participant=casebook.participant, reason="unlocked: late lab", force=True)
    # then: the content still matches, but a recorded invalidation is final
    signature.refresh_from_db()
    assert count == 1
    assert signature.content_hash == casebook_hash(casebook.participant)
    assert not signature_is_valid(signature)


def test_invalidation_touches_only_that_participants_signatures(small_trial, casebook, investigator):
    # given
    other = build_casebook(small_trial)
    kept = casebook_sign(participant=other.participant, user=investigator, password=PASSWORD, meaning="review")
    casebook_sign(participant=casebook.participant, user=investigator, password=PASSWORD, meaning="review")
    # when
    signatures_invalidate(participant=casebook.participant, reason="unlocked: x", force=True)
    # then
    kept.refresh_from_db()
    assert kept.invalidated_at is None


@pytest.mark.parametrize("reason", ["", "   "])
def test_invalidation_needs_a_reason(casebook, reason):
    with pytest.raises(DataValidationError) as refused:
        signatures_invalidate(participant=casebook.participant, reason=reason, force=True)
    assert refused.value.field == "reason"


def test_demo_investigator_signs_an_s01_casebook(demo_trial, demo_password):
    # given
    user = get_user_model().objects.get(username="demo-site")
    participant = (
        Participant.objects.filter(trial=demo_trial, site__code="S01", status="completed").order_by("pk").first()
    )
    elsewhere = Participant.objects.filter(trial=demo_trial, site__code="S02").order_by("pk").first()
    # when
    signature = casebook_sign(participant=participant, user=user, password=demo_password, meaning="approval")
    # then
    assert signature_is_valid(signature)
    assert signature.signer_name == "Sam Siteworth"
    with pytest.raises(PermissionDenied):
        casebook_sign(participant=elsewhere, user=user, password=demo_password, meaning="approval")


# --- Re-authentication, lockout, manifestation and the database link (R9–R11, R13, R23) ---

AFTER_COOL_OFF = dt.timedelta(hours=1, minutes=1)


def sign_url(casebook) -> str:
    return f"/trials/{casebook.participant.trial.protocol_code}/participants/{casebook.participant.pk}/sign/"


@pytest.fixture
def investigator_client(client, investigator, log_in):
    log_in(client, investigator)
    return client


@pytest.fixture
def enrolled_investigator(investigator):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    TOTPDevice.objects.create(user=investigator, name="Authenticator app", confirmed=True)
    return investigator


def _security_officer_mails():
    from django.core import mail

    return [message for message in mail.outbox if "Account locked out" in message.subject]


@pytest.mark.req("R11")
def test_a_session_alone_never_signs(casebook, investigator_client):
    # when: a logged-in session posts without re-entering the password
    response = investigator_client.post(sign_url(casebook), {"meaning": "approval"})
    # then
    assert response.status_code == 200
    assert "password" in response.context["form"].errors
    assert not Signature.objects.filter(participant=casebook.participant).exists()


@pytest.mark.req("R11")
def test_the_signing_page_signs_with_the_password(casebook, investigator_client):
    response = investigator_client.post(sign_url(casebook), {"meaning": "review", "password": PASSWORD})
    assert response.status_code == 302
    assert Signature.objects.get(participant=casebook.participant).meaning == "review"


@pytest.mark.req("R11")
def test_an_enrolled_signer_must_also_give_a_current_authenticator_code(casebook, enrolled_investigator, totp_code):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.get(user=enrolled_investigator)
    # password alone
    with pytest.raises(SignatureAuthenticationError) as refused:
        casebook_sign(participant=casebook.participant, user=enrolled_investigator, password=PASSWORD, meaning="review")
    assert refused.value.field == "otp_code"
    # password and the app's code
    code = totp_code(device)
    signature = casebook_sign(
        participant=casebook.participant,
        user=enrolled_investigator,
        password=PASSWORD,
        otp_code=code,
        meaning="review",
    )
    assert signature_is_valid(signature)
    # the very same code again is refused (no replay), even if a 30 s step has passed meanwhile
    with pytest.raises(SignatureAuthenticationError):
        casebook_sign(
            participant=casebook.participant,
            user=enrolled_investigator,
            password=PASSWORD,
            otp_code=code,
            meaning="review",
        )


@pytest.mark.req("R11")
def test_the_signing_page_asks_an_enrolled_signer_for_the_code(casebook, enrolled_investigator, client, log_in):
    log_in(client, enrolled_investigator)
    response = client.post(sign_url(casebook), {"meaning": "review", "password": PASSWORD})
    assert response.status_code == 200
    assert "otp_code" in response.context["form"].errors
    assert not Signature.objects.filter(participant=casebook.participant).exists()


@pytest.mark.req("R11", "R25")
def test_after_the_idle_timeout_signing_needs_a_new_login(casebook, investigator_client):
    import time_machine
    from django.conf import settings
    from django.utils import timezone

    later = timezone.now() + dt.timedelta(seconds=settings.SESSION_IDLE_SECONDS + 61)
    with time_machine.travel(later, tick=False):
        response = investigator_client.post(sign_url(casebook), {"meaning": "review", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert not Signature.objects.filter(participant=casebook.participant).exists()


@pytest.mark.req("R13", "R23")
def test_five_wrong_signing_passwords_lock_the_account_and_tell_the_security_officer(
    casebook, investigator, investigator_client
):
    import time_machine
    from django.core.cache import cache
    from django.utils import timezone

    cache.clear()
    # when
    statuses = [
        investigator_client.post(sign_url(casebook), {"meaning": "review", "password": f"guess-{n}"}).status_code
        for n in range(5)
    ]
    # then: locked at the fifth, and even the right password is refused, whatever X-Forwarded-For says
    assert statuses == [200, 200, 200, 200, 429]
    refused = investigator_client.post(
        sign_url(casebook), {"meaning": "review", "password": PASSWORD}, headers={"X-Forwarded-For": "203.0.113.9"}
    )
    assert refused.status_code == 429
    assert not Signature.objects.filter(participant=casebook.participant).exists()
    assert len(_security_officer_mails()) == 1
    # the same lock stops a fresh login with the right password
    login = {"username": investigator.username, "password": PASSWORD}
    assert investigator_client.post("/accounts/login/", login).status_code == 429
    # after the cool-off (which also ended the idle session) the investigator logs in and signs
    with time_machine.travel(timezone.now() + AFTER_COOL_OFF, tick=False):
        assert investigator_client.post("/accounts/login/", login).status_code == 302
        accepted = investigator_client.post(sign_url(casebook), {"meaning": "review", "password": PASSWORD})
    assert accepted.status_code == 302, accepted.content[:300]
    assert accepted["Location"].endswith(f"/participants/{casebook.participant.pk}/"), accepted["Location"]
    assert Signature.objects.filter(participant=casebook.participant).count() == 1
    cache.clear()


@pytest.mark.req("R9")
def test_the_casebook_page_shows_name_utc_iso_time_and_meaning(casebook, investigator, investigator_client):
    signature = casebook_sign(participant=casebook.participant, user=investigator, password=PASSWORD, meaning="review")
    detail = f"/trials/{casebook.participant.trial.protocol_code}/participants/{casebook.participant.pk}/"
    page = investigator_client.get(detail).content.decode()
    iso = signature.signed_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "Ines Vestigator" in page
    assert iso in page
    assert "I have reviewed the data" in page
    assert signature_manifestation(signature) == f"Ines Vestigator, {iso}, I have reviewed the data"


@pytest.mark.req("R10")
@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("participant_id", "other"),
        ("signer_id", "other-user"),
        ("content_hash", "'" + "0" * 64 + "'"),
        ("signer_name", "'Someone Else'"),
        ("meaning", "'approval'"),
        ("signed_at", "now() - interval '1 day'"),
    ],
)
def test_the_database_refuses_to_move_or_rewrite_a_signature(small_trial, casebook, investigator, column, value):
    from django.db import DatabaseError, connection, transaction

    signature = casebook_sign(participant=casebook.participant, user=investigator, password=PASSWORD, meaning="review")
    if value == "other":
        value = str(build_casebook(small_trial).participant.pk)
    elif value == "other-user":
        value = str(small_trial.users["nurse-B2"].pk)
    with (
        audit_context(reason="attempt to transfer a signature"),
        pytest.raises(DatabaseError, match="Cannot update rows"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(f"UPDATE participants_signature SET {column} = {value} WHERE id = %s", [signature.pk])  # noqa: S608
    signature.refresh_from_db()
    assert signature.participant_id == casebook.participant.pk
    assert signature_is_valid(signature)


@pytest.mark.req("R10")
def test_the_database_refuses_to_delete_a_signature(casebook, investigator):
    from django.db import DatabaseError, transaction

    signature = casebook_sign(participant=casebook.participant, user=investigator, password=PASSWORD, meaning="review")
    with (
        audit_context(reason="attempt to excise a signature"),
        pytest.raises(DatabaseError, match="Cannot delete rows"),
        transaction.atomic(),
    ):
        Signature.objects.filter(pk=signature.pk).delete()
    assert Signature.objects.filter(pk=signature.pk).exists()


@pytest.mark.req("R9")
def test_the_manifestation_travels_with_the_api_record_and_the_export(demo_trial, demo_password, tmp_path):
    # given a signed casebook
    from rest_framework.test import APIClient

    from participants.exchange.exports import write_csv_export

    user = get_user_model().objects.get(username="demo-site")
    participant = (
        Participant.objects.filter(trial=demo_trial, site__code="S01", status="completed").order_by("pk").first()
    )
    signature = casebook_sign(participant=participant, user=user, password=demo_password, meaning="review")
    manifestation = signature_manifestation(signature)
    # when
    client = APIClient()
    client.force_authenticate(user)
    detail = client.get(f"/api/v1/trials/{demo_trial.protocol_code}/participants/{participant.pk}/").json()
    write_csv_export(trial=demo_trial, user=user, out_dir=tmp_path)
    # then
    assert manifestation.startswith("Sam Siteworth, ")
    assert "Z, I have reviewed the data" in manifestation
    assert {
        "signer_name": "Sam Siteworth",
        "meaning": "I have reviewed the data",
        "manifestation": manifestation,
        "valid": True,
        "invalidated_at": None,
    }.items() <= detail["signatures"][0].items()
    exported = (tmp_path / "signatures.csv").read_text(encoding="utf-8")
    assert f"{demo_trial.protocol_code}-{participant.screening_number},Sam Siteworth," in exported
    assert ",review," in exported
    assert signature.content_hash in exported
