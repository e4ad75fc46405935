"""Site data entry through the pages: every rule of the forms, shown next to the field, nothing half-saved."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.testing import log_in
from audit.context import audit_context
from participants.models import (
    AdverseEvent,
    DataQuery,
    DoseAdministration,
    OutcomeMeasurement,
    Participant,
    ProtocolDeviation,
    Signature,
    Visit,
)
from participants.services.randomization import participant_randomize

pytestmark = pytest.mark.django_db
BASE = "/trials/EXO-OA-201/participants"
PASSWORD = "correct-horse-battery-9"


def login(client, username):
    log_in(client, username)  # verified with MFA for the roles that need it
    return client


@pytest.fixture
def fresh(demo_trial):
    """A newly randomized participant at S01 (no visits yet), as the site would have today."""
    participant = (
        Participant.objects.filter(trial=demo_trial, site__code="S01", status="eligible").order_by("pk").first()
    )
    participant_randomize(participant=participant, user=get_user_model().objects.get(username="demo-site"))
    participant.refresh_from_db()
    return participant


def definition(trial, code):
    return trial.visit_definitions.get(code=code)


def test_screening_then_eligibility_then_randomization_through_the_pages(client, demo_trial):
    login(client, "demo-site")
    response = client.post(
        f"{BASE}/screen/",
        {
            "site": demo_trial.sites.get(code="S01").pk,
            "screened_on": timezone.localdate().isoformat(),
            "sex": "F",
            "birth_year": 1961,
        },
    )
    participant = Participant.objects.filter(trial=demo_trial).order_by("-pk").first()
    assert response.status_code == 302
    assert participant.screening_number.startswith("S01-")
    answers = {
        f"criterion_{c.pk}": "yes" if c.kind == "inclusion" else "no" for c in demo_trial.eligibility_criteria.all()
    }
    form = {
        **answers,
        "consent_date": timezone.localdate().isoformat(),
        "consent_version": "2.1",
        "strata.basepain": ">60",
    }
    # a missing answer: refused with the criterion named, nothing stored
    incomplete = dict(form)
    incomplete.pop(next(iter(answers)))
    body = client.post(f"{BASE}/{participant.pk}/eligibility/", incomplete).content.decode()
    assert "This field is required" in body
    assert not participant.eligibility_answers.exists()
    client.post(f"{BASE}/{participant.pk}/eligibility/", form)
    participant.refresh_from_db()
    assert participant.status == "eligible"
    client.post(f"{BASE}/{participant.pk}/randomize/")
    assert Participant.objects.get(pk=participant.pk).status == "randomized"


def test_screen_failure_records_the_failed_criterion(client, demo_trial):
    login(client, "demo-site")
    client.post(
        f"{BASE}/screen/",
        {
            "site": demo_trial.sites.get(code="S01").pk,
            "screened_on": timezone.localdate().isoformat(),
            "sex": "M",
            "birth_year": 1950,
        },
    )
    participant = Participant.objects.filter(trial=demo_trial).order_by("-pk").first()
    answers = {f"criterion_{c.pk}": "yes" for c in demo_trial.eligibility_criteria.all()}  # exclusions met
    client.post(f"{BASE}/{participant.pk}/eligibility/", {**answers, "consent_date": "", "consent_version": ""})
    participant.refresh_from_db()
    assert participant.status == "screen_failed"
    assert participant.screen_failure_criterion.kind == "exclusion"


def baseline_form(fresh, **overrides):
    pain = fresh.trial.endpoints.get(code="WOMACP")
    biomarker = fresh.trial.endpoints.get(code="EVMIR140")
    values = {
        "visit_date": fresh.randomization.randomized_at.date().isoformat(),
        f"endpoint_{pain.code}": "72",
        f"endpoint_{biomarker.code}": "1.3",
    }
    return {**values, **overrides}


def test_out_of_range_value_is_shown_next_to_its_field_and_nothing_is_lost_or_saved(client, fresh):
    login(client, "demo-site")
    url = f"{BASE}/{fresh.pk}/visits/{definition(fresh.trial, 'BL').pk}/"
    response = client.post(url, baseline_form(fresh, endpoint_WOMACP="140"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "Must be at most 100 points." in body
    assert 'value="140"' in body
    assert 'value="1.3"' in body
    assert not Visit.objects.filter(participant=fresh).exists()
    # fixed, it saves
    assert client.post(url, baseline_form(fresh)).status_code == 302
    visit = Visit.objects.get(participant=fresh, visit_definition__code="BL")
    assert visit.measurements.get(endpoint__code="WOMACP").value == 72


def test_visit_outside_its_window_is_accepted_with_a_warning_and_an_automatic_deviation(client, fresh):
    # given a participant randomized 70 days ago, with the baseline recorded then
    from participants.models import Randomization

    day0 = timezone.localdate() - dt.timedelta(days=70)
    with audit_context(reason="test: randomized ten weeks ago"):
        Randomization.objects.filter(participant=fresh).update(
            randomized_at=dt.datetime.combine(day0, dt.time(9), tzinfo=dt.UTC)
        )
    fresh.refresh_from_db()
    login(client, "demo-site")
    client.post(f"{BASE}/{fresh.pk}/visits/{definition(fresh.trial, 'BL').pk}/", baseline_form(fresh))
    # when week 4 (day 28, window −7/+7) is entered on day 60
    late = day0 + dt.timedelta(days=60)
    response = client.post(
        f"{BASE}/{fresh.pk}/visits/{definition(fresh.trial, 'W4').pk}/",
        {"visit_date": late.isoformat(), "endpoint_WOMACP": "60"},
        follow=True,
    )
    # then it is saved, flagged and a deviation raised
    assert "outside the visit window" in response.content.decode()
    visit = Visit.objects.get(participant=fresh, visit_definition__code="W4")
    assert (visit.study_day, visit.in_window) == (60, False)
    assert ProtocolDeviation.objects.filter(participant=fresh, visit=visit, is_automatic=True).exists()
    # and the schedule shows week 12 due or upcoming, week 4 done out of window
    assert "done (out of window)" in client.get(f"{BASE}/{fresh.pk}/").content.decode()


@pytest.mark.req("R36")
def test_editing_a_value_needs_a_reason_and_a_stale_form_is_refused_with_what_changed(client, fresh):
    login(client, "demo-site")
    url = f"{BASE}/{fresh.pk}/visits/{definition(fresh.trial, 'BL').pk}/"
    client.post(url, baseline_form(fresh))
    visit = Visit.objects.get(participant=fresh, visit_definition__code="BL")
    # without a reason: refused next to the reason field
    body = client.post(url, {**baseline_form(fresh, endpoint_WOMACP="70"), "version": visit.version}).content.decode()
    assert "This field is required" in body
    assert visit.measurements.get(endpoint__code="WOMACP").value == 72
    # first editor saves with a reason
    stale_version = visit.version
    client.post(
        url, {**baseline_form(fresh, endpoint_WOMACP="70"), "version": stale_version, "reason": "transcription error"}
    )
    assert OutcomeMeasurement.objects.get(visit=visit, endpoint__code="WOMACP").value == 70
    # a second editor who opened the form before that save is refused: no lost update
    body = client.post(
        url,
        {
            **baseline_form(
                fresh, endpoint_WOMACP="75", visit_date=(fresh.randomization.randomized_at.date()).isoformat()
            ),
            "version": stale_version,
            "reason": "my correction",
        },
    ).content.decode()
    assert "changed by someone else" in body
    assert OutcomeMeasurement.objects.get(visit=visit, endpoint__code="WOMACP").value == 70
    # the history page shows the old and new value with the reason
    history = client.get(f"{BASE}/{fresh.pk}/history/").content.decode()
    assert "transcription error" in history
    assert re.search(r"<strong>value</strong>: 72(\.0)? → 70(\.0)?<", history)


def ae_form(**overrides):
    today = timezone.localdate()
    values = {
        "term": "Septic arthritis",
        "soc": "10021881",
        "onset_date": today.isoformat(),
        "stop_date": "",
        "grade": "3",
        "hospitalization": "on",
        "causality": "probable",
        "expected": "no",
        "action_taken": "none",
        "outcome": "recovering",
        "site_aware_at": (timezone.now() - dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"),
    }
    return {**values, **overrides}


def test_serious_adverse_event_starts_the_sponsor_and_susar_clocks(client, fresh):
    login(client, "demo-site")
    response = client.post(f"{BASE}/{fresh.pk}/adverse-events/new/", ae_form(), follow=True)
    assert "report it to the sponsor within 24 hours" in response.content.decode()
    event = AdverseEvent.objects.get(participant=fresh, term="Septic arthritis")
    assert event.serious
    assert event.is_susar
    page = client.get(f"{BASE}/{fresh.pk}/adverse-events/{event.pk}/").content.decode()
    assert "Sponsor report (24 h): 21 h" in page or "Sponsor report (24 h): 22 h" in page
    assert "SUSAR to regulators (15 days)" in page
    client.post(f"{BASE}/{fresh.pk}/adverse-events/{event.pk}/notify/")
    assert "reported" in client.get(f"{BASE}/{fresh.pk}/adverse-events/{event.pk}/").content.decode()


@pytest.mark.parametrize(
    ("overrides", "field_message"),
    [
        ({"stop_date": "2020-01-01"}, "The stop date must be on or after the onset date"),
        ({"grade": "5"}, "the outcome must be fatal"),
        ({"soc": ""}, "This field is required"),
        ({"expected": ""}, "This field is required"),
    ],
)
def test_adverse_event_errors_are_specific_and_nothing_is_saved(client, fresh, overrides, field_message):
    login(client, "demo-site")
    body = client.post(f"{BASE}/{fresh.pk}/adverse-events/new/", ae_form(**overrides)).content.decode()
    assert field_message in body
    assert 'value="Septic arthritis"' in body
    assert not AdverseEvent.objects.filter(participant=fresh, term="Septic arthritis").exists()


@pytest.mark.parametrize(
    ("lot_number", "message"),
    [
        ("EXO-UC-2501", "expired on 2025-12-31"),
        ("EXO-UC-2601", "is quarantine, not released"),
        ("NO-SUCH-LOT", "No product lot NO-SUCH-LOT is known"),
    ],
)
def test_dosing_refuses_lots_that_may_not_be_given(client, fresh, lot_number, message):
    login(client, "demo-site")
    body = client.post(
        f"{BASE}/{fresh.pk}/doses/new/",
        {
            "lot_number": lot_number,
            "volume_ml": "2",
            "route": "intra_articular",
            "administered_at": timezone.now().strftime("%Y-%m-%dT%H:%M"),
        },
    ).content.decode()
    assert message in body
    assert not DoseAdministration.objects.filter(participant=fresh).exists()


def test_dosing_from_a_released_lot_computes_particles(client, fresh):
    login(client, "demo-site")
    response = client.post(
        f"{BASE}/{fresh.pk}/doses/new/",
        {
            "lot_number": "exo-uc-2502",
            "volume_ml": "0.2",
            "route": "intra_articular",
            "administered_at": timezone.now().strftime("%Y-%m-%dT%H:%M"),
        },
        follow=True,
    )
    dose = DoseAdministration.objects.get(participant=fresh)
    assert dose.particles_given == pytest.approx(1e9)
    assert "1.0 × 10⁹ particles" in response.content.decode()


def test_dosing_refuses_a_lot_of_another_trial(client, fresh, small_trial_factory):
    from trials.models import ExosomeProduct, ProductLot

    other = small_trial_factory(code="TST-OTHER-LOT", generate_list=False).trial
    with audit_context(reason="initial entry"):
        ProductLot.objects.create(
            product=ExosomeProduct.objects.first(),
            trial=other,
            lot_number="OTHER-1",
            manufactured_on="2026-01-01",
            expires_on="2027-01-01",
            particle_concentration_per_ml=1e10,
            mean_diameter_nm=100,
            modal_diameter_nm=90,
            protein_concentration_ug_per_ml=10,
            endotoxin_eu_per_ml=0.1,
            sterility="pass",
            mycoplasma="pass",
            release_status="released",
            released_on="2026-02-01",
        )
    login(client, "demo-site")
    body = client.post(
        f"{BASE}/{fresh.pk}/doses/new/",
        {
            "lot_number": "OTHER-1",
            "volume_ml": "1",
            "route": "intra_articular",
            "administered_at": timezone.now().strftime("%Y-%m-%dT%H:%M"),
        },
    ).content.decode()
    assert "belongs to another trial" in body


def test_query_lifecycle_between_monitor_and_site(client, fresh):
    login(client, "demo-site")
    client.post(f"{BASE}/{fresh.pk}/visits/{definition(fresh.trial, 'BL').pk}/", baseline_form(fresh))
    measurement = OutcomeMeasurement.objects.get(visit__participant=fresh, endpoint__code="WOMACP")
    # the monitor raises a query on the value
    login(client, "demo-monitor")
    client.post(
        f"{BASE}/{fresh.pk}/queries/",
        {
            "target": f"participants.outcomemeasurement:{measurement.pk}",
            "field_name": "value",
            "message": "72 vs 27 on the source?",
        },
    )
    query = DataQuery.objects.get(participant=fresh)
    assert query.status == "open"
    # the site sees it next to the value, and answers
    login(client, "demo-site")
    visit_page = client.get(f"{BASE}/{fresh.pk}/visits/{definition(fresh.trial, 'BL').pk}/").content.decode()
    assert "72 vs 27 on the source?" in visit_page
    client.post(f"{BASE}/{fresh.pk}/queries/{query.pk}/answer/", {"answer": "Source says 72; no change."})
    # the site cannot close it; the monitor closes it, and can re-open it
    client.post(f"{BASE}/{fresh.pk}/queries/{query.pk}/close/")
    assert DataQuery.objects.get(pk=query.pk).status == "answered"
    login(client, "demo-monitor")
    client.post(f"{BASE}/{fresh.pk}/queries/{query.pk}/close/")
    assert DataQuery.objects.get(pk=query.pk).status == "closed"
    client.post(f"{BASE}/{fresh.pk}/queries/{query.pk}/reopen/", {"message": "Please attach the scan."})
    assert DataQuery.objects.get(pk=query.pk).status == "open"


def test_source_verification_is_cleared_by_a_later_change(client, fresh):
    login(client, "demo-site")
    url = f"{BASE}/{fresh.pk}/visits/{definition(fresh.trial, 'BL').pk}/"
    client.post(url, baseline_form(fresh))
    visit = Visit.objects.get(participant=fresh, visit_definition__code="BL")
    login(client, "demo-monitor")
    client.post(f"{BASE}/{fresh.pk}/verify/{visit.pk}/")
    assert "verified" in client.get(f"{BASE}/{fresh.pk}/").content.decode()
    login(client, "demo-site")
    client.post(url, {**baseline_form(fresh, endpoint_WOMACP="71"), "version": visit.version, "reason": "typo"})
    assert "changed since verification" in client.get(f"{BASE}/{fresh.pk}/").content.decode()


def test_signature_needs_the_password_and_a_later_change_invalidates_it_visibly(client, fresh, demo_password):
    login(client, "demo-site")
    url = f"{BASE}/{fresh.pk}/visits/{definition(fresh.trial, 'BL').pk}/"
    client.post(url, baseline_form(fresh))
    body = client.post(f"{BASE}/{fresh.pk}/sign/", {"meaning": "approval", "password": "wrong"}).content.decode()
    assert not Signature.objects.filter(participant=fresh).exists()
    assert "password" in body.lower()
    client.post(f"{BASE}/{fresh.pk}/sign/", {"meaning": "approval", "password": demo_password})
    detail = client.get(f"{BASE}/{fresh.pk}/").content.decode()
    assert "I approve the data as accurate" in detail
    assert "Invalidated" not in detail
    visit = Visit.objects.get(participant=fresh, visit_definition__code="BL")
    client.post(url, {**baseline_form(fresh, endpoint_WOMACP="69"), "version": visit.version, "reason": "typo"})
    assert "Invalidated" in client.get(f"{BASE}/{fresh.pk}/").content.decode()


@pytest.mark.req("R12")
def test_a_locked_casebook_refuses_edits_everywhere(client, fresh):
    login(client, "demo-datamanager")
    client.post(f"{BASE}/{fresh.pk}/lock/", {"reason": "clean", "action": "lock"})
    login(client, "demo-site")
    body = client.post(
        f"{BASE}/{fresh.pk}/visits/{definition(fresh.trial, 'BL').pk}/", baseline_form(fresh)
    ).content.decode()
    assert "locked" in body
    assert not Visit.objects.filter(participant=fresh).exists()
    body = client.post(f"{BASE}/{fresh.pk}/adverse-events/new/", ae_form()).content.decode()
    assert "locked" in body
    assert not AdverseEvent.objects.filter(participant=fresh, term="Septic arthritis").exists()


@pytest.mark.req("R12")
def test_trial_lock_page_locks_every_casebook(client, fresh):
    login(client, "demo-datamanager")
    client.post("/trials/EXO-OA-201/lock/", {"reason": "database lock for the final analysis", "action": "lock"})
    login(client, "demo-site")
    body = client.post(
        f"{BASE}/{fresh.pk}/doses/new/",
        {
            "lot_number": "EXO-UC-2502",
            "volume_ml": "0.2",
            "route": "intra_articular",
            "administered_at": timezone.now().strftime("%Y-%m-%dT%H:%M"),
        },
    ).content.decode()
    assert "locked" in body
    assert not DoseAdministration.objects.filter(participant=fresh).exists()


@pytest.mark.parametrize("page", ["/trials/EXO-OA-201/", f"{BASE}/", "detail"])
def test_pages_do_a_bounded_number_of_queries_whatever_the_number_of_participants(
    client, demo_trial, fresh, page, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    login(client, "demo-coordinator")
    url = f"{BASE}/{fresh.pk}/" if page == "detail" else page
    with CaptureQueriesContext(connection) as before:
        client.get(url)
    # 40 more randomized participants with visits at the same site
    from trials import demo

    with audit_context(reason="test: more participants"):
        for participant in Participant.objects.filter(trial=demo_trial, status="completed")[:40]:
            Participant.objects.filter(pk=participant.pk).update(status="randomized")
    with django_assert_max_num_queries(len(before.captured_queries)):
        client.get(url)
    assert demo.PROTOCOL_CODE in url or page != "detail"
