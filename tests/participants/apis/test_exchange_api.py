"""Bulk import and exports through the API and the pages."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from participants.models import ImportJob, OutcomeMeasurement, Participant

pytestmark = pytest.mark.django_db
API = "/api/v1/trials/EXO-OA-201"


def client_for(username):
    client = APIClient()
    client.force_authenticate(get_user_model().objects.get(username=username))
    return client


def outcome_file(rows: list[str]) -> SimpleUploadedFile:
    text = "screening_number,visit,endpoint,value,unit,measured_on\n" + "\n".join(rows) + "\n"
    return SimpleUploadedFile("outcomes.csv", text.encode(), content_type="text/csv")


@pytest.fixture
def missing_value(demo_trial):
    """A participant of the importer's site (their rows fail on the value, not on access)."""
    return Participant.objects.filter(trial=demo_trial, site__code="S01", status="completed").order_by("pk").first()


def test_import_reports_every_problem_by_row_and_column_and_imports_nothing(demo_trial, missing_value):
    before = OutcomeMeasurement.objects.count()
    upload = outcome_file(
        [
            "S01-9999,W12,WOMACP,40,points,2025-06-01",
            f"{missing_value.screening_number},W12,WOMACP,140,points,2025-06-01",
        ]
    )
    response = client_for("demo-site").post(f"{API}/imports/", {"file": upload, "commit": "true"}, format="multipart")
    assert response.status_code == 201
    job = response.json()
    assert job["status"] == "invalid"
    assert job["error_count"] >= 2
    rows = {(error["row"], error["column"]) for error in job["errors"]}
    assert (1, "screening_number") in rows or (2, "screening_number") in rows
    assert OutcomeMeasurement.objects.count() == before


def test_only_site_staff_import(demo_trial):
    response = client_for("demo-monitor").post(f"{API}/imports/", {"file": outcome_file([])}, format="multipart")
    assert response.status_code == 403
    assert not ImportJob.objects.exists()


def test_import_refuses_other_file_types(demo_trial):
    upload = SimpleUploadedFile("outcomes.exe", b"MZ...", content_type="application/octet-stream")
    response = client_for("demo-site").post(f"{API}/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "file"


def test_import_job_is_visible_to_its_owner_only(demo_trial):
    response = client_for("demo-site").post(
        f"{API}/imports/", {"file": outcome_file(["x,y,z,1,points,2025-01-01"])}, format="multipart"
    )
    job_id = response.json()["id"]
    assert client_for("demo-site").get(f"{API}/imports/{job_id}/").status_code == 200
    assert client_for("demo-coordinator").get(f"{API}/imports/{job_id}/").status_code == 404


def test_exports_download_as_attachments(demo_trial):
    client = client_for("demo-blinded-stat")
    response = client.get(f"{API}/exports/xlsx/")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(b"".join(response.streaming_content)))
    assert "data_dictionary" in book.sheetnames
    csv = client.get(f"{API}/exports/csv/randomizations/")
    text = b"".join(csv.streaming_content).decode()
    assert "R0001" in text
    assert "HIGH" not in text
    assert client.get(f"{API}/exports/pdf/").status_code == 404


def test_import_page_lists_problems(client, demo_trial):
    client.force_login(get_user_model().objects.get(username="demo-site"))
    response = client.post(
        "/trials/EXO-OA-201/imports/",
        {"file": outcome_file(["S01-9999,W12,WOMACP,40,points,2025-06-01"]), "commit": "on"},
        follow=True,
    )
    body = response.content.decode()
    assert "Invalid" in body
    assert "S01-9999" in body or "screening_number" in body


def test_a_large_upload_is_imported_by_the_worker_task_from_the_artifact_store(demo_trial, monkeypatch):
    from participants import views_exchange
    from participants.exchange.imports import import_job_run

    # given an upload above the synchronous limit (the task is queued on commit, not run in the request)
    monkeypatch.setattr(views_exchange, "SYNC_IMPORT_MAX_BYTES", 10)
    upload = outcome_file(["S01-9999,W12,WOMACP,40,points,2025-06-01"])
    response = client_for("demo-site").post(f"{API}/imports/", {"file": upload}, format="multipart")
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.status == "queued"
    assert not job.stored_path.startswith("/")  # stored under ARTIFACT_ROOT, by a server-chosen name
    # when the worker runs it
    job = import_job_run(job_id=job.pk)
    # then it finds the file and reports the row's problem
    assert job.status == "invalid"
    assert job.errors[0]["column"] == "screening_number"


def test_adverse_events_import_through_the_api(demo_trial):
    participant = Participant.objects.filter(trial=demo_trial, site__code="S01", status="completed").first()
    onset = participant.consent_date.isoformat()
    text = (
        "screening_number,term,soc,onset_date,grade,causality,expected,action_taken,outcome,site_aware_at\n"
        f"{participant.screening_number},Headache,10029205,{onset},1,not_related,yes,none,recovered,"
        f"{onset}T10:00:00+00:00\n"
    )
    upload = SimpleUploadedFile("aes.csv", text.encode(), content_type="text/csv")
    response = client_for("demo-site").post(
        f"{API}/imports/", {"file": upload, "kind": "adverse_events", "commit": "true"}, format="multipart"
    )
    assert response.status_code == 201
    assert (response.json()["status"], response.json()["rows_imported"]) == ("imported", 1)
