"""Bulk import of outcome measurements from a CSV or XLSX file: validated as a whole, imported all or nothing.

File format
-----------
*CSV*: UTF-8 text (a byte-order mark is allowed, e.g. Excel's "CSV UTF-8"), comma-separated, double quotes
around values that contain commas, quotes or line breaks; the first line is the header.
*XLSX*: the first worksheet; its first row is the header. Date cells may be real dates or ISO text.

Columns (header names are matched ignoring case and surrounding spaces; their order is free):

==================  ========  ===============================================================================
column              required  content
==================  ========  ===============================================================================
screening_number    yes       the participant's screening number in this trial, e.g. ``S01-0007``
visit               yes       visit definition code, e.g. ``W12``
endpoint            yes       endpoint code (CDISC PARAMCD), e.g. ``WOMACP``
value               yes       a number with a dot as decimal separator (``45.5``, ``1e-3``); blank when not done
unit                yes       exactly the endpoint's unit (blank for unitless endpoints, may be blank if not done)
measured_on         yes       ISO date ``YYYY-MM-DD``; the visit date
event               no        time-to-event endpoints only: ``1`` event happened, ``0`` censored at ``value`` days
not_done_reason     no        why there is no value (then ``value`` is blank); at most 300 characters
==================  ========  ===============================================================================

Unknown, missing or repeated columns reject the file before any row is read. Blank rows are skipped. Rows are
numbered as a spreadsheet shows them: the header is row 1, the first data row is row 2.

Rules (the same as the visit form, ``participants.services.visits``): the participant is in this trial, at one of
the importer's sites, randomized, and neither the casebook nor the trial is locked; the visit and endpoint exist
and the endpoint is measured at that visit; the unit is the endpoint's; the value passes the endpoint's range and
kind (``Endpoint.range_error``: binary 0/1, counts and ordinals whole); a time-to-event value says whether the
event happened; the date is a real date, not in the future, not before screening. One visit has one date: every
row of a visit carries the same ``measured_on``, which must equal the visit date when the visit is already
recorded. A participant, visit and endpoint appear once in a file. A value already stored is never overwritten:
an identical row is counted as unchanged (so re-importing a file adds nothing), a different one is an error (a
change needs an edit with a reason in the application).

Errors (``ImportJob.errors``: ``{row, column, code, message}``, the first 1,000; ``error_count`` counts all): for the
file, ``file_type``, ``empty_file``, ``encoding``, ``csv_syntax``, ``columns``, ``unknown_column``,
``repeated_column``, ``missing_column``, ``no_rows`` and ``trial_locked`` (row and column may be null); for a row,
the codes of ``CHECKS`` below, one per problem found, e.g. ``participant_site`` or ``out_of_range``.

How: the file is streamed into a temporary staging table with ``COPY … FROM STDIN`` (XLSX rows are converted one
by one with openpyxl in read-only mode), every rule is checked with a few set-based SQL statements over the whole
file, and a valid file is written with ``INSERT … SELECT`` in one transaction whose audit context names the user
and the job, so each inserted row gets an audit event. Python never holds the rows: memory stays bounded whatever
the file size. Missing visits are created (completed, on ``measured_on``; study day and window from day 0 = the
baseline visit date, else the randomization date), with the automatic protocol deviation for a visit out of
window that the form raises too. Works on PostgreSQL 15 and later.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone
from psycopg import sql as pgsql

from audit.context import INITIAL_ENTRY, audit_context
from participants.models import (
    ImportJob,
    OutcomeMeasurement,
    Participant,
    ProtocolDeviation,
    Randomization,
    RecordLock,
    Visit,
)
from trials.models import Endpoint, Site, Trial, VisitDefinition
from trials.policies.access import Capability, require
from trials.policies.sites import ALL_SITES, visible_site_ids

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("screening_number", "visit", "endpoint", "value", "unit", "measured_on")
OPTIONAL_COLUMNS = ("event", "not_done_reason")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
MAX_STORED_ERRORS = 1000
NOT_DONE_REASON_MAX_LENGTH = OutcomeMeasurement._meta.get_field("not_done_reason").max_length
CSV_SUFFIXES = (".csv", ".txt")
XLSX_SUFFIXES = (".xlsx", ".xlsm")
FINISHED_STATUSES = frozenset(
    {ImportJob.Status.VALID, ImportJob.Status.INVALID, ImportJob.Status.IMPORTED, ImportJob.Status.FAILED}
)
# pg_try_advisory_lock(namespace, job id): one worker at a time runs a job, even when a task is redelivered.
ADVISORY_LOCK_NAMESPACE = 0x0E10  # "EXO import"

# Session-local temporary tables: each database connection has its own, so concurrent imports never meet.
STAGING = "exotrial_import_staging"
ROWS = "exotrial_import_rows"
ERRORS = "exotrial_import_errors"


def _sql(template: str, **extra: str) -> str:
    """Fill the table names (and other constants) into a SQL template; values are never formatted in."""
    return template.format(**_T, **extra)


_NUMBER_RE = r"^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]{1,4})?$"  # no NaN/Infinity, no decimal comma
_DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_WHITESPACE = " \t\r\n\u00a0"


def _table(model) -> str:
    return f'"{model._meta.db_table}"'


_T = {
    "staging": STAGING,
    "rows": ROWS,
    "errors": ERRORS,
    "participant": _table(Participant),
    "site": _table(Site),
    "randomization": _table(Randomization),
    "recordlock": _table(RecordLock),
    "visitdefinition": _table(VisitDefinition),
    "endpoint": _table(Endpoint),
    "endpoint_visits": _table(Endpoint.visits.through),
    "visit": _table(Visit),
    "measurement": _table(OutcomeMeasurement),
    "deviation": _table(ProtocolDeviation),
    "binary": Endpoint.Kind.BINARY.value,
    "count": Endpoint.Kind.COUNT.value,
    "ordinal": Endpoint.Kind.ORDINAL.value,
    "tte": Endpoint.Kind.TIME_TO_EVENT.value,
    "completed": Visit.Status.COMPLETED.value,
    "missed": Visit.Status.MISSED.value,
}


# --- SQL (table and column names come from the constants above only; every value is a parameter) --------------

_CREATE_STAGING = _sql(
    "CREATE TEMP TABLE {staging} (row_no integer NOT NULL, extra_values boolean NOT NULL, "
    + ", ".join(f"{name} text" for name in COLUMNS)
    + ")"
)

_TRIMMED = ",\n".join(f"coalesce(btrim({name}, %(ws)s), '') AS {name}" for name in COLUMNS)

# One row per file row, with everything the checks and the insert need resolved by joins: the participant (only in
# this trial), its site, randomization and lock, the visit definition and endpoint (only this trial's), whether the
# endpoint is scheduled at the visit, the visit and measurement already stored, and the parsed value, date and
# event flag (NULL when unparseable). Window functions find repeated rows and the date each new visit will get.
_CREATE_ROWS = _sql(
    """
CREATE TEMP TABLE {rows} AS
-- Each distinct text is parsed once (a file repeats its dates and, at a measurement's precision, its values): the
-- regular expressions and casts cost several microseconds a value. Nested CASEs fix the evaluation order, so a cast
-- only ever sees text it can convert (PostgreSQL 15 has no pg_input_is_valid): numbers beyond double precision's
-- range and impossible calendar dates (2025-02-30) count as invalid instead of aborting the query.
WITH numbers AS (
    SELECT text, CASE WHEN text ~ %(number_re)s THEN
                 CASE WHEN abs(text::numeric) < 1e300 THEN text::double precision END END AS value
    FROM (SELECT DISTINCT coalesce(btrim(value, %(ws)s), '') AS text FROM {staging}) distinct_values
), days AS (
    SELECT text, CASE WHEN text ~ %(date_re)s THEN
                 CASE WHEN substr(text, 1, 4)::int >= 1
                           AND substr(text, 6, 2)::int BETWEEN 1 AND 12
                           AND substr(text, 9, 2)::int BETWEEN 1 AND extract(day FROM make_date(
                               substr(text, 1, 4)::int, substr(text, 6, 2)::int, 1) + interval '1 month - 1 day')
                      THEN text::date END END AS measured_on
    FROM (SELECT DISTINCT coalesce(btrim(measured_on, %(ws)s), '') AS text FROM {staging}) distinct_dates
)
SELECT w.*,
       w.measurement_id IS NOT NULL
       AND w.stored_value IS NOT DISTINCT FROM w.value
       AND w.stored_event IS NOT DISTINCT FROM w.event_occurred
       AND w.stored_reason = w.not_done_reason
       AND w.stored_measured_on IS NOT DISTINCT FROM w.measured_on
       AND w.stored_unit = w.endpoint_unit AS unchanged
FROM (
    SELECT j.*,
           CASE WHEN j.participant_id IS NOT NULL AND j.visit_definition_id IS NOT NULL AND j.endpoint_id IS NOT NULL
                THEN min(j.row_no) OVER (PARTITION BY j.participant_id, j.visit_definition_id, j.endpoint_id)
           END AS first_row,
           first_value(j.measured_on) OVER visit_rows AS visit_first_date,
           first_value(j.row_no) OVER visit_rows AS visit_first_row
    FROM (
        SELECT s.row_no, s.extra_values, s.screening_number, s.visit, s.endpoint, s.value AS value_text, s.unit,
               s.measured_on AS date_text, s.event AS event_text, s.not_done_reason,
               p.id AS participant_id, p.site_id, st.code AS site_code, p.screened_on, p.status AS participant_status,
               p.id IS NOT NULL AND (%(all_sites)s OR p.site_id = ANY(%(site_ids)s::bigint[])) AS site_visible,
               (rz.randomized_at AT TIME ZONE 'UTC')::date AS randomized_on,
               lk.reason AS lock_reason,
               vd.id AS visit_definition_id, vd.is_baseline, vd.target_day, vd.window_before_days,
               vd.window_after_days,
               e.id AS endpoint_id, e.kind, e.unit AS endpoint_unit, e.min_value, e.max_value,
               ev.id IS NOT NULL AS scheduled,
               num.value, day.measured_on,
               CASE s.event WHEN '1' THEN true WHEN '0' THEN false END AS event_occurred,
               v.id AS visit_id, v.status AS visit_status, v.visit_date,
               m.id AS measurement_id, m.value AS stored_value, m.event_occurred AS stored_event,
               m.not_done_reason AS stored_reason, m.measured_on AS stored_measured_on, m.unit AS stored_unit
        FROM (SELECT row_no, extra_values, {trimmed} FROM {staging}) s
        LEFT JOIN numbers num ON num.text = s.value
        LEFT JOIN days day ON day.text = s.measured_on
        LEFT JOIN {participant} p ON p.trial_id = %(trial)s AND p.screening_number = s.screening_number
        LEFT JOIN {site} st ON st.id = p.site_id
        LEFT JOIN {randomization} rz ON rz.participant_id = p.id
        LEFT JOIN {recordlock} lk ON lk.trial_id = %(trial)s AND lk.participant_id = p.id AND lk.unlocked_at IS NULL
        LEFT JOIN {visitdefinition} vd ON vd.trial_id = %(trial)s AND vd.code = s.visit
        LEFT JOIN {endpoint} e ON e.trial_id = %(trial)s AND e.code = s.endpoint
        LEFT JOIN {endpoint_visits} ev ON ev.endpoint_id = e.id AND ev.visitdefinition_id = vd.id
        LEFT JOIN {visit} v ON v.participant_id = p.id AND v.visit_definition_id = vd.id
        LEFT JOIN {measurement} m ON m.visit_id = v.id AND m.endpoint_id = e.id
    ) j
    WINDOW visit_rows AS (
        PARTITION BY j.participant_id, j.visit_definition_id ORDER BY j.measured_on IS NULL, j.row_no
        ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
    )
) w
""",
    trimmed=_TRIMMED,
)


@dataclass(frozen=True)
class _Check:
    code: str
    column: str | None
    condition: str  # over alias r of the rows table; NULL counts as passed
    detail: str = "NULL"  # text shown in the message (the offending value, the stored value …)


_NOT_BINARY = _sql("r.kind = '{binary}' AND r.value NOT IN (0, 1)")
_NOT_WHOLE = _sql("r.kind IN ('{count}', '{ordinal}') AND r.value <> trunc(r.value)")

# The order of Endpoint.range_error: binary first, then whole numbers, then the range; one message per value.
CHECKS: tuple[_Check, ...] = (
    _Check("row_length", None, "r.extra_values"),
    _Check("participant_unknown", "screening_number", "r.participant_id IS NULL", "r.screening_number"),
    # An invisible participant gets no further participant checks: they would tell the importer about data at a
    # site they may not see.
    _Check(
        "participant_site", "screening_number", "r.participant_id IS NOT NULL AND NOT r.site_visible", "r.site_code"
    ),
    _Check(
        "participant_not_randomized",
        "screening_number",
        "r.site_visible AND r.randomized_on IS NULL",
        "r.participant_status",
    ),
    _Check("participant_locked", "screening_number", "r.site_visible AND r.lock_reason IS NOT NULL", "r.lock_reason"),
    _Check("visit_unknown", "visit", "r.visit_definition_id IS NULL", "r.visit"),
    _Check("visit_missed", "visit", _sql("r.site_visible AND r.visit_status = '{missed}'")),
    _Check("endpoint_unknown", "endpoint", "r.endpoint_id IS NULL", "r.endpoint"),
    _Check(
        "endpoint_not_at_visit",
        "endpoint",
        "r.endpoint_id IS NOT NULL AND r.visit_definition_id IS NOT NULL AND NOT r.scheduled",
    ),
    _Check("duplicate", "endpoint", "r.first_row <> r.row_no", "r.first_row::text"),
    _Check("value_missing", "value", "r.value_text = '' AND r.not_done_reason = ''"),
    _Check("not_a_number", "value", "r.value_text <> '' AND r.value IS NULL", "r.value_text"),
    _Check("not_binary", "value", _NOT_BINARY, "r.value_text"),
    _Check("not_whole", "value", _NOT_WHOLE, "r.value_text"),
    _Check(
        "out_of_range",
        "value",
        f"NOT coalesce({_NOT_BINARY}, false) AND NOT coalesce({_NOT_WHOLE}, false) "
        "AND (r.value < r.min_value OR r.value > r.max_value)",
        "r.value_text",
    ),
    _Check(
        "stored_value_differs",
        "value",
        "r.site_visible AND r.measurement_id IS NOT NULL AND NOT r.unchanged "
        "AND (r.value_text = '' OR r.value IS NOT NULL)",
        "CASE WHEN r.stored_value IS NULL THEN 'not done (' || r.stored_reason || ')' "
        "ELSE r.stored_value::text || CASE WHEN r.stored_event IS NULL THEN '' "
        "ELSE ', event ' || r.stored_event::int END END || ' on ' || r.stored_measured_on::text",
    ),
    _Check(
        "unit_mismatch",
        "unit",
        "r.endpoint_id IS NOT NULL AND r.unit <> r.endpoint_unit AND NOT (r.value_text = '' AND r.unit = '')",
        "r.unit",
    ),
    _Check("date_invalid", "measured_on", "r.measured_on IS NULL", "r.date_text"),
    _Check("date_future", "measured_on", "r.measured_on > %(today)s", "r.date_text"),
    _Check(
        "date_before_screening",
        "measured_on",
        "r.site_visible AND r.measured_on < r.screened_on",
        "r.screened_on::text",
    ),
    _Check(
        "visit_date_differs",
        "measured_on",
        _sql("r.site_visible AND r.visit_status = '{completed}' AND r.measured_on <> r.visit_date"),
        "r.visit_date::text",
    ),
    _Check(
        "visit_date_conflict",
        "measured_on",
        "r.site_visible AND r.visit_definition_id IS NOT NULL AND r.visit_id IS NULL "
        "AND r.measured_on <> r.visit_first_date",
        "r.visit_first_row::text || ' ' || r.visit_first_date::text",
    ),
    _Check("event_missing", "event", _sql("r.kind = '{tte}' AND r.value IS NOT NULL AND r.event_text = ''")),
    _Check(
        "event_invalid",
        "event",
        _sql("r.event_text <> '' AND r.event_occurred IS NULL AND (r.kind IS NULL OR r.kind = '{tte}')"),
        "r.event_text",
    ),
    _Check("event_not_allowed", "event", _sql("r.kind <> '{tte}' AND r.event_text <> ''"), "r.kind"),
    _Check("value_and_reason", "not_done_reason", "r.value_text <> '' AND r.not_done_reason <> ''"),
    _Check("reason_too_long", "not_done_reason", f"length(r.not_done_reason) > {NOT_DONE_REASON_MAX_LENGTH}"),
)


def _column_literal(column: str | None) -> str:
    return "NULL::text" if column is None else f"'{column}'"


_CREATE_ERRORS = _sql(
    "CREATE TEMP TABLE {errors} (row_no integer, col text, code text NOT NULL, detail text, "
    "screening_number text, visit text, endpoint text, endpoint_id bigint)"
)

# Valid rows (the usual case in a large file) are passed over by one OR of all conditions; only rows that fail
# something are expanded into one candidate per check.
_INSERT_ERRORS = _sql(
    """
INSERT INTO {errors} (row_no, col, code, detail, screening_number, visit, endpoint, endpoint_id)
SELECT r.row_no, x.col, x.code, x.detail, r.screening_number, r.visit, r.endpoint, r.endpoint_id
FROM (SELECT * FROM {rows} r WHERE {any_failed}) r
CROSS JOIN LATERAL (VALUES
{candidates}
) AS x(failed, col, code, detail)
WHERE x.failed
""",
    any_failed="\n   OR ".join(f"coalesce(({check.condition}), false)" for check in CHECKS),
    candidates=",\n".join(
        f"(coalesce(({check.condition}), false), {_column_literal(check.column)}, '{check.code}', "
        f"({check.detail})::text)"
        for check in CHECKS
    ),
)

_FIRST_ERRORS = _sql(
    """
SELECT row_no, col, code, detail, screening_number, visit, endpoint, endpoint_id FROM {errors}
ORDER BY row_no NULLS FIRST, array_position(%(columns)s::text[], col) NULLS FIRST, code
LIMIT %(limit)s
"""
)

# JIT compiling these one-off statements costs seconds (about 4 s for 200,000 rows) and saves less than that: the
# work is joins, sorts and index writes, not expression evaluation.
_NO_JIT = "SET LOCAL jit = off"

_ANALYZE_STAGING = _sql("ANALYZE {staging}")
_ANALYZE_ROWS = _sql("ANALYZE {rows}")
_DROP_TEMPORARY = _sql("DROP TABLE IF EXISTS {staging}, {rows}, {errors}")

_COUNT_ERRORS = _sql("SELECT count(*) FROM {errors}")

_COUNTS = _sql(
    """
SELECT count(*) FILTER (WHERE measurement_id IS NULL), count(*) FILTER (WHERE measurement_id IS NOT NULL)
FROM {rows}
"""
)

# Inside the write transaction: did anyone lock a casebook, or enter or change a visit or value of this file, since
# the file was validated? (New visits and values entered meanwhile would also hit the unique constraints.)
_CHANGED_SINCE_VALIDATION = _sql(
    """
SELECT count(DISTINCT r.participant_id) FILTER (WHERE lk.id IS NOT NULL),
       count(*) FILTER (
           WHERE v.id IS DISTINCT FROM r.visit_id OR v.status IS DISTINCT FROM r.visit_status
              OR v.visit_date IS DISTINCT FROM r.visit_date OR m.id IS DISTINCT FROM r.measurement_id
              OR (m.value, m.event_occurred, m.not_done_reason, m.measured_on, m.unit)
                 IS DISTINCT FROM (r.stored_value, r.stored_event, r.stored_reason, r.stored_measured_on, r.stored_unit)
       )
FROM {rows} r
LEFT JOIN {recordlock} lk ON lk.trial_id = %(trial)s AND lk.participant_id = r.participant_id AND lk.unlocked_at IS NULL
LEFT JOIN {visit} v ON v.participant_id = r.participant_id AND v.visit_definition_id = r.visit_definition_id
LEFT JOIN {measurement} m ON m.visit_id = v.id AND m.endpoint_id = r.endpoint_id
"""
)

# Day 0 as baseline_date() defines it: the recorded baseline visit's date, else the baseline visit this file
# creates, else the randomization date (UTC, as randomized_at.date() gives it).
_INSERT_VISITS = _sql(
    """
WITH new_visits AS (
    SELECT participant_id, visit_definition_id, visit_first_date AS visit_date, is_baseline, target_day,
           window_before_days, window_after_days, randomized_on
    FROM {rows} WHERE visit_id IS NULL
    GROUP BY participant_id, visit_definition_id, visit_first_date, is_baseline, target_day, window_before_days,
             window_after_days, randomized_on
), stored_baseline AS (
    SELECT v.participant_id, v.visit_date
    FROM {visit} v JOIN {visitdefinition} vd ON vd.id = v.visit_definition_id
    WHERE vd.trial_id = %(trial)s AND vd.is_baseline AND v.visit_date IS NOT NULL
), file_baseline AS (
    SELECT participant_id, visit_date FROM new_visits WHERE is_baseline
), placed AS (
    SELECT n.participant_id, n.visit_definition_id, n.visit_date, n.target_day, n.window_before_days,
           n.window_after_days, n.visit_date - coalesce(sb.visit_date, fb.visit_date, n.randomized_on) AS study_day
    FROM new_visits n
    LEFT JOIN stored_baseline sb ON sb.participant_id = n.participant_id
    LEFT JOIN file_baseline fb ON fb.participant_id = n.participant_id
), inserted AS (
    INSERT INTO {visit} (version, participant_id, visit_definition_id, status, visit_date, study_day, in_window,
                         missed_reason)
    SELECT 1, participant_id, visit_definition_id, '{completed}', visit_date, study_day,
           study_day BETWEEN target_day - window_before_days AND target_day + window_after_days, ''
    FROM placed
    RETURNING 1
)
SELECT count(*) FROM inserted
"""
)

# The automatic deviation visit_record() raises for a visit out of its window, with the same description.
_INSERT_DEVIATIONS = _sql(
    """
WITH inserted AS (
    INSERT INTO {deviation} (version, participant_id, visit_id, category, severity, description, occurred_on,
                             detected_on, is_automatic)
    SELECT 1, v.participant_id, v.id, %(category)s, %(severity)s,
           vd.name || ' on ' || to_char(v.visit_date, 'YYYY-MM-DD') || ' (study day ' || v.study_day
           || '), outside its window '
           || to_char(v.visit_date - v.study_day + vd.target_day - vd.window_before_days, 'YYYY-MM-DD') || ' – '
           || to_char(v.visit_date - v.study_day + vd.target_day + vd.window_after_days, 'YYYY-MM-DD'),
           v.visit_date, %(today)s, true
    FROM (SELECT DISTINCT participant_id, visit_definition_id FROM {rows} WHERE visit_id IS NULL) n
    JOIN {visit} v ON v.participant_id = n.participant_id AND v.visit_definition_id = n.visit_definition_id
    JOIN {visitdefinition} vd ON vd.id = v.visit_definition_id
    WHERE NOT v.in_window
    RETURNING 1
)
SELECT count(*) FROM inserted
"""
)

_INSERT_MEASUREMENTS = _sql(
    """
WITH inserted AS (
    INSERT INTO {measurement} (version, visit_id, endpoint_id, value, event_occurred, unit, measured_on,
                               not_done_reason)
    SELECT 1, v.id, r.endpoint_id, r.value, r.event_occurred, r.endpoint_unit, r.measured_on, r.not_done_reason
    FROM {rows} r
    JOIN {visit} v ON v.participant_id = r.participant_id AND v.visit_definition_id = r.visit_definition_id
    WHERE r.measurement_id IS NULL
    ORDER BY v.id, r.endpoint_id  -- in index order: the unique index and the foreign-key probes hit cached pages
    RETURNING 1
)
SELECT count(*) FROM inserted
"""
)


# --- Errors -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportProblem:
    """One problem of a file: its row (None for the whole file), column (None for the whole row) and code."""

    row: int | None
    column: str | None
    code: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"row": self.row, "column": self.column, "code": self.code, "message": self.message}


class _FileRejectedError(Exception):
    """The file cannot be staged at all (type, encoding, header): nothing beyond these errors is checked."""

    def __init__(self, errors: list[ImportProblem]) -> None:
        super().__init__(errors[0].message)
        self.errors = errors


class _ChangedMeanwhileError(Exception):
    """Someone locked or changed data of this file between validation and writing: the write is rolled back."""


@dataclass(frozen=True)
class _ErrorRow:
    row: int | None
    column: str | None
    code: str
    detail: str | None
    screening_number: str
    visit: str
    endpoint: str
    endpoint_id: int | None


class _Messages:
    """Human messages for the stored errors, worded like the visit form's (range messages are the form's own)."""

    def __init__(self, trial: Trial) -> None:
        self.trial = trial
        self.endpoints = {e.pk: e for e in trial.endpoints.prefetch_related("visits")}
        self.visit_codes = list(trial.visit_definitions.order_by("order").values_list("code", flat=True))

    def __call__(self, e: _ErrorRow) -> str:  # noqa: C901 - one branch per error code
        code, detail = e.code, e.detail or ""
        who = e.screening_number
        endpoint = self.endpoints.get(e.endpoint_id) if e.endpoint_id else None
        if code == "row_length":
            return "This row has values to the right of the last column named in the header."
        if code == "participant_unknown":
            if not who:
                return "Enter the participant's screening number."
            return f"No participant {who} in {self.trial.protocol_code}."
        if code == "participant_site":
            return f"{who} is at site {detail}, which is not one of your sites."
        if code == "participant_not_randomized":
            return f"{who} is not randomized (status: {detail}); outcomes are recorded after randomization."
        if code == "participant_locked":
            return f"The casebook of {who} is locked ({detail}); a data manager must unlock it first."
        if code == "visit_unknown":
            known = ", ".join(self.visit_codes)
            return f"No visit {detail!r} in the schedule of {self.trial.protocol_code} (visits: {known})."
        if code == "visit_missed":
            return f"Visit {e.visit} of {who} is recorded as missed; it cannot have measurements."
        if code == "endpoint_unknown":
            known = ", ".join(sorted(ep.code for ep in self.endpoints.values()))
            return f"No endpoint {detail!r} in {self.trial.protocol_code} (endpoints: {known})."
        if code == "endpoint_not_at_visit":
            at = ", ".join(v.code for v in sorted(endpoint.visits.all(), key=lambda v: v.order)) if endpoint else ""
            return f"{e.endpoint} is not measured at visit {e.visit} (it is measured at: {at or 'no visit'})."
        if code == "duplicate":
            return f"Row {detail} already gives {e.endpoint} of {who} at visit {e.visit}; give each value once."
        if code == "value_missing":
            return "Enter a value, or say why it was not done (not_done_reason)."
        if code == "not_a_number":
            return f"{detail!r} is not a number (use a dot as the decimal separator, e.g. 45.5)."
        if code in ("not_binary", "not_whole", "out_of_range"):
            problem = endpoint.range_error(float(detail)) if endpoint else None
            return problem or f"{detail} is not allowed for {e.endpoint}."
        if code == "stored_value_differs":
            return (
                f"{who} already has {e.endpoint} = {detail} at visit {e.visit}; an import never overwrites data: "
                "change it in the visit form, giving a reason."
            )
        if code == "unit_mismatch":
            expected = repr(endpoint.unit) if endpoint and endpoint.unit else "no unit (leave it blank)"
            return f"The unit {detail!r} is not the unit of {e.endpoint}: use {expected}."
        if code == "date_invalid":
            if not detail:
                return "Enter the date of the measurement (YYYY-MM-DD)."
            return f"{detail!r} is not a date: use YYYY-MM-DD, e.g. 2025-06-30."
        if code == "date_future":
            return f"The date {detail} is in the future."
        if code == "date_before_screening":
            return f"The date is before screening ({detail})."
        if code == "visit_date_differs":
            return (
                f"Visit {e.visit} of {who} is recorded on {detail}; measured_on must be that date "
                "(change the visit date in the visit form, giving a reason)."
            )
        if code == "visit_date_conflict":
            first_row, first_date = detail.split(" ", 1)
            return f"Row {first_row} puts visit {e.visit} of {who} on {first_date}; one visit has one date."
        if code == "event_missing":
            return "Say whether the event happened (event 1), else the time is censored (event 0)."
        if code == "event_invalid":
            return f"event must be 1 (event happened) or 0 (censored), not {detail!r}."
        if code == "event_not_allowed":
            return f"event is only for time-to-event endpoints; {e.endpoint} is {detail.replace('_', ' ')}."
        if code == "value_and_reason":
            return "Give either a value or why it was not done, not both."
        if code == "reason_too_long":
            return f"Keep not_done_reason under {NOT_DONE_REASON_MAX_LENGTH} characters."
        return code.replace("_", " ").capitalize() + "."


# --- Reading the file -------------------------------------------------------------------------------------------


def _file_kind(path: Path, file_name: str) -> str:
    for name in (file_name, path.name):
        suffix = Path(name).suffix.lower()
        if suffix in CSV_SUFFIXES:
            return "csv"
        if suffix in XLSX_SUFFIXES:
            return "xlsx"
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic == b"PK\x03\x04":
        return "xlsx"
    raise _FileRejectedError(
        [ImportProblem(None, None, "file_type", "Upload a .csv (UTF-8) or .xlsx file; this file is neither.")]
    )


def _header(cells: list[str]) -> list[str]:
    """The staged column of each file column; raises _FileRejectedError for missing, unknown or repeated columns."""
    names = [cell.strip().lower() for cell in cells]
    while names and not names[-1]:  # spreadsheets often carry empty cells right of the last column
        names.pop()
    errors = []
    if len(names) == 1 and ";" in names[0]:
        errors.append(
            ImportProblem(1, None, "columns", "The header is separated by semicolons; save the file as CSV (comma).")
        )
        raise _FileRejectedError(errors)
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        if not name:
            errors.append(ImportProblem(1, None, "unknown_column", f"Column {position} has no name in the header."))
        elif name not in COLUMNS:
            errors.append(
                ImportProblem(
                    1, name, "unknown_column", f"Unknown column {name!r}; the columns are {', '.join(COLUMNS)}."
                )
            )
        elif name in seen:
            errors.append(ImportProblem(1, name, "repeated_column", f"The column {name!r} appears twice."))
        seen.add(name)
    errors += [
        ImportProblem(1, name, "missing_column", f"The column {name!r} is missing from the header.")
        for name in REQUIRED_COLUMNS
        if name not in seen
    ]
    if errors:
        raise _FileRejectedError(errors)
    return names


def _utf8_lines(handle) -> Iterator[str]:
    # Decoded line by line (a newline byte never occurs inside a UTF-8 sequence), so that an undecodable byte is
    # reported at the row being read; a text-mode file decodes ahead in blocks and would blame an earlier row.
    first = True
    for line in handle:
        yield line.decode("utf-8-sig" if first else "utf-8")
        first = False


def _csv_rows(path: Path) -> Iterator[list[str]]:
    """Rows of a UTF-8 CSV file as lists of text, the header first."""
    with path.open("rb") as handle:
        yield from csv.reader(_utf8_lines(handle))


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dt.datetime):
        # A date typed into a spreadsheet cell is a datetime at midnight.
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)  # ints and floats: repr gives the shortest text that reads back as the same float


def _xlsx_rows(path: Path) -> Iterator[list[str]]:
    """Rows of the first worksheet as lists of text, streamed (read-only mode keeps memory flat)."""
    import zipfile

    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise _FileRejectedError(
            [ImportProblem(None, None, "file_type", f"The file is not a readable XLSX workbook ({error}).")]
        ) from error
    try:
        sheet = workbook.worksheets[0]
        sheet.reset_dimensions()  # some writers store a wrong sheet size; read every row there is
        # Read-only sheets yield empty tuples for rows missing from the XML, so positions stay row numbers.
        for values in sheet.iter_rows(values_only=True):
            yield [_cell_text(value) for value in values]
    finally:
        workbook.close()


def _stage(cursor, *, path: Path, kind: str) -> int:
    """COPY the file's rows into the staging table; returns the number of (non-blank) data rows."""
    rows = _csv_rows(path) if kind == "csv" else _xlsx_rows(path)
    row_no = 1
    try:
        header = next(rows, None)
        if header is None:
            raise _FileRejectedError(
                [ImportProblem(None, None, "empty_file", "The file is empty: it needs a header row.")]
            )
        names = _header(header)
        width = len(names)
        statement = pgsql.SQL("COPY {} ({}) FROM STDIN").format(
            pgsql.Identifier(STAGING),
            pgsql.SQL(", ").join(pgsql.Identifier(name) for name in ("row_no", "extra_values", *names)),
        )
        staged = 0
        with cursor.copy(statement) as copy:
            for row_no, fields in enumerate(rows, start=2):
                if not "".join(fields).strip():
                    continue
                extra = False
                if len(fields) != width:
                    extra = any(value.strip() for value in fields[width:])
                    fields = (fields + [""] * width)[:width]  # short rows: the missing trailing values are blank
                copy.write_row((row_no, extra, *fields))
                staged += 1
    except UnicodeDecodeError as error:
        raise _FileRejectedError(
            [
                ImportProblem(
                    row_no + 1,
                    None,
                    "encoding",
                    f"Row {row_no + 1} is not UTF-8 text; save the file as 'CSV UTF-8' and import it again.",
                )
            ]
        ) from error
    except csv.Error as error:
        raise _FileRejectedError(
            [ImportProblem(row_no + 1, None, "csv_syntax", f"The CSV cannot be read: {error}.")]
        ) from (error)
    return staged


# --- The job ----------------------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_job_create(
    *, trial: Trial, user, path: Path | str, file_name: str, dry_run: bool, kind: str = ImportJob.Kind.OUTCOMES
) -> ImportJob:
    """Record a queued import of the file at ``path`` (a server-side path the worker can read)."""
    require(user, trial, Capability.ENTER_DATA)
    path = Path(path)
    with audit_context(reason=INITIAL_ENTRY, user=user):
        return ImportJob.objects.create(
            trial=trial,
            kind=kind,
            requested_by=user,
            file_name=file_name[:255],
            stored_path=str(path),
            sha256=file_sha256(path),
            size=path.stat().st_size,
            dry_run=dry_run,
        )


def _update(job: ImportJob, step: str, user, **fields: object) -> None:
    """Record progress in a short statement of its own so that others see it while the import runs."""
    with audit_context(reason=f"import {job.pk}: {step}", user=user):
        ImportJob.objects.filter(pk=job.pk).update(**fields)
    for name, value in fields.items():
        setattr(job, name, value)


def _trial_lock_error(trial: Trial) -> ImportProblem | None:
    lock = RecordLock.objects.filter(trial=trial, participant__isnull=True, unlocked_at__isnull=True).first()
    status = Trial.objects.only("status").get(pk=trial.pk)  # the database's status, not a stale instance's
    if lock is not None:
        message = f"Trial {trial} is locked ({lock.reason}); a data manager must unlock it before any data can change."
    elif status.is_locked:
        message = f"Trial {trial} is {status.get_status_display().lower()}; its data can no longer change."
    else:
        return None
    return ImportProblem(None, None, "trial_locked", message)


def _drop_temporary_tables() -> None:
    if connection.connection is None or connection.needs_rollback:
        return  # the session is gone or its transaction failed: the tables go with it
    with connection.cursor() as cursor:
        cursor.execute(_DROP_TEMPORARY)


def import_outcomes(
    *, trial: Trial, user, path: Path | str, file_name: str, dry_run: bool, job: ImportJob | None = None
) -> ImportJob:
    """Validate the file at ``path`` and, unless ``dry_run`` or invalid, import every row of it in one transaction.

    Returns the job with its outcome: ``valid`` (dry run, nothing written), ``invalid`` (``errors`` lists the first
    1,000 problems; nothing written), ``imported`` or ``failed`` (``message`` says why; nothing written). Raises
    PermissionDenied before any work when the user may not enter data in ``trial``; re-raises unexpected errors
    after marking the job failed.
    """
    path = Path(path)
    if job is None:
        job = import_job_create(trial=trial, user=user, path=path, file_name=file_name, dry_run=dry_run)
    else:
        require(user, trial, Capability.ENTER_DATA)
    try:
        _run(job=job, trial=trial, user=user, path=path, file_name=file_name, dry_run=dry_run)
    except Exception as error:
        logger.exception("import job %s failed", job.pk)
        # With the database gone (or an enclosing transaction broken) the job cannot be marked; the original error
        # matters more, and a job left "validating" or "importing" is simply run again by its task.
        with contextlib.suppress(DatabaseError, TransactionManagementError):
            _update(
                job,
                "failed",
                user,
                status=ImportJob.Status.FAILED,
                message=f"{type(error).__name__}: {error}"[:2000],
                finished_at=timezone.now(),
            )
        raise
    finally:
        _drop_temporary_tables()
    return job


def _run(*, job: ImportJob, trial: Trial, user, path: Path, file_name: str, dry_run: bool) -> None:
    _update(job, "validating", user, status=ImportJob.Status.VALIDATING, progress=1, dry_run=dry_run, message="")
    _drop_temporary_tables()  # a previous run in this session that died half-way
    sites = visible_site_ids(user, trial)
    params = {
        "trial": trial.pk,
        "all_sites": sites is ALL_SITES,
        "site_ids": sorted(sites or ()),
        "today": timezone.localdate(),
        "ws": _WHITESPACE,
        "number_re": _NUMBER_RE,
        "date_re": _DATE_RE,
    }
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_CREATE_STAGING)
            rows_total = _stage(cursor, path=path, kind=_file_kind(path, file_name))
            cursor.execute(_ANALYZE_STAGING)  # temporary tables are never auto-analyzed: the joins need stats
    except _FileRejectedError as rejected:
        _finish_invalid(job, user, rejected.errors, len(rejected.errors), rows_total=0)
        return
    _update(job, "file staged", user, progress=30, rows_total=rows_total)

    with transaction.atomic(), connection.cursor() as cursor:
        # The window sorts over a large file spill to disk at the default 4 MB; this transaction only.
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(_NO_JIT)
        cursor.execute(_CREATE_ROWS, params)
        cursor.execute(_ANALYZE_ROWS)
        cursor.execute(_CREATE_ERRORS)
        cursor.execute(_INSERT_ERRORS, params)
        cursor.execute(_COUNT_ERRORS)
        (error_count,) = cursor.fetchone()
        cursor.execute(_FIRST_ERRORS, {"columns": list(COLUMNS), "limit": MAX_STORED_ERRORS})
        first = [_ErrorRow(*row) for row in cursor.fetchall()]
        cursor.execute(_COUNTS)
        to_insert, unchanged = cursor.fetchone()
    messages = _Messages(trial)
    errors = [ImportProblem(e.row, e.column, e.code, messages(e)) for e in first]
    file_errors = [error for error in (_trial_lock_error(trial),) if error is not None]
    if rows_total == 0:
        file_errors.append(ImportProblem(None, None, "no_rows", "The file has a header but no data rows."))
    if file_errors or error_count:
        _finish_invalid(job, user, file_errors + errors, len(file_errors) + error_count, rows_total=rows_total)
        return
    if dry_run:
        _update(
            job,
            "validated (dry run)",
            user,
            status=ImportJob.Status.VALID,
            progress=100,
            rows_unchanged=unchanged,
            error_count=0,
            errors=[],
            message=f"Valid: {to_insert} rows would be imported, {unchanged} are already stored unchanged.",
            finished_at=timezone.now(),
        )
        return
    _update(job, "importing", user, status=ImportJob.Status.IMPORTING, progress=60)
    try:
        _write(job=job, trial=trial, user=user, file_name=file_name, params=params, unchanged=unchanged)
    except (_ChangedMeanwhileError, IntegrityError) as error:
        message = str(error) if isinstance(error, _ChangedMeanwhileError) else _changed_message()
        _update(job, "failed", user, status=ImportJob.Status.FAILED, message=message, finished_at=timezone.now())


def _changed_message(locked: int = 0, changed: int = 0) -> str:
    parts = []
    if locked:
        parts.append(f"{locked} casebook(s) of this file were locked")
    if changed:
        parts.append(f"{changed} of its values or visits were entered or changed by someone else")
    what = " and ".join(parts) or "data of this file were entered by someone else"
    return f"While the file was being imported, {what}; nothing was imported. Run the import again."


def _write(*, job: ImportJob, trial: Trial, user, file_name: str, params: dict, unchanged: int) -> None:
    """Create the missing visits and insert the new values, all in one transaction with the audit context set.

    audit_context sets ``pghistory.context_metadata`` (reason, user, username, job) before each statement, so the
    audit triggers stamp every inserted visit, deviation and measurement with them; it also composes with an
    enclosing request context, which a bare ``set_config`` would be overwritten by.
    """
    reason = f"bulk import {job.pk} of {file_name}"
    today = timezone.localdate()
    with transaction.atomic(), audit_context(reason=reason, user=user, import_job=job.pk), connection.cursor() as c:
        trial_locked = _trial_lock_error(trial)
        if trial_locked is not None:
            raise _ChangedMeanwhileError(trial_locked.message + " Nothing was imported.")
        c.execute(_CHANGED_SINCE_VALIDATION, params)
        locked, changed = c.fetchone()
        if locked or changed:
            raise _ChangedMeanwhileError(_changed_message(locked, changed))
        # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: every inserted row's checks would wait on the
        # transaction's deferred-trigger list until the commit. Checking at the end of each statement keeps that
        # list short (and any subtransaction that scans it cheap); the checks are the same. They remain the largest
        # cost of the write after the audit events: one index probe per row and foreign key, which PostgreSQL cannot
        # do set-based while the constraint stays in place.
        c.execute("SET CONSTRAINTS ALL IMMEDIATE")
        c.execute(_NO_JIT)
        c.execute(_INSERT_VISITS, params)
        (visits,) = c.fetchone()
        c.execute(
            _INSERT_DEVIATIONS,
            {
                "today": today,
                "category": ProtocolDeviation.Category.VISIT_WINDOW.value,
                "severity": ProtocolDeviation.Severity.MINOR.value,
            },
        )
        (deviations,) = c.fetchone()
        c.execute(_INSERT_MEASUREMENTS)
        (imported,) = c.fetchone()
        c.execute("SET CONSTRAINTS ALL DEFERRED")  # Django's default again, should an outer transaction go on
        summary = f"Imported {imported} values; {unchanged} were already stored unchanged; {visits} visits created"
        if deviations:
            summary += f", {deviations} of them out of window (protocol deviations raised)"
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.IMPORTED,
            progress=100,
            rows_imported=imported,
            rows_unchanged=unchanged,
            error_count=0,
            errors=[],
            message=summary + ".",
            finished_at=timezone.now(),
        )
    job.refresh_from_db()


def _finish_invalid(job: ImportJob, user, errors: list[ImportProblem], error_count: int, *, rows_total: int) -> None:
    shown = errors[:MAX_STORED_ERRORS]
    _update(
        job,
        "invalid",
        user,
        status=ImportJob.Status.INVALID,
        progress=100,
        rows_total=rows_total,
        rows_imported=0,
        rows_unchanged=0,
        error_count=error_count,
        errors=[error.as_dict() for error in shown],
        message=f"Nothing was imported: {error_count} error(s)"
        + (f", the first {len(shown)} listed." if error_count > len(shown) else "."),
        finished_at=timezone.now(),
    )


# --- Running a queued job (Celery) ------------------------------------------------------------------------------


def import_job_run(*, job_id: int) -> ImportJob | None:
    """Run a queued job; a finished job, or one another worker is running, is left alone (tasks may be redelivered).

    A job found "validating" or "importing" lost its worker half-way: nothing of it was written (the write and the
    final status commit together), so it simply runs again.
    """
    job = ImportJob.objects.select_related("trial", "requested_by").filter(pk=job_id).first()
    if job is None or job.status in FINISHED_STATUSES:
        return job
    key = (ADVISORY_LOCK_NAMESPACE, job_id % (1 << 31))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
        (acquired,) = cursor.fetchone()
    if not acquired:
        return job
    try:
        job.refresh_from_db()
        if job.status in FINISHED_STATUSES:
            return job
        path = Path(job.stored_path)
        if not path.is_absolute():  # uploads are stored relative to the artifact store (outside the web root)
            path = Path(settings.ARTIFACT_ROOT) / path
        problem = None
        runner = IMPORTERS.get(job.kind)
        if runner is None:
            problem = f"Importing {job.get_kind_display().lower()} from a file is not available yet."
        elif not path.is_file():
            problem = f"The uploaded file {job.file_name} is no longer at {job.stored_path}."
        elif file_sha256(path) != job.sha256:
            problem = f"The file at {job.stored_path} changed after it was uploaded (SHA-256 differs)."
        if problem:
            _update(
                job,
                "failed",
                job.requested_by,
                status=ImportJob.Status.FAILED,
                message=problem,
                finished_at=timezone.now(),
            )
            return job
        try:
            return runner(
                trial=job.trial,
                user=job.requested_by,
                path=path,
                file_name=job.file_name,
                dry_run=job.dry_run,
                job=job,
            )
        except PermissionDenied as error:
            _update(
                job,
                "failed",
                job.requested_by,
                status=ImportJob.Status.FAILED,
                message=str(error),
                finished_at=timezone.now(),
            )
            return job
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)


def _import_adverse_events(**kwargs):
    from participants.exchange.adverse_event_import import import_adverse_events

    return import_adverse_events(**kwargs)


IMPORTERS = {ImportJob.Kind.OUTCOMES: import_outcomes, ImportJob.Kind.ADVERSE_EVENTS: _import_adverse_events}


def format_errors(errors: Iterable[dict], *, limit: int) -> list[str]:
    """``row 12, value: message`` lines for a console or an e-mail."""
    lines = []
    for error in list(errors)[:limit]:
        where = f"row {error['row']}" if error.get("row") is not None else "file"
        if error.get("column"):
            where += f", {error['column']}"
        lines.append(f"{where} [{error['code']}]: {error['message']}")
    return lines


__all__ = [
    "COLUMNS",
    "MAX_STORED_ERRORS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "format_errors",
    "import_job_create",
    "import_job_run",
    "import_outcomes",
]
