"""The one boundary from the ORM to DataFrames: every analysis, report, export and benchmark reads here.

Frames are built from ``.values_list`` with named columns, or, for the million-row efficacy dataset, from
``COPY (SELECT …) TO STDOUT`` read by ``pandas.read_csv`` (``copy_frame``). Participants are identified by a
pseudonymous subject id (``USUBJID`` = protocol code + screening number); no direct identifiers leave
the database. Treatment assignment is included only when the caller asks for it (``with_arm=True``),
which only unblinded code paths do.
"""

from __future__ import annotations

import io

import pandas as pd
from django.db import connection, transaction

from participants.models import OutcomeMeasurement, Participant, Visit
from trials.models import Endpoint, VisitDefinition


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


def adsl(trial, cutoff) -> pd.DataFrame:
    """Subject-level dataset: every participant randomized on or before ``cutoff``."""
    from participants.models import DoseAdministration, ProtocolDeviation

    factors = list(trial.stratification_factors.order_by("code").values_list("code", flat=True))
    rows = list(
        Participant.objects.filter(trial=trial, randomization__randomized_at__date__lte=cutoff)
        .order_by("screening_number")
        .values_list(
            "pk",
            "screening_number",
            "site__code",
            "randomization__arm__code",
            "randomization__randomized_at",
            "age_at_screening",
            "sex",
            "strata",
            "status",
            "withdrawal_reason",
            "withdrawn_on",
            "completed_on",
        )
    )
    frame = pd.DataFrame(
        rows,
        columns=[
            "pk",
            "SUBJID",
            "SITEID",
            "TRT01P",
            "randomized_at",
            "AGE",
            "SEX",
            "strata",
            "status",
            "withdrawal_reason",
            "withdrawn_on",
            "completed_on",
        ],
    )
    first_dose = dict(
        DoseAdministration.objects.filter(participant__trial=trial, administered_at__date__lte=cutoff)
        .order_by("participant_id", "administered_at")
        .values_list("participant_id", "administered_at__date")
        .distinct("participant_id")
    )
    major = set(
        ProtocolDeviation.objects.filter(
            participant__trial=trial, severity="major", occurred_on__lte=cutoff
        ).values_list("participant_id", flat=True)
    )
    frame.insert(0, "USUBJID", _usubjid(trial.protocol_code, frame["SUBJID"]))
    frame["RANDDT"] = pd.to_datetime(frame["randomized_at"], utc=True).dt.date
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

    ``text`` columns keep their text as stored (never read as missing or as numbers), ``floats`` are float64
    even when every value is whole, and every float reads back exactly as stored (PostgreSQL writes the shortest
    exact text, pandas parses it exactly). Other columns are inferred; ``t``/``f`` are booleans, empty is missing.
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
    return pd.read_csv(
        buffer,
        dtype={**dict.fromkeys(text, str), **dict.fromkeys(floats, "float64")},
        keep_default_na=False,
        na_values=[""],
        true_values=["t"],
        false_values=["f"],
    )


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


def adae(trial, cutoff, subjects: pd.DataFrame) -> pd.DataFrame:
    from participants.meddra import SOC_NAMES
    from participants.models import AdverseEvent

    rows = list(
        AdverseEvent.objects.filter(participant__trial=trial, onset_date__lte=cutoff)
        .order_by("participant_id", "onset_date", "pk")
        .values_list(
            "participant_id",
            "soc",
            "term",
            "grade",
            "serious",
            "causality",
            "onset_date",
            "stop_date",
            "outcome",
            "action_taken",
            "results_in_death",
        )
    )
    frame = pd.DataFrame(
        rows,
        columns=[
            "pk",
            "soc",
            "AEDECOD",
            "AETOXGR",
            "serious",
            "causality",
            "ASTDT",
            "AENDT",
            "AEOUT",
            "AEACN",
            "death",
        ],
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


def adtte(trial, cutoff, subjects: pd.DataFrame) -> pd.DataFrame:
    """Time-to-event parameters: an event dated after the cut-off is censored at the cut-off."""
    import datetime as dt

    endpoints = list(trial.endpoints.filter(kind="time_to_event").values_list("pk", "code", "name"))
    recorded = {
        (pk, endpoint): (value, event)
        for pk, endpoint, value, event in OutcomeMeasurement.objects.filter(
            visit__participant__trial=trial, endpoint__kind="time_to_event", value__isnull=False
        ).values_list("visit__participant_id", "endpoint_id", "value", "event_occurred")
    }
    last_visit = dict(
        Visit.objects.filter(participant__trial=trial, visit_date__lte=cutoff, status="completed")
        .order_by("participant_id", "-visit_date")
        .distinct("participant_id")
        .values_list("participant_id", "visit_date")
    )
    rows = []
    for subject in subjects.itertuples():
        start = subject.RANDDT
        follow_up = (cutoff - start).days
        for endpoint_id, code, name in endpoints:
            value, event = recorded.get((subject.pk, endpoint_id), (None, None))
            if value is not None and event and value <= follow_up:
                time, censored = float(value), 0
            elif value is not None:
                time, censored = float(min(value, follow_up)), 1
            else:
                last = last_visit.get(subject.pk, start)
                time, censored = float(max((last - start).days, 0)), 1
            rows.append(
                (subject.pk, subject.USUBJID, code, name, time, censored, start, start + dt.timedelta(days=round(time)))
            )
    return pd.DataFrame(rows, columns=["pk", *ADTTE_COLUMNS])


def adex(trial, cutoff, subjects: pd.DataFrame) -> pd.DataFrame:
    """Exposure: one row per administration, with the product lot and the particles given."""
    from participants.models import DoseAdministration

    rows = list(
        DoseAdministration.objects.filter(participant__trial=trial, administered_at__date__lte=cutoff)
        .order_by("participant_id", "administered_at")
        .values_list("participant_id", "lot__lot_number", "particles_given", "volume_ml", "administered_at", "route")
    )
    frame = pd.DataFrame(rows, columns=["pk", "EXLOT", "EXDOSE", "EXVOL", "administered_at", "EXROUTE"])
    frame = frame.merge(subjects[["pk", "USUBJID", "TRT01A"]], on="pk")
    frame["EXTRT"] = frame["TRT01A"]
    frame["EXLOT"] = frame["EXLOT"].fillna("")
    frame["EXSTDT"] = pd.to_datetime(frame["administered_at"], utc=True).dt.date
    return frame[["pk", "USUBJID", "EXTRT", "EXLOT", "EXDOSE", "EXVOL", "EXROUTE", "EXSTDT"]]


def screening(trial, cutoff) -> pd.DataFrame:
    """Everyone screened on or before the cut-off, with the failed criterion (the top of the CONSORT flow)."""
    rows = list(
        Participant.objects.filter(trial=trial, screened_on__lte=cutoff)
        .order_by("screening_number")
        .values_list(
            "pk",
            "screening_number",
            "site__code",
            "screened_on",
            "status",
            "screen_failure_criterion__code",
            "screen_failure_criterion__text",
        )
    )
    frame = pd.DataFrame(rows, columns=["pk", "SUBJID", "SITEID", "SCRNDT", "status", "code", "text"])
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
