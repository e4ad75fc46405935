"""Strict API input (R26): every operation that takes a body refuses fields it does not accept, naming them,
and changes nothing; ``?ordering=`` takes only each list's allow-listed fields."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.filters import OrderingFilter
from rest_framework.settings import api_settings
from rest_framework.test import APIClient

from analysis.models import AnalysisRun
from config.api import StrictOrderingFilter
from participants.models import AdverseEvent, DataQuery, ImportJob, Participant, Visit

pytestmark = pytest.mark.django_db
API = "/api/v1/trials/EXO-OA-201"
UNKNOWN = "grdae"  # a typo of "grade": silently ignoring it would save the record without the intended change


def client_for(username: str | None) -> APIClient:
    client = APIClient()
    if username:
        client.force_authenticate(get_user_model().objects.get(username=username))
    return client


def site_participant() -> Participant:
    return Participant.objects.filter(site__code="S01", randomization__isnull=False, locks__isnull=True).first()


def _url(template: str) -> str:
    participant = site_participant()
    ids = {
        "{code}": "EXO-OA-201",
        "{participant_id}": participant.pk,
        "{visit_id}": Visit.objects.filter(participant=participant).first().pk,
        "{event_id}": AdverseEvent.objects.filter(participant__site__code="S01", participant__locks__isnull=True)
        .first()
        .pk,
        "{query_id}": DataQuery.objects.filter(participant__site__code="S01").first().pk,
    }
    for placeholder, value in ids.items():
        template = template.replace(placeholder, str(value))
    return template


# Every operation of the schema with a request body: who may call it, and whether it takes multipart.
INPUT_OPERATIONS = {
    ("POST", "/api/v1/auth/token/"): (None, False),
    ("PATCH", "/api/v1/trials/{code}/adverse-events/{event_id}/"): ("demo-site", False),
    ("POST", "/api/v1/trials/{code}/analyses/"): ("demo-unblinded-stat", False),
    ("POST", "/api/v1/trials/{code}/imports/"): ("demo-site", True),
    ("POST", "/api/v1/trials/{code}/participants/{participant_id}/adverse-events/"): ("demo-site", False),
    ("POST", "/api/v1/trials/{code}/participants/{participant_id}/doses/"): ("demo-site", False),
    ("POST", "/api/v1/trials/{code}/participants/{participant_id}/queries/"): ("demo-datamanager", False),
    ("POST", "/api/v1/trials/{code}/participants/{participant_id}/visits/"): ("demo-site", False),
    ("POST", "/api/v1/trials/{code}/queries/{query_id}/actions/"): ("demo-site", False),
    ("PATCH", "/api/v1/trials/{code}/visits/{visit_id}/"): ("demo-site", False),
}


def schema_operations_with_a_body(client) -> set[tuple[str, str]]:
    schema = client.get("/api/schema/", {"format": "json"}).json()
    return {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    }


@pytest.mark.req("R26")
def test_every_operation_with_a_body_is_checked_here(demo_trial):
    # a new writing endpoint must be added to INPUT_OPERATIONS (and so be proven strict)
    assert schema_operations_with_a_body(APIClient()) == set(INPUT_OPERATIONS)


def _send(method: str, template: str, body: dict, *, multipart: bool, username: str | None):
    if multipart:
        body = {**body, "file": SimpleUploadedFile("outcomes.csv", b"screening_number,visit\n", "text/csv")}
    send = getattr(client_for(username), method.lower())
    return send(_url(template), body, format="multipart" if multipart else "json")


@pytest.mark.req("R26")
@pytest.mark.parametrize(("method", "template"), sorted(INPUT_OPERATIONS), ids=lambda value: str(value))
def test_an_unknown_field_is_refused_by_name_and_nothing_changes(demo_trial, method, template):
    # given
    username, multipart = INPUT_OPERATIONS[(method, template)]
    counts_before = _row_counts()

    # when
    response = _send(method, template, {UNKNOWN: "3"}, multipart=multipart, username=username)

    # then
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert {error["field"] for error in errors} == {UNKNOWN}
    assert errors[0]["code"] == "unknown_field"
    assert "Accepted fields:" in errors[0]["message"]
    assert _row_counts() == counts_before


def _row_counts() -> dict[str, int]:
    models = (AdverseEvent, AnalysisRun, DataQuery, ImportJob, Visit)
    return {model.__name__: model.objects.count() for model in models} | {
        "ae_versions": sum(AdverseEvent.objects.values_list("version", flat=True)),
        "visit_versions": sum(Visit.objects.values_list("version", flat=True)),
    }


@pytest.mark.req("R26", "R36")
def test_a_valid_change_with_a_misspelt_or_read_only_field_is_refused_whole(demo_trial):
    # given an adverse event and its current version
    client = client_for("demo-site")
    event = AdverseEvent.objects.filter(participant__site__code="S01", participant__locks__isnull=True).first()
    url = f"{API}/adverse-events/{event.pk}/"
    tag = client.get(url)["ETag"]
    new_grade = 1 if event.grade != 1 else 2

    # when a real change travels with a typo, a read-only field and a nested-looking key
    response = client.patch(
        url,
        {"grade": new_grade, "reason": "regraded", "seriuos": True, "serious": True, "id": 1},
        format="json",
        HTTP_IF_MATCH=tag,
    )

    # then every offending key is named and the valid part is not applied either
    assert response.status_code == 400
    assert {error["field"] for error in response.json()["errors"]} == {"seriuos", "serious", "id"}
    refreshed = AdverseEvent.objects.get(pk=event.pk)
    assert (refreshed.grade, refreshed.version) == (event.grade, event.version)


@pytest.mark.req("R26")
def test_unknown_fields_inside_nested_measurements_are_refused(demo_trial):
    participant = site_participant()
    visit = Visit.objects.filter(participant=participant).first()
    response = client_for("demo-site").patch(
        f"{API}/visits/{visit.pk}/",
        {
            "visit_date": visit.visit_date.isoformat(),
            "reason": "correction",
            "version": visit.version,
            "measurements": [{"endpoint": "WOMACP", "valeu": 40}],
        },
        format="json",
    )
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["valeu"]
    assert Visit.objects.get(pk=visit.pk).version == visit.version


@pytest.mark.req("R26")
@pytest.mark.parametrize(
    "ordering",
    [
        "(select pg_sleep(5))",
        "screening_number,(select pg_sleep(5))",
        "randomization__arm__code",
        "-site__name",
        "__all__",
        "screening_number;drop table participants_participant",
    ],
)
def test_ordering_outside_the_allow_list_is_refused_at_once(demo_trial, ordering):
    client = client_for("demo-unblinded-stat")
    assert client.get(f"{API}/participants/").status_code == 200  # first request loads the URL conf: not timed
    started = time.monotonic()
    response = client.get(f"{API}/participants/", {"ordering": ordering})
    assert time.monotonic() - started < 1
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "ordering"
    assert "Allowed: screening_number, -screening_number, screened_on" in error["message"]


@pytest.mark.req("R26")
def test_allow_listed_ordering_sorts(demo_trial):
    rows = client_for("demo-blinded-stat").get(f"{API}/participants/", {"ordering": "-screened_on"}).json()["results"]
    dates = [row["screened_on"] for row in rows]
    assert dates == sorted(dates, reverse=True)
    assert len(dates) > 1


def api_views():
    def walk(patterns):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns)
            elif isinstance(pattern, URLPattern) and hasattr(pattern.callback, "cls"):
                yield pattern.callback.cls

    return list(walk(get_resolver().url_patterns))


@pytest.mark.req("R26")
def test_every_list_that_sorts_on_request_uses_an_explicit_allow_list():
    assert not any(issubclass(backend, OrderingFilter) for backend in api_settings.DEFAULT_FILTER_BACKENDS)
    sorting = [
        view for view in api_views() if any(issubclass(b, OrderingFilter) for b in getattr(view, "filter_backends", ()))
    ]
    assert sorting, "the participant list sorts on request; the walk found no view at all"
    for view in sorting:
        assert all(issubclass(b, StrictOrderingFilter) for b in view.filter_backends if issubclass(b, OrderingFilter))
        assert isinstance(view.ordering_fields, list | tuple), view
        assert "__all__" not in view.ordering_fields, view


@pytest.mark.req("R26")
def test_a_dose_route_outside_the_protocol_routes_is_refused(demo_trial):
    # the web form offers the routes as a choice; the API took any text, which the 20-character column refused
    participant = site_participant()
    response = client_for("demo-site").post(
        f"{API}/participants/{participant.pk}/doses/",
        {"lot_number": "x", "volume_ml": 1, "administered_at": "2025-01-01T10:00:00Z", "route": "sideways" * 5},
        format="json",
    )
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["route"]
