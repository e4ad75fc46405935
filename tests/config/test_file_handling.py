"""Safe file handling (R27): reports, datasets and exports are served only by database id through authorised
views, as attachments under a server-chosen name with nosniff; path-like ids find nothing; the artifact store
is outside the web root; an oversized import upload is refused with 413 and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from analysis.models import Artifact
from analysis.services import run_artifact_bytes
from audit.exceptions import ApplicationError
from participants.models import ImportJob

# The first test to ask for demo_runs pays for executing two analyses (minutes on a loaded 2-core machine).
pytestmark = [pytest.mark.django_db, pytest.mark.timeout(1200)]
TRIAL = "/trials/EXO-OA-201"
API = "/api/v1/trials/EXO-OA-201"
TRAVERSALS = [
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e/%2e%2e/etc/passwd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
    "....//....//etc/passwd",
    "..\\..\\etc\\passwd",
]


@pytest.fixture
def web_client(log_in):
    """A browser session for a demo user (MFA-verified where the role needs it)."""

    def web_client(username: str) -> Client:
        client = Client()
        log_in(client, get_user_model().objects.get(username=username))
        return client

    return web_client


def api_client(username: str) -> APIClient:
    client = APIClient()
    client.force_authenticate(get_user_model().objects.get(username=username))
    return client


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.req("R27")
@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_like_ids_find_nothing(demo_runs, web_client, path):
    run = demo_runs["final"]
    web, api = web_client("demo-unblinded-stat"), api_client("demo-unblinded-stat")
    probes = [
        (web, f"{TRIAL}/analyses/{run}/artifacts/{path}/"),
        (web, f"{TRIAL}/analyses/{run}/report/{path}/"),
        (web, f"{TRIAL}/exports/csv/{path}/"),
        (web, f"{TRIAL}/exports/{path}/"),
        (web, f"{TRIAL}/imports/{path}/"),
        (api, f"{API}/analyses/{run}/artifacts/{path}/"),
        (api, f"{API}/exports/csv/{path}/"),
        (api, f"{API}/exports/{path}/"),
        (api, f"{API}/history/{path}/1/"),
    ]
    for client, url in probes:
        response = client.get(url)
        assert response.status_code == 404, (url, response.status_code)
        assert b"root:" not in body(response)


@pytest.mark.req("R27")
def test_a_stored_path_that_leaves_the_artifact_store_is_refused(demo_runs):
    # the database row is the only source of the path; even a tampered row cannot read outside the store
    escaping = Artifact(relative_path="../../../../etc/passwd")
    with pytest.raises(ApplicationError, match="outside the artifact store"):
        run_artifact_bytes(escaping)
    absolute = Artifact(relative_path="/etc/passwd")
    with pytest.raises(ApplicationError, match="outside the artifact store"):
        run_artifact_bytes(absolute)


def assert_attachment(response, expected_name_prefix: str):
    assert response.status_code == 200
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert f'filename="{expected_name_prefix}' in disposition
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.req("R27")
def test_downloads_are_attachments_with_server_chosen_names_and_nosniff(demo_runs, web_client):
    run = demo_runs["final"]
    artifact = Artifact.objects.filter(run_id=run, name__endswith=".pdf").first()
    web, api = web_client("demo-unblinded-stat"), api_client("demo-unblinded-stat")

    assert_attachment(web.get(f"{TRIAL}/analyses/{run}/artifacts/{artifact.pk}/"), f"EXO-OA-201-run{run}-")
    assert_attachment(api.get(f"{API}/analyses/{run}/artifacts/{artifact.pk}/"), f"EXO-OA-201-run{run}-")
    assert_attachment(web.get(f"{TRIAL}/exports/odm/"), "EXO-OA-201-odm")
    assert_attachment(api.get(f"{API}/exports/csv/participants/"), "EXO-OA-201-participants")


@pytest.mark.req("R27", "R14")
def test_anonymous_callers_get_no_file(demo_runs):
    run = demo_runs["final"]
    artifact = Artifact.objects.filter(run_id=run).first()
    for url in (f"{TRIAL}/analyses/{run}/artifacts/{artifact.pk}/", f"{TRIAL}/exports/xlsx/", f"{TRIAL}/imports/"):
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse(settings.LOGIN_URL))
    for url in (f"{API}/analyses/{run}/artifacts/{artifact.pk}/", f"{API}/exports/csv/participants/"):
        assert APIClient().get(url).status_code in (401, 403)


@pytest.mark.req("R27")
def test_the_artifact_store_is_outside_the_web_root():
    store = Path(settings.ARTIFACT_ROOT).resolve()
    served = [Path(settings.STATIC_ROOT), *map(Path, getattr(settings, "STATICFILES_DIRS", []))]
    if settings.MEDIA_ROOT:
        served.append(Path(settings.MEDIA_ROOT))
    for folder in served:
        folder = folder.resolve()
        assert not store.is_relative_to(folder), f"{store} is served under {folder}"
        assert not folder.is_relative_to(store), f"{folder} (served) is inside the artifact store"
    assert not settings.MEDIA_URL or settings.MEDIA_URL in ("/", "")  # no media URL publishes files


# --- upload size limit --------------------------------------------------------------------------------------


def stored_import_files() -> set[Path]:
    folder = Path(settings.ARTIFACT_ROOT) / "imports"
    return set(folder.rglob("*")) if folder.exists() else set()


def oversized_csv(limit: int) -> SimpleUploadedFile:
    header = b"screening_number,visit,endpoint,value,unit,measured_on\n"
    row = b"S01-001,W12,WOMACP,40,points,2025-01-01\n"
    return SimpleUploadedFile("outcomes.csv", header + row * (limit // len(row) + 10), content_type="text/csv")


@pytest.mark.req("R27")
def test_an_upload_over_the_limit_is_refused_with_413_by_the_api_and_nothing_is_stored(demo_trial, settings):
    settings.IMPORT_UPLOAD_MAX_BYTES = 2048
    jobs, files = ImportJob.objects.count(), stored_import_files()

    response = api_client("demo-site").post(f"{API}/imports/", {"file": oversized_csv(2048)}, format="multipart")

    assert response.status_code == 413
    [error] = response.json()["errors"]
    assert error["code"] == "too_large"
    assert "files up to 2.0 KB can be imported" in error["message"]
    assert (ImportJob.objects.count(), stored_import_files()) == (jobs, files)


@pytest.mark.req("R27")
def test_an_upload_over_the_limit_is_refused_with_413_by_the_import_page_and_nothing_is_stored(
    demo_trial, settings, web_client
):
    settings.IMPORT_UPLOAD_MAX_BYTES = 2048
    jobs, files = ImportJob.objects.count(), stored_import_files()

    response = web_client("demo-site").post(f"{TRIAL}/imports/", {"file": oversized_csv(2048), "commit": "on"})

    assert response.status_code == 413
    assert "files up to 2.0 KB can be imported" in response.content.decode()
    assert (ImportJob.objects.count(), stored_import_files()) == (jobs, files)


@pytest.mark.req("R27")
def test_an_upload_within_the_limit_is_still_accepted(demo_trial, settings):
    settings.IMPORT_UPLOAD_MAX_BYTES = 64 * 1024
    response = api_client("demo-site").post(f"{API}/imports/", {"file": oversized_csv(2048)}, format="multipart")
    assert response.status_code == 201, response.content
