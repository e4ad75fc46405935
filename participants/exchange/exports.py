"""Participant-level data exports: one table per domain as CSV (files or a streamed response) and XLSX.

Every table is read with ``.values_list(...).iterator(chunk_size=...)``, so a million-row table is never
held in memory: rows go from the database cursor to the file or the HTTP response as they arrive.

The exporting user decides what is exported, exactly as in the user interface:

* only trial members who may view participant data may export, and site staff and monitors get their
  own sites only (``participants_visible``);
* for a user who may not see the allocation (``sees_allocation``), every field the blinding policy lists
  (``hidden_fields``: the arm, and the lot, volume, particles, notes and administrator of a dose) is
  replaced by ``MASKED`` and is never even read from the database. An investigator who emergency-unblinded
  one participant still gets a masked trial-wide export: the unblinding covers that participant's care, not
  a data set.

Text cells that a spreadsheet would evaluate (starting with ``=``, ``+``, ``-``, ``@``, tab or CR) are
prefixed with ``'``; numbers, negative ones included, stay numbers (the report renderers' rules, reused).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.http import StreamingHttpResponse
from openpyxl import Workbook

from analysis.report.render_csv import csv_value
from analysis.report.render_xlsx import cell_value
from participants.meddra import SOC_NAMES
from participants.models import (
    AdverseEvent,
    DataQuery,
    DoseAdministration,
    OutcomeMeasurement,
    Participant,
    ProtocolDeviation,
    Randomization,
    Visit,
)
from participants.selectors import participants_visible
from trials.models import Endpoint, Trial
from trials.policies.access import Capability, require
from trials.policies.blinding import hidden_fields, sees_allocation

MASKED = "MASKED"
# Rows fetched per round trip from the server-side cursor, and rows per chunk of a streamed CSV response.
CHUNK_SIZE = 2000
ROWS_PER_STREAMED_CHUNK = 500
DICTIONARY = "data_dictionary"
DICTIONARY_COLUMNS = (
    "table",
    "variable",
    "endpoint_code",
    "label",
    "type",
    "unit",
    "allowed_values",
    "minimum",
    "maximum",
    "description",
    "blinding",
)
MASKED_NOTE = "masked for blinded users"

_INTERNAL_TYPES = {
    "CharField": "text",
    "TextField": "text",
    "SlugField": "text",
    "JSONField": "text",
    "BooleanField": "boolean",
    "DateField": "date",
    "DateTimeField": "datetime",
    "FloatField": "float",
    "DecimalField": "float",
    "AutoField": "integer",
    "BigAutoField": "integer",
    "IntegerField": "integer",
    "SmallIntegerField": "integer",
    "BigIntegerField": "integer",
    "PositiveIntegerField": "integer",
    "PositiveSmallIntegerField": "integer",
    "PositiveBigIntegerField": "integer",
}


@dataclass(frozen=True)
class Column:
    """One exported column: where its value comes from and how it is described in the data dictionary."""

    name: str
    lookup: str
    label: str = ""
    unit: str = ""
    # Model field whose presence in the blinding policy's hidden fields masks this column.
    masked_by: str = ""
    convert: Callable[[object], object] | None = None
    type: str = ""


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    model: type[models.Model]
    # Lookup from the table's model to its participant ("" for the participant itself).
    participant_path: str
    order_by: tuple[str, ...]
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class ExportTable:
    """A table ready to write: its header and a function that streams its rows (call it once per write)."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: Callable[[], Iterator[tuple]] = field(repr=False)


def _strata_text(value: object) -> str:
    if not value:
        return ""
    return "; ".join(f"{code}={level}" for code, level in sorted(dict(value).items()))


def _soc_name(value: object) -> str:
    return SOC_NAMES.get(str(value), "") if value else ""


def _subject(protocol_code: str) -> Callable[[object], str]:
    return lambda screening_number: f"{protocol_code}-{screening_number}"


def table_specs(trial: Trial) -> dict[str, TableSpec]:
    """The exported tables of ``trial`` in file order (without the data dictionary)."""
    subject = _subject(trial.protocol_code)
    specs = [
        TableSpec(
            "participants",
            "Participants (screening, consent, demographics and disposition)",
            Participant,
            "",
            ("screening_number", "pk"),
            (
                Column("subject_id", "screening_number", "Subject identifier (USUBJID)", convert=subject),
                Column("screening_number", "screening_number"),
                Column("site_code", "site__code", "Site code"),
                Column("site_country", "site__country", "Site country (ISO 3166-1 alpha-2)"),
                Column("status", "status", "Participant status"),
                Column("screened_on", "screened_on", "Screening date"),
                Column("sex", "sex"),
                Column("birth_year", "birth_year"),
                Column("age_at_screening", "age_at_screening", "Age at screening", unit="years"),
                Column("strata", "strata", "Stratification factor levels (code=level)", convert=_strata_text),
                Column("consent_date", "consent_date", "Informed consent date"),
                Column("consent_version", "consent_version", "Informed consent form version"),
                Column("screen_failure_criterion", "screen_failure_criterion__code", "Failed eligibility criterion"),
                Column("screen_failure_reason", "screen_failure_reason"),
                Column("withdrawn_on", "withdrawn_on", "Withdrawal date"),
                Column("withdrawal_reason", "withdrawal_reason"),
                Column("withdrawal_detail", "withdrawal_detail"),
                Column("completed_on", "completed_on", "Completion date"),
            ),
        ),
        TableSpec(
            "randomizations",
            "Randomizations (treatment assignment)",
            Randomization,
            "participant",
            ("randomization_number", "pk"),
            (
                Column("subject_id", "participant__screening_number", "Subject identifier (USUBJID)", convert=subject),
                Column("randomization_number", "randomization_number"),
                Column("stratum", "stratum"),
                Column("randomized_at", "randomized_at", "Randomization date and time (UTC)"),
                Column("randomized_by", "randomized_by__username", "Randomized by (username)"),
                Column("arm_code", "arm__code", "Assigned arm code", masked_by="arm"),
                Column("arm_name", "arm__name", "Assigned arm", masked_by="arm"),
            ),
        ),
        TableSpec(
            "visits",
            "Visits",
            Visit,
            "participant",
            ("participant__screening_number", "visit_definition__order", "pk"),
            (
                Column("record_id", "pk", "Record identifier"),
                Column("subject_id", "participant__screening_number", "Subject identifier (USUBJID)", convert=subject),
                Column("visit_code", "visit_definition__code", "Visit code"),
                Column("visit_name", "visit_definition__name", "Visit name"),
                Column("visit_number", "visit_definition__order", "Visit number"),
                Column("status", "status", "Visit status"),
                Column("visit_date", "visit_date"),
                Column("study_day", "study_day", unit="days"),
                Column("in_window", "in_window", "Visit in protocol window"),
                Column("missed_reason", "missed_reason", "Reason the visit was missed"),
            ),
        ),
        TableSpec(
            "outcome_measurements",
            "Outcome measurements (endpoint values per visit)",
            OutcomeMeasurement,
            "visit__participant",
            ("visit__participant__screening_number", "visit__visit_definition__order", "endpoint__code", "pk"),
            (
                Column("record_id", "pk", "Record identifier"),
                Column(
                    "subject_id",
                    "visit__participant__screening_number",
                    "Subject identifier (USUBJID)",
                    convert=subject,
                ),
                Column("visit_code", "visit__visit_definition__code", "Visit code"),
                Column("visit_number", "visit__visit_definition__order", "Visit number"),
                Column("endpoint_code", "endpoint__code", "Endpoint code (PARAMCD)"),
                Column("endpoint_name", "endpoint__name", "Endpoint"),
                Column("value", "value", "Value (see the endpoint rows for each endpoint's unit and range)"),
                Column("event_occurred", "event_occurred", "Event occurred (time-to-event endpoints)"),
                Column("unit", "unit"),
                Column("measured_on", "measured_on", "Measurement date"),
                Column("not_done_reason", "not_done_reason", "Reason not done"),
            ),
        ),
        TableSpec(
            "adverse_events",
            "Adverse events",
            AdverseEvent,
            "participant",
            ("participant__screening_number", "onset_date", "pk"),
            (
                Column("record_id", "pk", "Record identifier"),
                Column("subject_id", "participant__screening_number", "Subject identifier (USUBJID)", convert=subject),
                Column("term", "term", "Verbatim term"),
                Column("soc_code", "soc", "MedDRA system organ class code"),
                Column("soc_name", "soc", "MedDRA system organ class", convert=_soc_name, type="text"),
                Column("onset_date", "onset_date"),
                Column("stop_date", "stop_date"),
                Column("grade", "grade", "CTCAE grade"),
                Column("serious", "serious"),
                Column("results_in_death", "results_in_death"),
                Column("life_threatening", "life_threatening"),
                Column("hospitalization", "hospitalization"),
                Column("disability", "disability"),
                Column("congenital_anomaly", "congenital_anomaly"),
                Column("important_medical_event", "important_medical_event"),
                Column("causality", "causality"),
                Column("expected", "expected"),
                Column("action_taken", "action_taken"),
                Column("outcome", "outcome"),
                Column("site_aware_at", "site_aware_at", "Site aware (UTC)"),
                Column("sponsor_notified_at", "sponsor_notified_at", "Sponsor notified (UTC)"),
                Column("regulator_reported_at", "regulator_reported_at", "Reported to regulators (UTC)"),
            ),
        ),
        TableSpec(
            "doses",
            "Study treatment administrations",
            DoseAdministration,
            "participant",
            ("participant__screening_number", "administered_at", "pk"),
            (
                Column("record_id", "pk", "Record identifier"),
                Column("subject_id", "participant__screening_number", "Subject identifier (USUBJID)", convert=subject),
                Column("visit_code", "visit__visit_definition__code", "Visit code"),
                Column("administered_at", "administered_at", "Administered at (UTC)"),
                Column("route", "route", "Route of administration"),
                Column("lot_number", "lot__lot_number", "Product lot number", masked_by="lot"),
                Column("volume_ml", "volume_ml", "Volume administered", unit="mL", masked_by="volume_ml"),
                Column("particles_given", "particles_given", unit="particles", masked_by="particles_given"),
                Column("administered_by", "administered_by", masked_by="administered_by"),
                Column("notes", "notes", masked_by="notes"),
            ),
        ),
        TableSpec(
            "deviations",
            "Protocol deviations",
            ProtocolDeviation,
            "participant",
            ("participant__screening_number", "occurred_on", "pk"),
            (
                Column("record_id", "pk", "Record identifier"),
                Column("subject_id", "participant__screening_number", "Subject identifier (USUBJID)", convert=subject),
                Column("visit_code", "visit__visit_definition__code", "Visit code"),
                Column("category", "category"),
                Column("severity", "severity"),
                Column("description", "description"),
                Column("occurred_on", "occurred_on"),
                Column("detected_on", "detected_on"),
                Column("is_automatic", "is_automatic", "Raised automatically"),
            ),
        ),
        TableSpec(
            "queries",
            "Data queries",
            DataQuery,
            "participant",
            ("raised_at", "pk"),
            (
                Column("record_id", "pk", "Record identifier"),
                Column("subject_id", "participant__screening_number", "Subject identifier (USUBJID)", convert=subject),
                Column("target_model", "target_model"),
                Column("target_id", "target_id", "Queried record identifier"),
                Column("field_name", "field_name"),
                Column("message", "message"),
                Column("status", "status", "Query status"),
                Column("raised_by", "raised_by__username", "Raised by (username)"),
                Column("raised_at", "raised_at", "Raised at (UTC)"),
                Column("answer", "answer"),
                Column("answered_by", "answered_by__username", "Answered by (username)"),
                Column("answered_at", "answered_at", "Answered at (UTC)"),
                Column("closed_by", "closed_by__username", "Closed by (username)"),
                Column("closed_at", "closed_at", "Closed at (UTC)"),
                Column("reopened_count", "reopened_count"),
            ),
        ),
    ]
    return {spec.name: spec for spec in specs}


def resolve_field(model: type[models.Model], lookup: str) -> models.Field:
    """The model field a ``values_list`` lookup ends at (``pk`` is the primary key)."""
    current = model
    parts = lookup.split("__")
    for position, part in enumerate(parts):
        found = current._meta.pk if part == "pk" else current._meta.get_field(part)
        if position == len(parts) - 1:
            return found
        if not found.is_relation:
            raise FieldDoesNotExist(f"{lookup}: {part} is not a relation")
        current = found.related_model
    raise FieldDoesNotExist(lookup)


def _field_type(column: Column, model_field: models.Field) -> str:
    return column.type or _INTERNAL_TYPES.get(model_field.get_internal_type(), "text")


def _label(column: Column, model_field: models.Field) -> str:
    label = column.label or str(model_field.verbose_name)
    return label[:1].upper() + label[1:]


def _choices_text(choices) -> str:
    return "; ".join(f"{value}={label}" for value, label in choices)


class TrialExport:
    """What one user may export from one trial: the authorization and the blinding decided once, up front."""

    def __init__(self, *, trial: Trial, user) -> None:
        # Refused before anything is read, so a streamed response never starts for an unauthorised user.
        require(user, trial, Capability.VIEW_PARTICIPANTS)
        self.trial = trial
        self.user = user
        self.unblinded = sees_allocation(user, trial)
        self.participants = participants_visible(trial=trial, user=user)
        self.specs = table_specs(trial)

    def masked(self, spec: TableSpec, column: Column) -> bool:
        return bool(column.masked_by) and column.masked_by in hidden_fields(
            self.user, self.trial, spec.model._meta.label_lower
        )

    def queryset(self, spec: TableSpec) -> models.QuerySet:
        scope = "pk__in" if not spec.participant_path else f"{spec.participant_path}__in"
        return spec.model.objects.filter(**{scope: self.participants.values("pk")}).order_by(*spec.order_by)

    def rows(self, name: str) -> Iterator[tuple]:
        spec = self.specs[name]
        lookups: list[str] = []
        readers: list[Callable[[tuple], object]] = []
        for column in spec.columns:
            if self.masked(spec, column):
                # Never read from the database: the value cannot leak through a bug further down.
                readers.append(lambda _row: MASKED)
                continue
            if column.lookup not in lookups:
                lookups.append(column.lookup)
            index = lookups.index(column.lookup)
            convert = column.convert
            readers.append(
                (lambda row, i=index, f=convert: None if row[i] is None else f(row[i]))
                if convert
                else (lambda row, i=index: row[i])
            )
        for row in self.queryset(spec).values_list(*lookups).iterator(chunk_size=CHUNK_SIZE):
            yield tuple(read(row) for read in readers)

    def dictionary_rows(self) -> Iterator[tuple]:
        for spec in self.specs.values():
            for column in spec.columns:
                model_field = resolve_field(spec.model, column.lookup)
                masked = self.masked(spec, column)
                allowed = _choices_text(model_field.choices) if model_field.choices else ""
                if column.masked_by and spec.model is Randomization:
                    allowed = MASKED if masked else self._arm_values(column)
                elif masked:
                    allowed = MASKED
                yield (
                    spec.name,
                    column.name,
                    "",
                    _label(column, model_field),
                    _field_type(column, model_field),
                    column.unit,
                    allowed,
                    None,
                    None,
                    str(model_field.help_text or ""),
                    MASKED_NOTE if column.masked_by else "",
                )
        yield from self._endpoint_rows()

    def _arm_values(self, column: Column) -> str:
        arms = self.trial.arms.order_by("code").values_list("code", "name")
        if column.name == "arm_code":
            return _choices_text(arms)
        return "; ".join(name for _code, name in arms)

    def _endpoint_rows(self) -> Iterator[tuple]:
        """The meaning of ``outcome_measurements.value`` for each endpoint: name, unit and allowed range."""
        endpoints = self.trial.endpoints.order_by("rank", "code").values_list(
            "code", "name", "kind", "unit", "min_value", "max_value", "description"
        )
        for code, name, kind, unit, minimum, maximum, description in endpoints:
            whole = kind in (Endpoint.Kind.BINARY, Endpoint.Kind.COUNT, Endpoint.Kind.ORDINAL)
            allowed = "0=No; 1=Yes" if kind == Endpoint.Kind.BINARY else ""
            if kind == Endpoint.Kind.TIME_TO_EVENT:
                name = f"{name} (time to event or censoring; see event_occurred)"
            yield (
                "outcome_measurements",
                "value",
                code,
                name,
                "integer" if whole else "float",
                unit,
                allowed,
                minimum,
                maximum,
                description,
                "",
            )

    def tables(self) -> dict[str, ExportTable]:
        tables = {
            name: ExportTable(
                name=name,
                title=spec.title,
                columns=tuple(column.name for column in spec.columns),
                rows=lambda name=name: self.rows(name),
            )
            for name, spec in self.specs.items()
        }
        tables[DICTIONARY] = ExportTable(
            name=DICTIONARY,
            title="Data dictionary: every exported column, its type, unit and allowed values",
            columns=DICTIONARY_COLUMNS,
            rows=self.dictionary_rows,
        )
        return tables


def export_tables(*, trial: Trial, user) -> dict[str, ExportTable]:
    """Every table ``user`` may export from ``trial`` (domain tables, then the data dictionary)."""
    return TrialExport(trial=trial, user=user).tables()


class _Echo:
    """A file-like object whose ``write`` hands the text back, so ``csv.writer`` can feed a generator."""

    def write(self, text: str) -> str:
        return text


def _csv_chunks(table: ExportTable) -> Iterator[str]:
    writer = csv.writer(_Echo(), lineterminator="\r\n")
    # The header goes out before the first query, so a client sees the download start at once.
    yield writer.writerow([csv_value(column) for column in table.columns])
    batch: list[str] = []
    for row in table.rows():
        batch.append(writer.writerow([csv_value(value) for value in row]))
        if len(batch) >= ROWS_PER_STREAMED_CHUNK:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def stream_csv(*, trial: Trial, user, table: str) -> Iterator[str]:
    """CSV text of one table in chunks, read from a server-side cursor as it is sent.

    Authorization and the table name are checked here, before the first chunk is requested, so the caller
    gets ``PermissionDenied`` or ``KeyError`` instead of a response that breaks off.
    """
    tables = export_tables(trial=trial, user=user)
    if table not in tables:
        raise KeyError(f"No export table {table!r}; choose one of {', '.join(tables)}.")
    return _csv_chunks(tables[table])


def csv_streaming_response(*, trial: Trial, user, table: str) -> StreamingHttpResponse:
    """A download of one table that starts at once and never holds the table in memory."""
    chunks = stream_csv(trial=trial, user=user, table=table)
    response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{trial.protocol_code}-{table}.csv"'
    return response


def write_csv_export(*, trial: Trial, user, out_dir: str | os.PathLike[str]) -> list[Path]:
    """One UTF-8 CSV per table plus ``data_dictionary.csv`` in ``out_dir``; returns the files written."""
    tables = export_tables(trial=trial, user=user)  # authorizes before anything touches the disk
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in tables.items():
        path = folder / f"{name}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            for chunk in _csv_chunks(table):
                handle.write(chunk)
        written.append(path)
    return written


def write_xlsx_export(*, trial: Trial, user, path: str | os.PathLike[str]) -> Path:
    """One sheet per table plus the data dictionary, written in openpyxl's write-only (streaming) mode."""
    tables = export_tables(trial=trial, user=user)  # authorizes before anything touches the disk
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    workbook = Workbook(write_only=True)
    for name, table in tables.items():
        sheet = workbook.create_sheet(title=name[:31])
        sheet.append([cell_value(column) for column in table.columns])
        for row in table.rows():
            sheet.append([cell_value(value) for value in row])
    workbook.save(target)
    return target
