"""Participant-level data exports: one table per domain as CSV (files or a streamed response) and XLSX.

A CSV table is written by PostgreSQL itself: ``COPY (SELECT …) TO STDOUT (FORMAT csv)`` over the same query
the ORM builds, with every column formatted in SQL exactly as ``csv_value`` formats it in Python (booleans
``true``/``false``, ISO dates, UTC times as ``isoformat()`` writes them, floats exact with ``.0`` on whole
numbers, formula-safe text) and CRLF line ends. Python only passes the bytes on in chunks of whole rows, so a
million-row table costs about what COPY costs and is never held in memory. XLSX, ODM and SDTM read rows with
``.values_list(...).iterator(chunk_size=...)`` (``TrialExport.rows``) and format them in Python.

The exporting user decides what is exported, exactly as in the user interface:

* only trial members who may view participant data may export, and site staff and monitors get their
  own sites only (``participants_visible``);
* for a user who may not see the allocation (``sees_allocation``), every field the blinding policy lists
  (``hidden_fields``: the arm, and the lot, volume, particles, notes and administrator of a dose) is
  replaced by ``MASKED`` and is never even read from the database. An investigator who emergency-unblinded
  one participant still gets a masked trial-wide export: the unblinding covers that participant's care, not
  a data set.

Text cells that a spreadsheet would evaluate (starting with ``=``, ``+``, ``-``, ``@``, tab or CR) are
prefixed with ``'``; numbers, negative ones included, stay numbers. The rule is the report renderers'
(``analysis.report.render_csv.neutralise_formula``), reused as is for XLSX; the CSV uses its SQL twin
``neutralised_sql``, built from the same list of prefixes.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import FieldDoesNotExist
from django.db import connection, models
from django.http import StreamingHttpResponse
from openpyxl import Workbook

from analysis.report.render_csv import FORMULA_PREFIXES, csv_value
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
    Signature,
    Visit,
)
from participants.selectors import participants_visible
from trials.models import Endpoint, Trial
from trials.policies.access import Capability, require
from trials.policies.blinding import hidden_fields, sees_allocation

MASKED = "MASKED"
# Rows fetched per round trip from the server-side cursor (XLSX, ODM, SDTM), and rows per chunk of Python CSV.
CHUNK_SIZE = 2000
# A streamed CSV table goes out in chunks of whole rows of at least this many bytes (the last one may be smaller).
STREAMED_CHUNK_BYTES = 64 * 1024
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
class Conversion:
    """A value derived from the stored one, alike in Python (XLSX, ODM, SDTM) and in SQL (the streamed CSV).

    ``sql`` is a template over ``{value}``, the stored value's expression; its ``%s`` placeholders take ``params``.
    Neither form sees a NULL: a missing value stays missing.
    """

    python: Callable[[object], object]
    sql: str
    params: tuple[object, ...] = ()


@dataclass(frozen=True)
class Column:
    """One exported column: where its value comes from and how it is described in the data dictionary."""

    name: str
    lookup: str
    label: str = ""
    unit: str = ""
    # Model field whose presence in the blinding policy's hidden fields masks this column.
    masked_by: str = ""
    convert: Conversion | None = None
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


# Python sorts the codes by code point; so does the "C" collation.
STRATA_TEXT = Conversion(
    _strata_text,
    "(SELECT string_agg(key || '=' || value, '; ' ORDER BY key COLLATE \"C\") FROM jsonb_each_text({value}))",
)
SOC_NAME = Conversion(
    _soc_name,
    "coalesce((SELECT name FROM unnest(%s::text[], %s::text[]) AS soc(code, name) WHERE soc.code = {value}), '')",
    (list(SOC_NAMES), list(SOC_NAMES.values())),
)


def _subject(protocol_code: str) -> Conversion:
    return Conversion(
        lambda screening_number: f"{protocol_code}-{screening_number}", "%s || {value}", (f"{protocol_code}-",)
    )


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
                Column("strata", "strata", "Stratification factor levels (code=level)", convert=STRATA_TEXT),
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
                Column("soc_name", "soc", "MedDRA system organ class", convert=SOC_NAME, type="text"),
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
        # 21 CFR 11.50(b): the signature's manifestation travels with every export of the signed casebook.
        TableSpec(
            "signatures",
            "Casebook e-signatures",
            Signature,
            "participant",
            ("participant__screening_number", "signed_at", "pk"),
            (
                Column("record_id", "pk", "Record identifier"),
                Column("subject_id", "participant__screening_number", "Subject identifier (USUBJID)", convert=subject),
                Column("signer_name", "signer_name", "Printed name of the signer"),
                Column("signed_at", "signed_at", "Signed at (UTC)"),
                Column("meaning", "meaning", "Meaning of the signature"),
                Column("content_hash", "content_hash", "SHA-256 of the casebook as signed"),
                Column("invalidated_at", "invalidated_at", "Invalidated at (UTC); empty while valid"),
                Column("invalidated_reason", "invalidated_reason", "Why the signature was invalidated"),
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


def neutralised_sql(text: str) -> str:
    """SQL twin of ``neutralise_formula``: the SQL text expression ``text`` with ``'`` before a formula start."""
    starts = ", ".join("E'" + prefix.replace("\t", "\\t").replace("\r", "\\r") + "'" for prefix in FORMULA_PREFIXES)
    return f"CASE WHEN left({text}, 1) IN ({starts}) THEN '''' || {text} ELSE {text} END"


# repr() writes a whole float below 1e16 with ".0"; PostgreSQL's shortest text (exact too) has no fraction and
# switches to an exponent from 1e15 where repr() does from 1e16: either reads back as the same float.
_FLOAT_TEXT = (
    "CASE WHEN {v} = 'NaN' THEN NULL WHEN {v} = 'Infinity' THEN 'inf' WHEN {v} = '-Infinity' THEN '-inf' "
    "WHEN {v} = trunc({v}) AND abs({v}) < 1e15 THEN {v}::text || '.0' ELSE {v}::text END"
)
# isoformat() of an aware UTC datetime: microseconds only when there are some.
_DATETIME_TEXT = (
    "to_char({v} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') "
    "|| CASE WHEN extract(microseconds FROM {v})::bigint %% 1000000 <> 0 "
    "THEN to_char({v} AT TIME ZONE 'UTC', '.US') ELSE '' END || '+00:00'"
)


def _csv_text_sql(value: str, field_type: str) -> str:
    """The CSV text of ``value`` as ``csv_value`` writes it; NULL for an empty cell (COPY writes NULL unquoted)."""
    if field_type == "boolean":
        return f"CASE WHEN {value} THEN 'true' WHEN NOT {value} THEN 'false' END"
    if field_type == "integer":
        return f"{value}::text"
    if field_type == "float":
        return "(" + _FLOAT_TEXT.format(v=value) + ")"
    if field_type == "date":
        return f"to_char({value}, 'YYYY-MM-DD')"
    if field_type == "datetime":
        return "(" + _DATETIME_TEXT.format(v=value) + ")"
    # COPY writes an empty string as "" to tell it from NULL; csv.writer writes both as nothing.
    return "NULLIF(" + neutralised_sql(f"{value}::text") + ", '')"


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
            convert = column.convert.python if column.convert else None
            readers.append(
                (lambda row, i=index, f=convert: None if row[i] is None else f(row[i]))
                if convert
                else (lambda row, i=index: row[i])
            )
        for row in self.queryset(spec).values_list(*lookups).iterator(chunk_size=CHUNK_SIZE):
            yield tuple(read(row) for read in readers)

    def csv_select(self, name: str) -> tuple[str, list[object]]:
        """The SQL and parameters of one table's CSV rows: each cell's text exactly as ``csv_value`` writes it.

        The ORM's own query (the filter, scope and order of ``rows``) is wrapped twice: once to derive the exported
        values (conversions; a masked column is the constant ``MASKED`` and is never selected), once to format them.
        """
        spec = self.specs[name]
        lookups: list[str] = []
        for column in spec.columns:
            if not self.masked(spec, column) and column.lookup not in lookups:
                lookups.append(column.lookup)
        inner, inner_params = self.queryset(spec).values_list(*lookups).query.sql_with_params()
        values: list[str] = []
        texts: list[str] = []
        params: list[object] = []
        for position, column in enumerate(spec.columns):
            if self.masked(spec, column):
                values.append(f"%s::text AS v{position}")
                params.append(MASKED)
                texts.append(f"v{position}")
                continue
            value = f"c{lookups.index(column.lookup)}"
            field_type = _INTERNAL_TYPES.get(resolve_field(spec.model, column.lookup).get_internal_type(), "text")
            if column.convert:
                value = f"CASE WHEN {value} IS NOT NULL THEN {column.convert.sql.format(value=value)} END"
                params.extend(column.convert.params)
                field_type = "text"
            values.append(f"{value} AS v{position}")
            texts.append(_csv_text_sql(f"v{position}", field_type))
        aliases = ", ".join(f"c{position}" for position in range(len(lookups)))
        # OFFSET 0 keeps the planner from substituting each derived value into every place the formatting uses it.
        # Plain projections of an ordered subquery keep its order (no join, sort or aggregate above it).
        select = (
            f"SELECT {', '.join(texts)} FROM ("  # noqa: S608 - every value is a parameter
            f"SELECT {', '.join(values)} FROM ({inner}) AS exported({aliases}) OFFSET 0) AS derived"
        )
        return select, params + list(inner_params)

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
        if len(batch) >= CHUNK_SIZE:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def _crlf_text(rows: list) -> str:
    """COPY's rows (each ended by one newline) as text with the CRLF line ends csv.writer writes."""
    data = b"".join(rows)
    if b'"' not in data:  # no quoted field, so every newline ends a row
        return data.replace(b"\n", b"\r\n").decode("utf-8")
    return b"".join(bytes(row[:-1]) + b"\r\n" for row in rows).decode("utf-8")


def _chunks_of_rows(rows: Iterable) -> Iterator[str]:
    batch: list = []
    size = 0
    for row in rows:  # libpq hands COPY data over one row at a time
        batch.append(row)
        size += len(row)
        if size >= STREAMED_CHUNK_BYTES:
            yield _crlf_text(batch)
            batch, size = [], 0
    if batch:
        yield _crlf_text(batch)


def _copy_csv_chunks(export: TrialExport, table: ExportTable) -> Iterator[str]:
    writer = csv.writer(_Echo(), lineterminator="\r\n")
    # The header goes out before the query, so a client sees the download start at once.
    yield writer.writerow([csv_value(column) for column in table.columns])
    select, params = export.csv_select(table.name)
    # The psycopg cursor itself: Django's debug wrapper (DEBUG=True) has a copy() without parameters.
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY ({select}) TO STDOUT (FORMAT csv)", params) as copy:
        yield from _chunks_of_rows(copy)


def _table_chunks(export: TrialExport, table: ExportTable) -> Iterator[str]:
    """A table's CSV text: a domain table straight from COPY, the data dictionary from Python."""
    return _copy_csv_chunks(export, table) if table.name in export.specs else _csv_chunks(table)


def stream_csv(*, trial: Trial, user, table: str) -> Iterator[str]:
    """CSV text of one table in chunks, read from a server-side cursor as it is sent.

    Authorization and the table name are checked here, before the first chunk is requested, so the caller
    gets ``PermissionDenied`` or ``KeyError`` instead of a response that breaks off.
    """
    export = TrialExport(trial=trial, user=user)
    tables = export.tables()
    if table not in tables:
        raise KeyError(f"No export table {table!r}; choose one of {', '.join(tables)}.")
    return _table_chunks(export, tables[table])


def csv_streaming_response(*, trial: Trial, user, table: str) -> StreamingHttpResponse:
    """A download of one table that starts at once and never holds the table in memory."""
    chunks = stream_csv(trial=trial, user=user, table=table)
    response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{trial.protocol_code}-{table}.csv"'
    return response


def write_csv_export(*, trial: Trial, user, out_dir: str | os.PathLike[str]) -> list[Path]:
    """One UTF-8 CSV per table plus ``data_dictionary.csv`` in ``out_dir``; returns the files written."""
    export = TrialExport(trial=trial, user=user)  # authorizes before anything touches the disk
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in export.tables().items():
        path = folder / f"{name}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            for chunk in _table_chunks(export, table):
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
