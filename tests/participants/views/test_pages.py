"""Participant and randomization pages: what each role sees and can do."""

from __future__ import annotations

import pytest
from django.core import mail

from accounts.testing import log_in
from operations.outbox import outbox_deliver_pending
from participants.models import Participant, Randomization, UnblindingEvent

pytestmark = pytest.mark.django_db
BASE = "/trials/EXO-OA-201"


def login(client, username):
    log_in(client, username)  # verified with MFA for the roles that need it
    return client


@pytest.mark.req("R15")
def test_site_staff_see_only_their_site(client, demo_trial):
    body = login(client, "demo-site").get(f"{BASE}/participants/", {"q": "S0"}).content.decode()
    assert "S01-0001" in body
    assert "S02-0001" not in body
    other = Participant.objects.get(trial=demo_trial, screening_number="S02-0001")
    assert client.get(f"{BASE}/participants/{other.pk}/").status_code == 404


@pytest.mark.req("R16")
def test_arm_column_only_for_unblinded_roles(client, demo_trial):
    assert "<th>Arm</th>" not in login(client, "demo-blinded-stat").get(f"{BASE}/participants/").content.decode()
    assert "<th>Arm</th>" in login(client, "demo-unblinded-stat").get(f"{BASE}/participants/").content.decode()


def test_site_staff_randomize_an_eligible_participant_after_confirming(client, demo_trial):
    participant = Participant.objects.filter(trial=demo_trial, site__code="S01", status="eligible").first()
    login(client, "demo-site")
    detail = client.get(f"{BASE}/participants/{participant.pk}/").content.decode()
    assert "Randomize…" in detail
    confirm = client.get(f"{BASE}/participants/{participant.pk}/randomize/")
    assert "Confirm randomization" in confirm.content.decode()
    assert not Randomization.objects.filter(participant=participant).exists()  # a GET changes nothing
    response = client.post(f"{BASE}/participants/{participant.pk}/randomize/", follow=True)
    randomization = Randomization.objects.get(participant=participant)
    body = response.content.decode()
    assert f"randomization number {randomization.randomization_number}" in body
    assert randomization.randomization_number == "R0241"
    assert randomization.arm.name not in body  # blinded site staff see the number only


def test_randomizing_an_ineligible_participant_shows_why(client, demo_trial):
    participant = Participant.objects.filter(trial=demo_trial, site__code="S01", status="screen_failed").first()
    response = login(client, "demo-site").post(f"{BASE}/participants/{participant.pk}/randomize/", follow=True)
    assert "only eligible, consented participants can be randomized" in response.content.decode()
    assert not Randomization.objects.filter(participant=participant).exists()


@pytest.mark.req("R19")
def test_emergency_unblinding_flow(client, demo_trial, django_capture_on_commit_callbacks):
    participant = (
        Participant.objects.filter(trial=demo_trial, site__code="S01", randomization__isnull=False)
        .exclude(unblinding_events__isnull=False)
        .first()
    )
    arm = participant.randomization.arm
    login(client, "demo-site")
    assert arm.name not in client.get(f"{BASE}/participants/{participant.pk}/").content.decode()
    refused = client.post(f"{BASE}/participants/{participant.pk}/unblind/", {"reason": "x", "confirm": "on"})
    assert refused.status_code == 200
    assert "at least 10 characters" in refused.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"{BASE}/participants/{participant.pk}/unblind/",
            {"reason": "Severe allergic reaction, ICU asks what was injected", "confirm": "on"},
            follow=True,
        )
    assert arm.name in response.content.decode()
    assert UnblindingEvent.objects.filter(participant=participant).count() == 1
    assert outbox_deliver_pending() == 1
    assert [m.to for m in mail.outbox] == [["demo-coordinator@example.org"]]
    # the coordinator is not unblinded by it
    coordinator_view = login(client, "demo-coordinator").get(f"{BASE}/participants/{participant.pk}/")
    assert arm.name not in coordinator_view.content.decode()


def test_balance_report_counts_every_randomization(client, demo_trial):
    body = login(client, "demo-unblinded-stat").get(f"{BASE}/randomization/balance/").content.decode()
    assert "All strata" in body
    assert '<td class="num">240</td>' in body


@pytest.mark.req("R17")
def test_allocation_page_shows_the_checksum_but_no_assignment(client, demo_trial):
    body = login(client, "demo-unblinded-stat").get(f"{BASE}/randomization/").content.decode()
    assert demo_trial.allocation_list.checksum in body
    assert "Generate the allocation list" not in body


def test_simulation_page_runs_a_seeded_simulation(client, demo_trial):
    login(client, "demo-unblinded-stat")
    query = {"scheme": "permuted_blocks", "n_participants": 240, "n_trials": 200, "seed": 7, "probability": 0.8}
    first = client.get(f"{BASE}/randomization/simulate/", query).content.decode()
    assert "Imbalance per stratum" in first
    assert "site=S01|basepain=&gt;60" in first
    again = client.get(f"{BASE}/randomization/simulate/", query).content.decode()
    assert results_section(again) == results_section(first)  # reproducible (the CSRF token differs)
    bad = client.get(f"{BASE}/randomization/simulate/", {**query, "n_trials": 999999}).content.decode()
    assert "Ensure this value is less than or equal to 5000" in bad


def results_section(body: str) -> str:
    return body[body.index("<h2>Results") :]
