"""The one boundary from the ORM to DataFrames: every analysis, report, export and benchmark reads here.

Frames are built from ``.values_list`` with named columns or, for the frozen datasets where that is slowest
(efficacy, up to a million rows; subjects, time to event, exposure), from ``COPY (SELECT …) TO STDOUT`` read by
``pandas.read_csv`` (``copy_frame``). Participants are identified by a pseudonymous subject id (``USUBJID`` =
protocol code + screening number); no direct identifiers leave the database. Treatment assignment is included
only when the caller asks for it (``with_arm=True``), which only unblinded code paths do.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pandas as pd
from django.db import connection, transaction
from django.utils import timezone

from participants.meddra import SOC_NAMES
from participants.models import (
    AdverseEvent,
    DoseAdministration,
    OutcomeMeasurement,
    Participant,
    ProtocolDeviation,
    Randomization,
    Visit,
)
from trials.models import Arm, EligibilityCriterion, Endpoint, ProductLot, Site, VisitDefinition


def subjects(trial, *, with_arm: bool) -> pd.DataFrame:
    """One row per randomized participant: USUBJID, SITEID, strata columns and (optionally) ARM."""
    columns = ["participant_id", "screening_number", "site", "strata", "age", "sex"]
    fields = ["pk", "screening_number", "site__code", "strata", "age_at_screening", "sex"]
    if with_arm:
        columns.append("arm")
        fields.append("randomization__arm__code")
    rows = Participant.objects.filter(trial=trial, randomization__isnull=False).order_by("pk").values_list(*fields)
    frame = pd.DataFrame(list(rows), columns=columns)
    frame.insert(0, "USUBJID", trial.protocol_code + "-" + frame["screening_number"])
    strata = pd.json_normalize(frame.pop("strata").tolist()).set_axis(frame.index)
    return pd.concat([frame.drop(columns=["screening_number"]), strata], axis=1)


def endpoint_values(trial, *, endpoint_code: str) -> pd.DataFrame:
    """Long format: one row per participant × visit with a recorded value of ``endpoint_code``."""
    rows = (
        OutcomeMeasurement.objects.filter(visit__participant__trial=trial, endpoint__code=endpoint_code)
        .order_by("visit__participant_id", "visit__visit_definition__order")
        .values_list(
            "visit__participant_id",
            "visit__visit_definition__code",
            "visit__visit_definition__order",
            "visit__study_day",
            "value",
            "event_occurred",
        )
    )
    return pd.DataFrame(list(rows), columns=["participant_id", "visit", "visit_order", "study_day", "value", "event"])


def change_from_baseline(trial, *, endpoint_code: str, visit_code: str, with_arm: bool) -> pd.DataFrame:
    """Per participant: baseline, value at ``visit_code`` and change (NaN where either is missing)."""
    values = endpoint_values(trial, endpoint_code=endpoint_code)
    baseline_visit = trial.visit_definitions.get(is_baseline=True).code
    wide = values.pivot_table(index="participant_id", columns="visit", values="value", aggfunc="first")
    frame = subjects(trial, with_arm=with_arm).set_index("participant_id")
    frame["baseline"] = wide.get(baseline_visit)
    frame["value"] = wide.get(visit_code)
    frame["change"] = frame["value"] - frame["baseline"]
    return frame.reset_index()


# ---------------------------------------------------------------------------------------------------------
# CDISC ADaM-style analysis datasets as of a data cut-off (frozen with every analysis run)
# ---------------------------------------------------------------------------------------------------------

ADSL_COLUMNS = [
    "USUBJID",
    "SUBJID",
    "SITEID",
    "TRT01P",
    "TRT01A",
    "RANDDT",
    "ITTFL",
    "SAFFL",
    "PPROTFL",
    "AGE",
    "SEX",
    "EOSSTT",
    "DCSREAS",
    "EOSDT",
    "TRTSDT",
]
ADEFF_COLUMNS = ["USUBJID", "PARAMCD", "PARAM", "AVISIT", "AVISITN", "ADY", "AVAL", "BASE", "CHG", "ANL01FL"]
ADAE_COLUMNS = [
    "USUBJID",
    "AEBODSYS",
    "AEDECOD",
    "AETOXGR",
    "AESER",
    "AEREL",
    "TRTEMFL",
    "ASTDT",
    "AENDT",
    "AEOUT",
    "AEACN",
    "AESDTH",
]
ADTTE_COLUMNS = ["USUBJID", "PARAMCD", "PARAM", "AVAL", "CNSR", "STARTDT", "ADT"]


def _usubjid(protocol_code: str, screening_numbers: pd.Series) -> pd.Series:
    return protocol_code + "-" + screening_numbers.astype(str)


# The cut-off applies to the dates of timestamps in the current time zone, as Django's ``__date`` lookups take
# them (``AT TIME ZONE %s``); the dates reported (RANDDT, EXSTDT) are UTC dates.
_ADSL_SQL = f"""
SELECT p.id AS pk, p.screening_number AS "SUBJID", s.code AS "SITEID", a.code AS "TRT01P",
       (r.randomized_at AT TIME ZONE 'UTC')::date AS "RANDDT", p.age_at_screening AS "AGE", p.sex AS "SEX", p.strata,
       p.withdrawal_reason, p.withdrawn_on, p.completed_on
FROM {Participant._meta.db_table} p
JOIN {Randomization._meta.db_table} r ON r.participant_id = p.id
JOIN {Site._meta.db_table} s ON s.id = p.site_id
JOIN {Arm._meta.db_table} a ON a.id = r.arm_id
WHERE p.trial_id = %s AND (r.randomized_at AT TIME ZONE %s)::date <= %s
ORDER BY p.screening_number
"""  # noqa: S608 - table names from the models, values are parameters

_FIRST_DOSE_SQL = f"""
SELECT DISTINCT ON (x.participant_id) x.participant_id AS pk, (x.administered_at AT TIME ZONE %s)::date AS first_dose
FROM {DoseAdministration._meta.db_table} x
JOIN {Participant._meta.db_table} p ON p.id = x.participant_id
WHERE p.trial_id = %s AND (x.administered_at AT TIME ZONE %s)::date <= %s
ORDER BY x.participant_id, x.administered_at
"""  # noqa: S608 - table names from the models, values are parameters


def adsl(trial, cutoff) -> pd.DataFrame:
    """Subject-level dataset: every participant randomized on or before ``cutoff``."""
    factors = list(trial.stratification_factors.order_by("code").values_list("code", flat=True))
    zone = timezone.get_current_timezone_name()
    frame = _copy_rows(
        _ADSL_SQL,
        [trial.pk, zone, cutoff],
        text=("SUBJID", "SITEID", "TRT01P", "SEX", "withdrawal_reason"),
        dates=("RANDDT", "withdrawn_on", "completed_on"),
        json_values=("strata",),
    )
    doses = _copy_rows(_FIRST_DOSE_SQL, [zone, trial.pk, zone, cutoff], dates=("first_dose",))
    first_dose = dict(zip(doses["pk"], doses["first_dose"], strict=True))
    major = set(
        ProtocolDeviation.objects.filter(
            participant__trial=trial, severity="major", occurred_on__lte=cutoff
        ).values_list("participant_id", flat=True)
    )
    frame.insert(0, "USUBJID", _usubjid(trial.protocol_code, frame["SUBJID"]))
    frame["TRTSDT"] = frame["pk"].map(first_dose)
    frame["ITTFL"] = "Y"
    frame["SAFFL"] = frame["TRTSDT"].notna().map({True: "Y", False: "N"})
    frame["TRT01A"] = frame["TRT01P"].where(frame["SAFFL"] == "Y", "")
    frame["PPROTFL"] = ((frame["SAFFL"] == "Y") & ~frame["pk"].isin(major)).map({True: "Y", False: "N"})
    ended = frame["withdrawn_on"].notna() & (frame["withdrawn_on"] <= cutoff)
    completed = frame["completed_on"].notna() & (frame["completed_on"] <= cutoff)
    frame["EOSSTT"] = "ONGOING"
    frame.loc[completed, "EOSSTT"] = "COMPLETED"
    frame.loc[ended, "EOSSTT"] = "DISCONTINUED"
    frame["DCSREAS"] = frame["withdrawal_reason"].where(ended, "").str.upper()
    frame["EOSDT"] = frame["withdrawn_on"].where(ended, frame["completed_on"].where(completed))
    for factor in factors:
        frame[factor.upper()] = [strata.get(factor, "") for strata in frame["strata"]]
    return frame[["pk", *ADSL_COLUMNS, *[f.upper() for f in factors]]].reset_index(drop=True)


_EFFICACY_KINDS = ("continuous", "binary", "count", "ordinal")

# adeff's rows straight from the tables: a million measurements come through COPY … TO STDOUT and read_csv in a
# few seconds, where building model tuples took most of a minute. Unordered: freeze() sorts every dataset.
_ADEFF_SQL = f"""
SELECT v.participant_id AS pk, e.code AS "PARAMCD", e.name AS "PARAM", d.code AS "AVISIT", d."order" AS "AVISITN",
       v.study_day AS "ADY", m.value AS "AVAL", d.is_baseline
FROM {OutcomeMeasurement._meta.db_table} m
JOIN {Visit._meta.db_table} v ON v.id = m.visit_id
JOIN {Participant._meta.db_table} p ON p.id = v.participant_id
JOIN {Endpoint._meta.db_table} e ON e.id = m.endpoint_id
JOIN {VisitDefinition._meta.db_table} d ON d.id = v.visit_definition_id
WHERE p.trial_id = %s AND v.visit_date <= %s AND e.kind = ANY(%s)
"""  # noqa: S608 - table names from the models, values are parameters


def copy_frame(select: str, params: list, *, text: tuple[str, ...] = (), floats: tuple[str, ...] = ()) -> pd.DataFrame:
    """The rows of ``select`` as a DataFrame, through ``COPY … TO STDOUT (FORMAT csv)`` and ``pandas.read_csv``.

    ``text`` columns keep their text as stored (never read as missing or as numbers; CSV cannot tell NULL from an
    empty text, so NULL reads as empty too), ``floats`` are float64 even when every value is whole, and every float
    reads back exactly as stored (PostgreSQL writes the shortest exact text, pandas parses it exactly). Other columns
    are inferred; ``t``/``f`` are booleans, empty is missing.
    """
    buffer = io.BytesIO()
    with transaction.atomic(), connection.cursor() as cursor:
        # JIT compiling a plain scan-and-join costs about half a second and saves nothing.
        cursor.execute("SET LOCAL jit = off")
        # The psycopg cursor itself: Django's debug wrapper (DEBUG=True) has a copy() without parameters.
        with cursor.cursor.copy(f"COPY ({select}) TO STDOUT (FORMAT csv, HEADER)", params) as copy:
            for data in copy:
                buffer.write(data)
    buffer.seek(0)
    # read_csv takes missing-value markers per column only by name, so the names come from COPY's header.
    header = next(csv.reader([buffer.readline().decode()]))
    buffer.seek(0)
    return pd.read_csv(
        buffer,
        dtype={**dict.fromkeys(text, str), **dict.fromkeys(floats, "float64")},
        keep_default_na=False,
        na_values={column: [""] for column in header if column not in text},
        true_values=["t"],
        false_values=["f"],
    )


def _copy_rows(
    select: str,
    params: list,
    *,
    text: tuple[str, ...] = (),
    floats: tuple[str, ...] = (),
    dates: tuple[str, ...] = (),
    json_values: tuple[str, ...] = (),
) -> pd.DataFrame:
    """``copy_frame`` shaped like the frame that ``values_list`` rows gave, on which the datasets' derivations, and so
    their dtypes, rest: ``dates`` are ``datetime.date`` objects, ``json_values`` columns are selected as JSON and
    decoded (both ``None`` where NULL), and no rows give object columns.

    A text that may be NULL is selected as ``to_json(…)``: CSV cannot tell NULL from an empty text, JSON can.
    """
    frame = copy_frame(select, params, text=(*text, *dates, *json_values), floats=floats)
    if frame.empty:
        return frame.astype(object)
    # Neither a date nor a JSON text is ever empty, so empty is NULL. The lists give pandas the Python objects the ORM
    # gave, and the dtypes it inferred from them (a column of None only is an object column, not str).
    for column in dates:
        frame[column] = [dt.date.fromisoformat(day) if day else None for day in frame[column].tolist()]
    for column in json_values:
        # One JSON array decoded at once: a json.loads call per row takes several times as long.
        frame[column] = json.loads(f"[{','.join(value or 'null' for value in frame[column].tolist())}]")
    return frame


def adeff(trial, cutoff, subjects: pd.DataFrame) -> pd.DataFrame:
    """One row per participant × visit × parameter for continuous and binary endpoints (in no particular order)."""
    frame = copy_frame(
        _ADEFF_SQL, [trial.pk, cutoff, list(_EFFICACY_KINDS)], text=("PARAMCD", "PARAM", "AVISIT"), floats=("AVAL",)
    )
    frame = frame[frame["pk"].isin(subjects["pk"])]
    # Each participant's baseline value of each parameter (the earliest baseline visit's, should there be two).
    baseline = (
        frame.loc[frame["is_baseline"], ["pk", "PARAMCD", "AVISITN", "AVAL"]]
        .sort_values("AVISITN")
        .drop_duplicates(["pk", "PARAMCD"])
        .drop(columns="AVISITN")
        .rename(columns={"AVAL": "BASE"})
    )
    frame = frame.merge(baseline, on=["pk", "PARAMCD"], how="left")
    frame["CHG"] = (frame["AVAL"] - frame["BASE"]).where(~frame["is_baseline"])
    frame["ANL01FL"] = frame["AVAL"].notna().map({True: "Y", False: ""})
    frame = frame.merge(subjects[["pk", "USUBJID"]], on="pk")
    return frame[["pk", *ADEFF_COLUMNS]].reset_index(drop=True)


_ADAE_SQL = f"""
SELECT x.participant_id AS pk, x.soc, x.term AS "AEDECOD", x.grade AS "AETOXGR", x.serious, x.causality,
       x.onset_date AS "ASTDT", x.stop_date AS "AENDT", x.outcome AS "AEOUT", x.action_taken AS "AEACN",
       x.results_in_death AS death
FROM {AdverseEvent._meta.db_table} x
JOIN {Participant._meta.db_table} p ON p.id = x.participant_id
WHERE p.trial_id = %s AND x.onset_date <= %s
ORDER BY x.participant_id, x.onset_date, x.id
"""  # noqa: S608 - table names from the models, values are parameters


def adae(trial, cutoff, subjects: pd.DataFrame) -> pd.DataFrame:
    frame = _copy_rows(
        _ADAE_SQL,
        [trial.pk, cutoff],
        text=("soc", "AEDECOD", "causality", "AEOUT", "AEACN"),
        dates=("ASTDT", "AENDT"),
    )
    frame = frame.merge(subjects[["pk", "USUBJID", "TRTSDT"]], on="pk")
    frame["AEBODSYS"] = frame["soc"].map(SOC_NAMES)
    frame["AESER"] = frame["serious"].map({True: "Y", False: "N"})
    frame["AEREL"] = frame["causality"].isin(AdverseEvent.RELATED).map({True: "Y", False: "N"})
    treatment_emergent = frame["TRTSDT"].notna() & (frame["ASTDT"] >= frame["TRTSDT"])
    frame["TRTEMFL"] = treatment_emergent.map({True: "Y", False: "N"})
    frame["AENDT"] = frame["AENDT"].where(frame["AENDT"].isna() | (frame["AENDT"] <= cutoff))
    frame["AESDTH"] = frame["death"].map({True: "Y", False: "N"})
    return frame[["pk", *ADAE_COLUMNS]].reset_index(drop=True)


# Not limited to the cut-off: a value recorded later still counts, censored at the cut-off. Should a participant have
# a value at several visits, the latest visit's counts (ordered last here, kept by drop_duplicates).
_TIME_TO_EVENT_SQL = f"""
SELECT v.participant_id AS pk, m.endpoint_id, m.value, m.event_occurred AS event
FROM {OutcomeMeasurement._meta.db_table} m
JOIN {Visit._meta.db_table} v ON v.id = m.visit_id
JOIN {VisitDefinition._meta.db_table} d ON d.id = v.visit_definition_id
WHERE m.endpoint_id = ANY(%s) AND m.value IS NOT NULL
ORDER BY d."order"
"""  # noqa: S608 - table names from the models, values are parameters

_LAST_VISIT_SQL = f"""
SELECT participant_id AS pk, max(visit_date) AS last_visit
FROM {Visit._meta.db_table}
WHERE participant_id = ANY(%s) AND visit_date <= %s AND status = 'completed'
GROUP BY participant_id
"""  # noqa: S608 - table names from the models, values are parameters


def adtte(trial, cutoff, subjects: pd.DataFrame) -> pd.DataFrame:
    """Time-to-event parameters: an event dated after the cut-off is censored at the cut-off.

    A participant without a value is censored at the last completed visit on or before the cut-off (at
    randomization, without one)."""
    endpoints = pd.DataFrame(
        list(trial.endpoints.filter(kind="time_to_event").values_list("pk", "code", "name")),
        columns=["endpoint_id", "PARAMCD", "PARAM"],
    )
    if subjects.empty or endpoints.empty:
        # Object columns, like every dataset without rows.
        return pd.DataFrame([], columns=["pk", *ADTTE_COLUMNS])
    recorded = copy_frame(_TIME_TO_EVENT_SQL, [endpoints["endpoint_id"].tolist()], floats=("value",))
    frame = (
        subjects[["pk", "USUBJID", "RANDDT"]]
        .merge(endpoints, how="cross")
        .merge(recorded.drop_duplicates(["pk", "endpoint_id"], keep="last"), on=["pk", "endpoint_id"], how="left")
    )
    # Only a participant without a value is censored at the last visit: reading only their visits, by index, spares
    # sorting every visit of the trial.
    unmeasured = frame.loc[frame["value"].isna(), "pk"].unique().tolist()
    frame = frame.merge(copy_frame(_LAST_VISIT_SQL, [unmeasured, cutoff]), on="pk", how="left")
    start = pd.to_datetime(frame["RANDDT"])
    follow_up = (pd.Timestamp(cutoff) - start).dt.days
    value = frame["value"]
    observed = value.notna() & frame["event"].eq(True) & (value <= follow_up)
    since_last_visit = (pd.to_datetime(frame["last_visit"]) - start).dt.days.fillna(0).clip(lower=0)
    time = value.where(observed, value.clip(upper=follow_up)).fillna(since_last_visit).astype("float64")
    # ADT is AVAL days after randomization, rounded half to even as Python's round() does.
    end = start + pd.to_timedelta(time.round(), unit="D")
    return pd.DataFrame(
        {
            "pk": frame["pk"],
            "USUBJID": frame["USUBJID"],
            "PARAMCD": frame["PARAMCD"],
            "PARAM": frame["PARAM"],
            "AVAL": time,
            "CNSR": (~observed).astype("int64"),
            "STARTDT": frame["RANDDT"],
            "ADT": end.dt.date,
        }
    )


_ADEX_SQL = f"""
SELECT x.participant_id AS pk, to_json(l.lot_number) AS "EXLOT", x.particles_given AS "EXDOSE",
       x.volume_ml AS "EXVOL", x.route AS "EXROUTE", (x.administered_at AT TIME ZONE 'UTC')::date AS "EXSTDT"
FROM {DoseAdministration._meta.db_table} x
JOIN {Participant._meta.db_table} p ON p.id = x.participant_id
LEFT JOIN {ProductLot._meta.db_table} l ON l.id = x.lot_id
WHERE p.trial_id = %s AND (x.administered_at AT TIME ZONE %s)::date <= %s
ORDER BY x.participant_id, x.administered_at
"""  # noqa: S608 - table names from the models, values are parameters


def adex(trial, cutoff, subjects: pd.DataFrame) -> pd.DataFrame:
    """Exposure: one row per administration, with the product lot and the particles given."""
    frame = _copy_rows(
        _ADEX_SQL,
        [trial.pk, timezone.get_current_timezone_name(), cutoff],
        text=("EXROUTE",),
        floats=("EXDOSE", "EXVOL"),
        dates=("EXSTDT",),
        json_values=("EXLOT",),
    )
    frame = frame.merge(subjects[["pk", "USUBJID", "TRT01A"]], on="pk")
    frame["EXTRT"] = frame["TRT01A"]
    frame["EXLOT"] = frame["EXLOT"].fillna("")
    return frame[["pk", "USUBJID", "EXTRT", "EXLOT", "EXDOSE", "EXVOL", "EXROUTE", "EXSTDT"]]


_SCREENING_SQL = f"""
SELECT p.id AS pk, p.screening_number AS "SUBJID", s.code AS "SITEID", p.screened_on AS "SCRNDT", p.status,
       to_json(c.code) AS code, to_json(c.text) AS text
FROM {Participant._meta.db_table} p
JOIN {Site._meta.db_table} s ON s.id = p.site_id
LEFT JOIN {EligibilityCriterion._meta.db_table} c ON c.id = p.screen_failure_criterion_id
WHERE p.trial_id = %s AND p.screened_on <= %s
ORDER BY p.screening_number
"""  # noqa: S608 - table names from the models, values are parameters


def screening(trial, cutoff) -> pd.DataFrame:
    """Everyone screened on or before the cut-off, with the failed criterion (the top of the CONSORT flow)."""
    frame = _copy_rows(
        _SCREENING_SQL,
        [trial.pk, cutoff],
        text=("SUBJID", "SITEID", "status"),
        dates=("SCRNDT",),
        json_values=("code", "text"),
    )
    frame["SCRNFL"] = (frame["status"] == "screen_failed").map({True: "Y", False: "N"})
    frame["SCRNFREAS"] = (frame["code"].fillna("") + ": " + frame["text"].fillna("")).where(frame["SCRNFL"] == "Y", "")
    return frame[["pk", "SUBJID", "SITEID", "SCRNDT", "SCRNFL", "SCRNFREAS"]]


def data_queries(trial, cutoff) -> pd.DataFrame:
    from participants.models import DataQuery

    rows = list(
        DataQuery.objects.filter(participant__trial=trial, raised_at__date__lte=cutoff)
        .order_by("pk")
        .values_list("pk", "participant__site__code", "status", "raised_at", "closed_at")
    )
    frame = pd.DataFrame(rows, columns=["pk", "SITEID", "status", "raised_at", "closed_at"])
    closed_by_cutoff = pd.to_datetime(frame["closed_at"], utc=True).dt.date.le(cutoff).fillna(value=False)
    frame["QSTAT"] = frame["status"].str.upper().where(~closed_by_cutoff, "CLOSED")
    frame.loc[~closed_by_cutoff & (frame["QSTAT"] == "CLOSED"), "QSTAT"] = "ANSWERED"
    frame["QRAISEDT"] = pd.to_datetime(frame["raised_at"], utc=True).dt.date
    return frame[["pk", "SITEID", "QSTAT", "QRAISEDT"]]


DATASET_ORDER = {
    "adsl": ["USUBJID"],
    "adeff": ["USUBJID", "PARAMCD", "AVISITN"],
    "adae": ["USUBJID", "ASTDT", "AEDECOD"],
    "adtte": ["USUBJID", "PARAMCD"],
    "adex": ["USUBJID", "EXSTDT"],
    "screening": ["SUBJID"],
    "queries": ["QRAISEDT", "SITEID", "QSTAT"],
}


def freeze(trial, cutoff) -> dict[str, pd.DataFrame]:
    """The analysis datasets of ``trial`` as of ``cutoff``, sorted, without internal ids."""
    subjects = adsl(trial, cutoff)
    datasets = {
        "adsl": subjects,
        "adeff": adeff(trial, cutoff, subjects),
        "adae": adae(trial, cutoff, subjects),
        "adtte": adtte(trial, cutoff, subjects),
        "adex": adex(trial, cutoff, subjects),
        "screening": screening(trial, cutoff),
        "queries": data_queries(trial, cutoff),
    }
    return {
        name: frame.drop(columns=["pk"]).sort_values(DATASET_ORDER[name], kind="stable").reset_index(drop=True)
        for name, frame in datasets.items()
    }
