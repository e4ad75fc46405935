"""Bulk import of adverse events from CSV or XLSX, all or nothing.

Columns (header row, any order): ``screening_number, term, soc, onset_date, grade, causality, expected,
action_taken, outcome, site_aware_at`` and optionally ``stop_date`` and the six seriousness criteria
``results_in_death, life_threatening, hospitalization, disability, congenital_anomaly, important_medical_event``
(1/0, yes/no). ``soc`` is a MedDRA SOC code or its exact name; dates are ISO (``site_aware_at`` an ISO date-time,
UTC unless it carries an offset).

Unlike outcome measurements (up to millions of rows, validated set-based in SQL), a trial has at most a few
thousand adverse events, so each row goes through the same validation and service as the AE form — the rules
cannot drift apart. A row identical to a stored event (participant, term, SOC, onset) counts as unchanged, so
re-importing a file adds nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from participants.exceptions import DataValidationError
from participants.meddra import SOC_NAMES
from participants.models import AdverseEvent, ImportJob, Participant
from participants.models.adverse_event import SERIOUSNESS_CRITERIA
from participants.selectors import participants_visible
from participants.services.adverse_events import adverse_event_record, validate_adverse_event
from trials.policies.access import Capability, require

REQUIRED = (
    "screening_number",
    "term",
    "soc",
    "onset_date",
    "grade",
    "causality",
    "expected",
    "action_taken",
    "outcome",
    "site_aware_at",
)
OPTIONAL = ("stop_date", *SERIOUSNESS_CRITERIA)
MAX_STORED_ERRORS = 1000
TRUE, FALSE = {"1", "yes", "y", "true"}, {"0", "no", "n", "false", ""}
SOC_BY_NAME = {name.lower(): code for code, name in SOC_NAMES.items()}


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if path.suffix.lower() == ".xlsx":
        from openpyxl import load_workbook

        sheet = load_workbook(path, read_only=True, data_only=True).worksheets[0]
        values = [["" if cell is None else str(cell) for cell in row] for row in sheet.iter_rows(values_only=True)]
        header = [name.strip() for name in values[0]] if values else []
        return header, [dict(zip(header, row, strict=False)) for row in values[1:]]
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        return [name.strip() for name in reader.fieldnames or []], list(reader)


def _parse(row: dict[str, str]) -> tuple[dict, dict[str, str]]:
    data, errors = {}, {}
    text = {key: (value or "").strip() for key, value in row.items() if key}
    data["term"] = text.get("term", "")
    soc = text.get("soc", "")
    data["soc"] = soc if soc in SOC_NAMES else SOC_BY_NAME.get(soc.lower(), soc)
    for name in ("onset_date", "stop_date"):
        try:
            data[name] = dt.date.fromisoformat(text[name]) if text.get(name) else None
        except ValueError:
            errors[name] = f"'{text[name]}' is not an ISO date (YYYY-MM-DD)."
    try:
        data["grade"] = int(text.get("grade", ""))
    except ValueError:
        errors["grade"] = f"'{text.get('grade', '')}' is not a CTCAE grade (1–5)."
    for name in ("expected", *SERIOUSNESS_CRITERIA):
        value = text.get(name, "").lower()
        if value not in TRUE | FALSE or (name == "expected" and value == ""):
            errors[name] = f"'{text.get(name, '')}' is not yes/no (1/0)."
        data[name] = value in TRUE
    for name in ("causality", "action_taken", "outcome"):
        data[name] = text.get(name, "")
    aware = parse_datetime(text.get("site_aware_at", "")) if text.get("site_aware_at") else None
    if aware is None:
        errors["site_aware_at"] = "Give when the site learned of the event as an ISO date-time."
    elif timezone.is_naive(aware):
        aware = aware.replace(tzinfo=dt.UTC)
    data["site_aware_at"] = aware
    return data, errors


def import_adverse_events(
    *, trial, user, path, file_name: str, dry_run: bool, job: ImportJob | None = None
) -> ImportJob:
    """Validate every row like the AE form does and, unless ``dry_run`` or any row is wrong, import them all."""
    require(user, trial, Capability.ENTER_DATA)
    path = Path(path)
    header, rows = _rows(path)
    job = job or ImportJob(
        trial=trial,
        requested_by=user,
        file_name=file_name,
        stored_path=str(path),
        sha256="",
        size=path.stat().st_size,
        dry_run=dry_run,
        kind=ImportJob.Kind.ADVERSE_EVENTS,
    )
    errors: list[dict] = []
    missing = [name for name in REQUIRED if name not in header]
    unknown = [name for name in header if name not in REQUIRED + OPTIONAL]
    if missing or unknown:
        errors.append(
            {
                "row": None,
                "column": None,
                "code": "header",
                "message": f"Missing columns: {', '.join(missing) or 'none'}; unknown: {', '.join(unknown) or 'none'}.",
            }
        )
        rows = []
    visible = {
        p.screening_number: p for p in participants_visible(trial=trial, user=user).select_related("trial", "site")
    }
    planned, unchanged = [], 0
    for number, row in enumerate(rows, start=1):
        participant: Participant | None = visible.get((row.get("screening_number") or "").strip())
        data, row_errors = _parse(row)
        if participant is None:
            row_errors["screening_number"] = "No participant with this number at your sites in this trial."
        else:
            row_errors.update(
                {k: v for k, v in validate_adverse_event(participant, data).items() if k not in row_errors}
            )
        for column, message in row_errors.items():
            errors.append({"row": number, "column": column, "code": "invalid", "message": message})
        if row_errors:
            continue
        if AdverseEvent.objects.filter(
            participant=participant, term=data["term"], soc=data["soc"], onset_date=data["onset_date"]
        ).exists():
            unchanged += 1
        else:
            planned.append((participant, data))
    job.rows_total, job.rows_unchanged, job.error_count = len(rows), unchanged, len(errors)
    job.errors = errors[:MAX_STORED_ERRORS]
    if errors:
        job.status = ImportJob.Status.INVALID
    elif dry_run:
        job.status = ImportJob.Status.VALID
    else:
        try:
            with transaction.atomic():
                for participant, data in planned:
                    adverse_event_record(participant=participant, user=user, data=data)
        except DataValidationError as error:  # changed between validation and writing: nothing was written
            job.status, job.message = ImportJob.Status.FAILED, error.message
        else:
            job.status, job.rows_imported = ImportJob.Status.IMPORTED, len(planned)
    job.progress, job.finished_at = 100, timezone.now()
    from audit.context import INITIAL_ENTRY, audit_context

    with audit_context(reason=INITIAL_ENTRY if job.pk is None else f"import {job.pk} finished", user=user):
        job.save()
    return job
