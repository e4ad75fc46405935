"""Data exchange pages: exports (CSV per table streamed, XLSX, CDISC ODM, SDTM XPT) and bulk imports."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import zipfile
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.views.decorators.http import require_http_methods

from audit.context import INITIAL_ENTRY, audit_context
from audit.security import record_security_event
from operations.publishing import enqueue_on_commit
from participants.exchange.exports import csv_streaming_response, export_tables, write_xlsx_export
from participants.exchange.odm import write_odm
from participants.exchange.sdtm import write_sdtm
from participants.models import ImportJob
from trials.policies.access import Capability, can
from trials.selectors import trial_get_for

logger = logging.getLogger("exotrial.exports")
SYNC_IMPORT_MAX_BYTES = 2 * 1024 * 1024  # larger files are imported by a Celery worker, with progress
FORMATS = {"xlsx", "odm", "sdtm"}


@login_required
def exports(request, code: str):
    trial = trial_get_for(request.user, code, Capability.VIEW_PARTICIPANTS)
    return render(
        request,
        "participants/exports.html",
        {"trial": trial, "tables": list(export_tables(trial=trial, user=request.user))},
    )


@login_required
def export_table_csv(request, code: str, table: str):
    trial = trial_get_for(request.user, code, Capability.VIEW_PARTICIPANTS)
    try:
        response = csv_streaming_response(trial=trial, user=request.user, table=table)
    except KeyError:
        raise Http404("No such table") from None
    logger.info("export csv table=%s trial=%s user=%s", table, trial.protocol_code, request.user.get_username())
    record_security_event("export", request=request, trial=trial.protocol_code, format="csv", table=table)
    return response


def export_file(*, trial, user, fmt: str) -> tuple[Path, str, str]:
    """Write an export into a temporary folder; returns (path, download name, media type)."""
    folder = Path(tempfile.mkdtemp(prefix="export-", dir=_scratch()))
    if fmt == "xlsx":
        path = write_xlsx_export(trial=trial, user=user, path=folder / "export.xlsx")
        media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        name = f"{trial.protocol_code}-export.xlsx"
    elif fmt == "odm":
        path = write_odm(trial=trial, user=user, path=folder / "odm.xml")
        media, name = "application/xml", f"{trial.protocol_code}-odm-1.3.2.xml"
    else:
        files = write_sdtm(trial=trial, user=user, out_dir=folder / "sdtm")
        path = folder / "sdtm.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(files):
                archive.write(file, file.name)
        media, name = "application/zip", f"{trial.protocol_code}-sdtm.zip"
    logger.info("export %s trial=%s user=%s", fmt, trial.protocol_code, user.get_username())
    record_security_event("export", user=user, trial=trial.protocol_code, format=fmt)
    return path, name, media


def _scratch() -> Path:
    folder = Path(settings.ARTIFACT_ROOT) / "scratch"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class _CleanupFile:
    """A file handle that removes its temporary folder when the response has been sent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = path.open("rb")

    def read(self, *args):
        return self.handle.read(*args)

    def close(self) -> None:
        self.handle.close()
        shutil.rmtree(self.path.parent, ignore_errors=True)


def file_response(path: Path, name: str, media: str) -> FileResponse:
    response = FileResponse(_CleanupFile(path), as_attachment=True, filename=name, content_type=media)
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
def export_download(request, code: str, fmt: str):
    trial = trial_get_for(request.user, code, Capability.VIEW_PARTICIPANTS)
    if fmt not in FORMATS:
        raise Http404("No such format")
    return file_response(*export_file(trial=trial, user=request.user, fmt=fmt))


class ImportForm(forms.Form):
    kind = forms.ChoiceField(choices=ImportJob.Kind.choices, initial=ImportJob.Kind.OUTCOMES, required=False)
    file = forms.FileField(
        help_text="CSV or XLSX with columns screening_number, visit, endpoint, value, unit, "
        "measured_on (optional event, not_done_reason)."
    )
    commit = forms.BooleanField(required=False, label="Import if the file is valid (otherwise: check only)")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        problem = import_file_problem(upload)
        if problem:
            raise forms.ValidationError(problem)
        return upload


def _size(size: int) -> str:
    return filesizeformat(size).replace("\xa0", " ")


def oversized_upload_message(request) -> str | None:
    """Why an import request is refused if its body is over ``IMPORT_UPLOAD_MAX_BYTES``, else None.

    Decided from Content-Length before the body is parsed (Django never reads past that length), so an
    oversized file is never written to the artifact store or recorded.
    """
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    limit = settings.IMPORT_UPLOAD_MAX_BYTES
    if length <= limit:
        return None
    return f"The upload is {_size(length)}; files up to {_size(limit)} can be imported. Split it into smaller files."


def import_file_problem(upload) -> str | None:
    """What is wrong with an uploaded import file (size, type), or None; shared by the page and the API."""
    if upload.size > settings.IMPORT_UPLOAD_MAX_BYTES:
        return f"The file is {_size(upload.size)}; the limit is {_size(settings.IMPORT_UPLOAD_MAX_BYTES)}."
    if Path(upload.name).suffix.lower() not in (".csv", ".xlsx"):
        return "Upload a .csv or .xlsx file."
    return None


def store_upload(*, trial, user, upload, commit: bool, kind: str = ImportJob.Kind.OUTCOMES) -> ImportJob:
    """Save an uploaded file outside the web root under a server-chosen name and record the job."""
    folder = Path(settings.ARTIFACT_ROOT) / "imports" / trial.protocol_code
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    suffix = Path(upload.name).suffix.lower()
    with tempfile.NamedTemporaryFile(dir=folder, suffix=suffix, delete=False) as handle:
        for chunk in upload.chunks():
            digest.update(chunk)
            handle.write(chunk)
    with audit_context(reason=INITIAL_ENTRY, user=user):
        return ImportJob.objects.create(
            trial=trial,
            requested_by=user,
            file_name=Path(upload.name).name[:255],
            stored_path=str(Path(handle.name).relative_to(settings.ARTIFACT_ROOT)),
            sha256=digest.hexdigest(),
            size=upload.size,
            dry_run=not commit,
            kind=kind or ImportJob.Kind.OUTCOMES,
        )


def start_import(job: ImportJob) -> ImportJob:
    """Small files are checked/imported at once; large ones by a worker (the page shows progress)."""
    from participants.exchange.imports import IMPORTERS
    from participants.tasks import run_import_job

    if job.size <= SYNC_IMPORT_MAX_BYTES:
        return IMPORTERS[job.kind](
            trial=job.trial,
            user=job.requested_by,
            path=Path(settings.ARTIFACT_ROOT) / job.stored_path,
            file_name=job.file_name,
            dry_run=job.dry_run,
            job=job,
        )
    enqueue_on_commit(run_import_job, job.pk)
    return job


@login_required
@require_http_methods(["GET", "POST"])
def imports(request, code: str):
    trial = trial_get_for(request.user, code, Capability.VIEW_PARTICIPANTS)
    allowed = can(request.user, trial, Capability.ENTER_DATA)
    if request.method != "POST":
        return _imports_page(request, trial, ImportForm(), can_import=allowed)
    if not allowed:
        raise PermissionDenied("Only site staff import data.")
    too_large = oversized_upload_message(request)
    if too_large:
        messages.error(request, too_large)
        return _imports_page(request, trial, ImportForm(), can_import=allowed, status=413)
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        return _imports_page(request, trial, form, can_import=allowed)
    job = store_upload(
        trial=trial,
        user=request.user,
        upload=form.cleaned_data["file"],
        commit=form.cleaned_data["commit"],
        kind=form.cleaned_data["kind"],
    )
    job = start_import(job)
    messages.info(request, f"Import {job.pk}: {job.get_status_display()}.")
    return redirect("import_job", code=code, job_id=job.pk)


def _imports_page(request, trial, form: ImportForm, *, can_import: bool, status: int = 200):
    jobs = ImportJob.objects.filter(trial=trial, requested_by=request.user)[:20]
    context = {"trial": trial, "form": form, "jobs": jobs, "can_import": can_import}
    return render(request, "participants/imports.html", context, status=status)


@login_required
def import_job(request, code: str, job_id: int):
    trial = trial_get_for(request.user, code, Capability.VIEW_PARTICIPANTS)
    job = get_object_or_404(ImportJob, pk=job_id, trial=trial, requested_by=request.user)
    return render(request, "participants/import_job.html", {"trial": trial, "job": job})
