"""The REST API: authentication, scoping, blinding, uniform errors, reasons and optimistic concurrency."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from participants.models import AdverseEvent, Participant, Visit

pytestmark = pytest.mark.django_db
API = "/api/v1/trials/EXO-OA-201"


def client_for(username: str | None) -> APIClient:
    client = APIClient()
    if username:
        client.force_authenticate(get_user_model().objects.get(username=username))
    return client


def api_routes():
    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern)

    return [route for route in walk(get_resolver().url_patterns, "") if route.startswith("api/v1/")]


@pytest.mark.req("R14")
def test_every_api_operation_refuses_anonymous_users(demo_trial):
    client = APIClient()
    for route in api_routes():
        if route == "api/v1/auth/token/":
            continue
        url = "/" + (
            route.replace("<str:code>", "EXO-OA-201")
            .replace("<str:kind>", "participants")
            .replace("<str:table>", "participants")
            .replace("<str:fmt>", "xlsx")
        )
        for name in (
            "participant_id",
            "visit_id",
            "event_id",
            "query_id",
            "run_id",
            "artifact_id",
            "record_id",
            "job_id",
        ):
            url = url.replace(f"<int:{name}>", "1")
        for method in ("get", "post", "patch"):
            response = getattr(client, method)(url)
            assert response.status_code in (401, 403, 405), (method, url, response.status_code)
            if response.status_code != 405:
                assert response.json()["errors"][0]["code"] in ("not_authenticated", "authentication_failed")


def test_token_is_issued_for_a_correct_password_and_errors_are_uniform(demo_trial, demo_password):
    client = APIClient()
    ok = client.post("/api/v1/auth/token/", {"username": "demo-site", "password": demo_password})
    assert ok.status_code == 200
    token = ok.json()["token"]
    bad = client.post("/api/v1/auth/token/", {"username": "demo-site", "password": "wrong"})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["code"] == "authorization"
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(f"{API}/participants/").status_code == 200


@pytest.mark.req("R15")
def test_site_staff_see_their_site_only_and_get_404_for_others(demo_trial):
    client = client_for("demo-site")
    body = client.get(f"{API}/participants/", {"page_size": 500}).json()
    sites = {row["site"] for row in body["results"]}
    assert sites == {"S01"}
    other = Participant.objects.filter(trial=demo_trial, site__code="S02").first()
    assert client.get(f"{API}/participants/{other.pk}/").status_code == 404


@pytest.mark.req("R16")
def test_blinded_users_get_no_arm_key_unblinded_users_do(demo_trial):
    blinded = client_for("demo-blinded-stat").get(f"{API}/participants/", {"status": "completed"}).json()
    assert all("arm" not in row for row in blinded["results"])
    unblinded = client_for("demo-unblinded-stat").get(f"{API}/participants/", {"status": "completed"}).json()
    assert {row["arm"] for row in unblinded["results"]} <= {"PBO", "LOW", "HIGH"}
    assert client_for("demo-blinded-stat").get(f"{API}/arms/").status_code == 403
    assert client_for("demo-unblinded-stat").get(f"{API}/arms/").status_code == 200
    doses = client_for("demo-monitor").get(f"{API}/doses/").json()["results"]
    assert all("particles_given" not in dose for dose in doses)


@pytest.mark.req("R16", "R26")
def test_ordering_by_arm_is_not_accepted(demo_trial):
    for username in ("demo-blinded-stat", "demo-unblinded-stat"):
        probe = client_for(username).get(f"{API}/participants/", {"ordering": "randomization__arm__code"})
        assert probe.status_code == 400
        assert probe.json()["errors"][0]["field"] == "ordering"


def baseline_payload(participant, pain=72):
    return {
        "visit": "BL",
        "visit_date": participant.randomization.randomized_at.date().isoformat(),
        "measurements": [{"endpoint": "WOMACP", "value": pain}, {"endpoint": "EVMIR140", "value": 1.2}],
    }


@pytest.mark.req("R26")
def test_visit_entry_errors_name_the_field_and_nothing_is_saved(fresh):
    client = client_for("demo-site")
    response = client.post(f"{API}/participants/{fresh.pk}/visits/", baseline_payload(fresh, pain=140), format="json")
    assert response.status_code == 400
    assert {"field": "endpoint_WOMACP", "code": "invalid", "message": "Must be at most 100 points."} in response.json()[
        "errors"
    ]
    assert not Visit.objects.filter(participant=fresh).exists()
    unknown = client.post(
        f"{API}/participants/{fresh.pk}/visits/", {**baseline_payload(fresh), "colour": "blue"}, format="json"
    )
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["field"] == "colour"


@pytest.mark.req("R36")
def test_changes_need_a_reason_and_a_current_version(fresh):
    client = client_for("demo-site")
    created = client.post(f"{API}/participants/{fresh.pk}/visits/", baseline_payload(fresh), format="json")
    assert created.status_code == 201
    visit_id, tag = created.json()["id"], created["ETag"]
    change = {
        "visit_date": baseline_payload(fresh)["visit_date"],
        "measurements": baseline_payload(fresh, 70)["measurements"],
    }
    no_reason = client.patch(f"{API}/visits/{visit_id}/", change, format="json", HTTP_IF_MATCH=tag)
    assert no_reason.status_code == 400
    assert no_reason.json()["errors"][0]["field"] == "reason"
    ok = client.patch(f"{API}/visits/{visit_id}/", {**change, "reason": "typo"}, format="json", HTTP_IF_MATCH=tag)
    assert ok.status_code == 200
    assert ok["ETag"] != tag
    late_change = {
        "visit_date": change["visit_date"],
        "reason": "mine",
        "measurements": baseline_payload(fresh, 75)["measurements"],
    }
    stale = client.patch(f"{API}/visits/{visit_id}/", late_change, format="json", HTTP_IF_MATCH=tag)
    assert stale.status_code == 412
    assert stale.json()["errors"][0]["code"] == "precondition_failed"


@pytest.mark.req("R36")
def test_two_clients_editing_the_same_adverse_event_one_wins_one_gets_412(demo_trial):
    event = (
        AdverseEvent.objects.filter(participant__site__code="S01", participant__status="completed", serious=False)
        .exclude(participant__locks__isnull=False)
        .first()
    )
    first, second = client_for("demo-site"), client_for("demo-site")
    tag = first.get(f"{API}/adverse-events/{event.pk}/")["ETag"]
    assert second.get(f"{API}/adverse-events/{event.pk}/")["ETag"] == tag
    one = first.patch(
        f"{API}/adverse-events/{event.pk}/",
        {"outcome": "recovered", "stop_date": str(event.onset_date), "reason": "resolved"},
        format="json",
        HTTP_IF_MATCH=tag,
    )
    two = second.patch(
        f"{API}/adverse-events/{event.pk}/", {"grade": 2, "reason": "regraded"}, format="json", HTTP_IF_MATCH=tag
    )
    assert sorted([one.status_code, two.status_code]) == [200, 412]
    event.refresh_from_db()
    assert event.version == 2


@pytest.mark.req("R12")
def test_locked_casebook_refuses_writes_with_423(fresh):
    from participants.services.locking import participant_lock

    participant_lock(participant=fresh, user=get_user_model().objects.get(username="demo-datamanager"), reason="clean")
    response = client_for("demo-site").post(
        f"{API}/participants/{fresh.pk}/visits/", baseline_payload(fresh), format="json"
    )
    assert response.status_code == 423


@pytest.mark.req("R7", "R16")
def test_history_masks_treatment_for_blinded_users(demo_trial):
    dose = demo_trial.participants.filter(doses__particles_given__gt=0, site__code="S01").first().doses.first()
    blinded = client_for("demo-monitor").get(f"{API}/history/doses/{dose.pk}/").json()
    values = {c["field"]: c["new"] for c in blinded[0]["changes"]}
    assert values["particles_given"] == "(hidden)"
    unblinded = client_for("demo-unblinded-stat").get(f"{API}/history/doses/{dose.pk}/").json()
    assert {c["field"]: c["new"] for c in unblinded[0]["changes"]}["particles_given"] == dose.particles_given


def test_only_the_unblinded_statistician_requests_runs(demo_trial):
    assert client_for("demo-blinded-stat").post(f"{API}/analyses/", {"kind": "final"}).status_code == 403
    response = client_for("demo-unblinded-stat").post(f"{API}/analyses/", {"kind": "final"})
    assert response.status_code == 201
    assert response.json()["status"] == "queued"


def test_schema_and_self_hosted_docs(client, demo_trial):
    assert client.get("/api/schema/").status_code == 200
    client.force_login(get_user_model().objects.get(username="demo-site"))
    docs = client.get("/api/docs/").content.decode()
    assert "swagger" in docs.lower()
    assert "cdn." not in docs
    assert "unpkg" not in docs


def test_writes_are_audited_with_the_api_user(fresh):
    client = client_for("demo-site")
    created = client.post(
        f"{API}/participants/{fresh.pk}/adverse-events/",
        {
            "term": "Headache",
            "soc": "10029205",
            "onset_date": fresh.randomization.randomized_at.date().isoformat(),
            "grade": 1,
            "causality": "not_related",
            "expected": True,
            "action_taken": "none",
            "outcome": "recovering",
            "site_aware_at": fresh.randomization.randomized_at.isoformat(),
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    event = AdverseEvent.objects.get(pk=created.json()["id"])
    insert = event.pgh_event_model.objects.filter(pgh_obj_id=event.pk).first()
    assert insert.pgh_context["username"] == "demo-site"
