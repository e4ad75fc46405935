"""The one boundary from the ORM to DataFrames: every analysis, report, export and benchmark reads here.

Frames are built from ``.values_list`` with named columns. Participants are identified by a
pseudonymous subject id (``USUBJID`` = protocol code + screening number); no direct identifiers leave
the database. Treatment assignment is included only when the caller asks for it (``with_arm=True``),
which only unblinded code paths do.
"""

from __future__ import annotations

import pandas as pd

from participants.models import OutcomeMeasurement, Participant


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
