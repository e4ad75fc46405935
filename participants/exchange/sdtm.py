"""SDTM-style tabulation datasets (DM, DS, EX, AE, QS) as SAS transport v5 files and CSV, plus define.csv.

Each domain is read with ``.values_list`` into a DataFrame (the ``analysis.extract`` style; an XPORT file
is written from a whole table, so one domain at a time is held in memory) and written twice with the same
values: ``<domain>.xpt`` (XPORT v5: names of at most 8 characters, labels of at most 40, text of at most
200 bytes, ASCII) and ``<domain>.csv`` (UTF-8; whole numbers without ".0"; text a spreadsheet would run as
a formula gets a leading ``'`` there only). ``define.csv`` lists every variable with its label, type,
length and origin.

Choices worth knowing:

* Only the birth year is collected, so DM has ``AGE``/``AGEU`` and no ``BRTHDTC``. RACE and ETHNIC are not
  collected and are omitted. ``COUNTRY`` is the site's ISO 3166-1 alpha-2 code as collected.
* ``EXLOT`` stays in EX: it is a permissible SDTMIG EX variable, so no SUPPEX is needed.
* ``AEDECOD`` is the verbatim term: MedDRA lower levels are licensed and not coded here; ``AEBODSYS`` and
  ``AEBDSYCD`` are the MedDRA system organ class the site chose.
* QS holds the efficacy scores: every endpoint except biomarkers (an LB domain) and time-to-event
  endpoints (derived in ADTTE, not tabulated).
* For a user who may not see the allocation, ``ARMCD``/``ARM``/``ACTARMCD``/``ACTARM`` are ``MASKED`` for
  every randomized subject (screen failures and unassigned subjects keep their standard codes, which say
  nothing about treatment), and EX has ``EXTRT``/``EXLOT`` = ``MASKED`` and no ``EXDOSE``/``EXDOSU``.
* ``--DY`` study days count from the first dose (``RFSTDTC``) with no day 0, as SDTM defines them.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyreadstat
from django.db.models import Max, Min

from analysis.report.render_csv import csv_value
from participants.exchange.exports import MASKED, TrialExport
from participants.meddra import SOC_NAMES
from participants.models import AdverseEvent, DoseAdministration, OutcomeMeasurement, Participant
from trials.models import Arm, Endpoint, Trial

XPT_TEXT_LIMIT = 200
LABEL_LIMIT = 40
NAME_LIMIT = 8

ROUTES = {
    Arm.Route.INTRA_ARTICULAR: "INTRA-ARTICULAR",
    Arm.Route.INTRAVENOUS: "INTRAVENOUS",
    Arm.Route.SUBCUTANEOUS: "SUBCUTANEOUS",
    Arm.Route.INTRADERMAL: "INTRADERMAL",
    Arm.Route.INTRATHECAL: "INTRATHECAL",
    Arm.Route.INHALED: "RESPIRATORY (INHALATION)",
    Arm.Route.TOPICAL: "TOPICAL",
}
# CDISC controlled terminology (NCOMPLT, OUT, ACN) for the stored codes.
DISCONTINUATION = {
    Participant.WithdrawalReason.ADVERSE_EVENT: "ADVERSE EVENT",
    Participant.WithdrawalReason.LACK_OF_EFFICACY: "LACK OF EFFICACY",
    Participant.WithdrawalReason.WITHDRAWAL_BY_SUBJECT: "WITHDRAWAL BY SUBJECT",
    Participant.WithdrawalReason.PHYSICIAN_DECISION: "PHYSICIAN DECISION",
    Participant.WithdrawalReason.PROTOCOL_DEVIATION: "PROTOCOL DEVIATION",
    Participant.WithdrawalReason.LOST_TO_FOLLOW_UP: "LOST TO FOLLOW-UP",
    Participant.WithdrawalReason.DEATH: "DEATH",
    Participant.WithdrawalReason.OTHER: "OTHER",
}
AE_OUTCOME = {
    AdverseEvent.Outcome.RECOVERED: "RECOVERED/RESOLVED",
    AdverseEvent.Outcome.RECOVERING: "RECOVERING/RESOLVING",
    AdverseEvent.Outcome.NOT_RECOVERED: "NOT RECOVERED/NOT RESOLVED",
    AdverseEvent.Outcome.SEQUELAE: "RECOVERED/RESOLVED WITH SEQUELAE",
    AdverseEvent.Outcome.FATAL: "FATAL",
    AdverseEvent.Outcome.UNKNOWN: "UNKNOWN",
}
AE_ACTION = {
    AdverseEvent.Action.NONE: "DOSE NOT CHANGED",
    AdverseEvent.Action.INTERRUPTED: "DRUG INTERRUPTED",
    AdverseEvent.Action.WITHDRAWN: "DRUG WITHDRAWN",
    AdverseEvent.Action.NOT_APPLICABLE: "NOT APPLICABLE",
}

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
_SUPERSCRIPT_RUN = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+")
_SYMBOLS = {"×": "x", "−": "-", "–": "-", "—": "-", "≤": "<=", "≥": ">=", "µ": "u", "μ": "u", "°": " deg", "Δ": "D"}


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    origin: str
    numeric: bool = False
    comment: str = ""


def ascii_text(value: object) -> str:
    """Text as XPORT v5 can hold it: ASCII, with clinical symbols spelled out (10⁹ → 10^9, × → x)."""
    text = _SUPERSCRIPT_RUN.sub(lambda match: "^" + match.group().translate(_SUPERSCRIPTS), str(value))
    for symbol, spelled in _SYMBOLS.items():
        text = text.replace(symbol, spelled)
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _dtc(value: dt.date | dt.datetime | None) -> str:
    """ISO 8601 as SDTM writes it: a date, or a UTC date-time to the minute."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M")
    return value.isoformat()


def _day(value: dt.date | dt.datetime | None, reference: dt.date | None) -> float:
    """SDTM study day: date − reference + 1 on or after the reference, date − reference before; no day 0."""
    if value is None or reference is None:
        return math.nan
    day = value.astimezone(dt.UTC).date() if isinstance(value, dt.datetime) else value
    delta = (day - reference).days
    return float(delta + 1 if delta >= 0 else delta)


def _number_text(value: float | None) -> str:
    if value is None or math.isnan(value):
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _yn(flag: bool | None) -> str:
    return "" if flag is None else ("Y" if flag else "N")


class SdtmBuilder:
    """Builds the domains for one user's view of one trial (authorization and blinding from TrialExport)."""

    def __init__(self, *, trial: Trial, user) -> None:
        self.export = TrialExport(trial=trial, user=user)
        self.trial = trial
        self.studyid = trial.protocol_code
        self.participants = self.export.participants
        self._reference: dict[int, dt.date] = {}

    def _usubjid(self, screening_number: str) -> str:
        return f"{self.studyid}-{screening_number}"

    # ------------------------------------------------------------------ DM
    def dm(self) -> pd.DataFrame:
        fields = [
            "pk",
            "screening_number",
            "site__code",
            "site__country",
            "age_at_screening",
            "sex",
            "status",
            "consent_date",
            "withdrawn_on",
            "withdrawal_reason",
            "completed_on",
            "randomization__randomization_number",
        ]
        if self.export.unblinded:
            fields += ["randomization__arm__code", "randomization__arm__name"]
        rows = list(self.participants.order_by("screening_number").values_list(*fields))
        exposure = {
            pk: (first, last)
            for pk, first, last in DoseAdministration.objects.filter(participant__in=self.participants.values("pk"))
            .values("participant_id")
            .annotate(first=Min("administered_at"), last=Max("administered_at"))
            .values_list("participant_id", "first", "last")
        }
        records = []
        for row in rows:
            values = dict(zip(fields, row, strict=True))
            first, last = exposure.get(values["pk"], (None, None))
            if first is not None:
                self._reference[values["pk"]] = first.astimezone(dt.UTC).date()
            armcd, arm = self._arm(values, treated=first is not None)
            end = values["completed_on"] or values["withdrawn_on"]
            died = values["withdrawal_reason"] == Participant.WithdrawalReason.DEATH
            records.append(
                {
                    "STUDYID": self.studyid,
                    "DOMAIN": "DM",
                    "USUBJID": self._usubjid(values["screening_number"]),
                    "SUBJID": values["screening_number"],
                    "RFSTDTC": _dtc(first),
                    "RFENDTC": _dtc(last),
                    "RFICDTC": _dtc(values["consent_date"]),
                    "RFPENDTC": _dtc(end),
                    "DTHDTC": _dtc(values["withdrawn_on"]) if died else "",
                    "DTHFL": "Y" if died else "",
                    "SITEID": values["site__code"],
                    "AGE": float(values["age_at_screening"]),
                    "AGEU": "YEARS",
                    "SEX": values["sex"],
                    "COUNTRY": values["site__country"],
                    "ARMCD": armcd[0],
                    "ARM": arm[0],
                    "ACTARMCD": armcd[1],
                    "ACTARM": arm[1],
                }
            )
        return self._frame(records, DM_VARIABLES)

    def _arm(self, values: dict, *, treated: bool) -> tuple[tuple[str, str], tuple[str, str]]:
        """(planned, actual) arm codes and names; MASKED for a randomized subject of a blinded user."""
        if values["status"] == Participant.Status.SCREEN_FAILED:
            return ("SCRNFAIL", "SCRNFAIL"), ("Screen Failure", "Screen Failure")
        if not values["randomization__randomization_number"]:
            return ("NOTASSGN", "NOTASSGN"), ("Not Assigned", "Not Assigned")
        if self.export.unblinded:
            code, name = values["randomization__arm__code"], values["randomization__arm__name"]
        else:
            code, name = MASKED, MASKED
        if not treated:
            return (code, "NOTTRT"), (name, "Not Treated")
        return (code, code), (name, name)

    # ------------------------------------------------------------------ DS
    def ds(self) -> pd.DataFrame:
        fields = [
            "pk",
            "screening_number",
            "status",
            "consent_date",
            "screened_on",
            "screen_failure_reason",
            "randomization__randomized_at",
            "completed_on",
            "withdrawn_on",
            "withdrawal_reason",
            "withdrawal_detail",
        ]
        records = []
        for row in self.participants.order_by("screening_number").values_list(*fields).iterator(chunk_size=2000):
            values = dict(zip(fields, row, strict=True))
            events = []
            if values["consent_date"]:
                events.append(
                    (
                        "PROTOCOL MILESTONE",
                        "INFORMED CONSENT OBTAINED",
                        "INFORMED CONSENT OBTAINED",
                        values["consent_date"],
                    )
                )
            if values["status"] == Participant.Status.SCREEN_FAILED:
                events.append(
                    ("DISPOSITION EVENT", values["screen_failure_reason"], "SCREEN FAILURE", values["screened_on"])
                )
            if values["randomization__randomized_at"]:
                events.append(
                    ("PROTOCOL MILESTONE", "RANDOMIZED", "RANDOMIZED", values["randomization__randomized_at"])
                )
            if values["completed_on"]:
                events.append(("DISPOSITION EVENT", "COMPLETED", "COMPLETED", values["completed_on"]))
            if values["withdrawn_on"] and values["withdrawal_reason"]:
                decod = DISCONTINUATION.get(values["withdrawal_reason"], "OTHER")
                events.append(
                    ("DISPOSITION EVENT", values["withdrawal_detail"] or decod, decod, values["withdrawn_on"])
                )
            reference = self._reference.get(values["pk"])
            for sequence, (category, term, decod, when) in enumerate(events, start=1):
                records.append(
                    {
                        "STUDYID": self.studyid,
                        "DOMAIN": "DS",
                        "USUBJID": self._usubjid(values["screening_number"]),
                        "DSSEQ": float(sequence),
                        "DSTERM": term,
                        "DSDECOD": decod,
                        "DSCAT": category,
                        "DSSTDTC": _dtc(when),
                        "DSSTDY": _day(when, reference),
                    }
                )
        return self._frame(records, DS_VARIABLES)

    # ------------------------------------------------------------------ EX
    def ex(self) -> pd.DataFrame:
        fields = [
            "participant_id",
            "participant__screening_number",
            "administered_at",
            "route",
            "visit__visit_definition__order",
            "visit__visit_definition__name",
        ]
        if self.export.unblinded:
            fields += ["particles_given", "lot__lot_number", "lot__product__name"]
        rows = (
            DoseAdministration.objects.filter(participant__in=self.participants.values("pk"))
            .order_by("participant__screening_number", "administered_at", "pk")
            .values_list(*fields)
            .iterator(chunk_size=2000)
        )
        records = []
        sequence: dict[int, int] = {}
        for row in rows:
            values = dict(zip(fields, row, strict=True))
            sequence[values["participant_id"]] = sequence.get(values["participant_id"], 0) + 1
            if self.export.unblinded:
                treatment = (values["lot__product__name"] or "PLACEBO").upper()
                dose, unit, lot = values["particles_given"], "PARTICLES", values["lot__lot_number"] or ""
            else:
                treatment, dose, unit, lot = MASKED, math.nan, "", MASKED
            reference = self._reference.get(values["participant_id"])
            order = values["visit__visit_definition__order"]
            records.append(
                {
                    "STUDYID": self.studyid,
                    "DOMAIN": "EX",
                    "USUBJID": self._usubjid(values["participant__screening_number"]),
                    "EXSEQ": float(sequence[values["participant_id"]]),
                    "EXTRT": treatment,
                    "EXDOSE": dose,
                    "EXDOSU": unit,
                    "EXROUTE": ROUTES.get(values["route"], values["route"].upper()),
                    "EXLOT": lot,
                    "EXSTDTC": _dtc(values["administered_at"]),
                    "EXENDTC": _dtc(values["administered_at"]),
                    "EXSTDY": _day(values["administered_at"], reference),
                    "EXENDY": _day(values["administered_at"], reference),
                    "VISITNUM": math.nan if order is None else float(order),
                    "VISIT": (values["visit__visit_definition__name"] or "").upper(),
                }
            )
        return self._frame(records, EX_VARIABLES)

    # ------------------------------------------------------------------ AE
    def ae(self) -> pd.DataFrame:
        fields = [
            "participant_id",
            "participant__screening_number",
            "term",
            "soc",
            "grade",
            "serious",
            "results_in_death",
            "life_threatening",
            "hospitalization",
            "disability",
            "congenital_anomaly",
            "important_medical_event",
            "causality",
            "action_taken",
            "outcome",
            "onset_date",
            "stop_date",
        ]
        rows = (
            AdverseEvent.objects.filter(participant__in=self.participants.values("pk"))
            .order_by("participant__screening_number", "onset_date", "pk")
            .values_list(*fields)
            .iterator(chunk_size=2000)
        )
        causality = dict(AdverseEvent.Causality.choices)
        records = []
        sequence: dict[int, int] = {}
        for row in rows:
            values = dict(zip(fields, row, strict=True))
            sequence[values["participant_id"]] = sequence.get(values["participant_id"], 0) + 1
            reference = self._reference.get(values["participant_id"])
            records.append(
                {
                    "STUDYID": self.studyid,
                    "DOMAIN": "AE",
                    "USUBJID": self._usubjid(values["participant__screening_number"]),
                    "AESEQ": float(sequence[values["participant_id"]]),
                    "AETERM": values["term"],
                    "AEDECOD": values["term"].upper(),
                    "AEBODSYS": SOC_NAMES.get(values["soc"], ""),
                    "AEBDSYCD": float(values["soc"]),
                    "AETOXGR": str(values["grade"]),
                    "AESER": _yn(values["serious"]),
                    "AESDTH": _yn(values["results_in_death"]),
                    "AESLIFE": _yn(values["life_threatening"]),
                    "AESHOSP": _yn(values["hospitalization"]),
                    "AESDISAB": _yn(values["disability"]),
                    "AESCONG": _yn(values["congenital_anomaly"]),
                    "AESMIE": _yn(values["important_medical_event"]),
                    "AEREL": causality.get(values["causality"], values["causality"]).upper(),
                    "AEACN": AE_ACTION.get(values["action_taken"], ""),
                    "AEOUT": AE_OUTCOME.get(values["outcome"], ""),
                    "AESTDTC": _dtc(values["onset_date"]),
                    "AEENDTC": _dtc(values["stop_date"]),
                    "AESTDY": _day(values["onset_date"], reference),
                    "AEENDY": _day(values["stop_date"], reference),
                }
            )
        return self._frame(records, AE_VARIABLES)

    # ------------------------------------------------------------------ QS
    def qs(self) -> pd.DataFrame:
        fields = [
            "visit__participant_id",
            "visit__participant__screening_number",
            "endpoint__code",
            "endpoint__name",
            "value",
            "unit",
            "not_done_reason",
            "measured_on",
            "visit__visit_definition__order",
            "visit__visit_definition__name",
        ]
        rows = (
            OutcomeMeasurement.objects.filter(visit__participant__in=self.participants.values("pk"))
            .exclude(endpoint__kind=Endpoint.Kind.TIME_TO_EVENT)
            .exclude(endpoint__role=Endpoint.EndpointRole.BIOMARKER)
            .order_by("visit__participant__screening_number", "endpoint__code", "visit__visit_definition__order", "pk")
            .values_list(*fields)
            .iterator(chunk_size=2000)
        )
        records = []
        sequence: dict[int, int] = {}
        for row in rows:
            values = dict(zip(fields, row, strict=True))
            subject = values["visit__participant_id"]
            sequence[subject] = sequence.get(subject, 0) + 1
            value = values["value"]
            result = _number_text(value)
            records.append(
                {
                    "STUDYID": self.studyid,
                    "DOMAIN": "QS",
                    "USUBJID": self._usubjid(values["visit__participant__screening_number"]),
                    "QSSEQ": float(sequence[subject]),
                    "QSTESTCD": values["endpoint__code"],
                    "QSTEST": ascii_text(values["endpoint__name"])[:LABEL_LIMIT],
                    "QSORRES": result,
                    "QSORRESU": values["unit"] if result else "",
                    "QSSTRESC": result,
                    "QSSTRESN": math.nan if value is None else float(value),
                    "QSSTRESU": values["unit"] if result else "",
                    "QSSTAT": "" if result else "NOT DONE",
                    "QSREASND": values["not_done_reason"] if not result else "",
                    "VISITNUM": float(values["visit__visit_definition__order"]),
                    "VISIT": values["visit__visit_definition__name"].upper(),
                    "QSDTC": _dtc(values["measured_on"]),
                    "QSDY": _day(values["measured_on"], self._reference.get(subject)),
                }
            )
        return self._frame(records, QS_VARIABLES)

    @staticmethod
    def _frame(records: list[dict], variables: list[Variable]) -> pd.DataFrame:
        names = [variable.name for variable in variables]
        frame = pd.DataFrame.from_records(records, columns=names)
        for variable in variables:
            if variable.numeric:
                frame[variable.name] = frame[variable.name].astype("float64")
            else:
                frame[variable.name] = [ascii_text(v)[:XPT_TEXT_LIMIT] for v in frame[variable.name].fillna("")]
                frame[variable.name] = frame[variable.name].astype(object)
        return frame

    def domains(self) -> dict[str, tuple[pd.DataFrame, list[Variable], str]]:
        # DM first: it sets each subject's reference start date for the --DY variables of the others.
        return {
            "DM": (self.dm(), DM_VARIABLES, "Demographics"),
            "DS": (self.ds(), DS_VARIABLES, "Disposition"),
            "EX": (self.ex(), EX_VARIABLES, "Exposure"),
            "AE": (self.ae(), AE_VARIABLES, "Adverse Events"),
            "QS": (self.qs(), QS_VARIABLES, "Questionnaires"),
        }


def _common(domain: str) -> list[Variable]:
    return [
        Variable("STUDYID", "Study Identifier", "Protocol"),
        Variable("DOMAIN", "Domain Abbreviation", "Assigned", comment=f"Always {domain}."),
        Variable("USUBJID", "Unique Subject Identifier", "Derived", comment="STUDYID-SUBJID."),
    ]


DM_VARIABLES = [
    *_common("DM"),
    Variable("SUBJID", "Subject Identifier for the Study", "CRF", comment="Screening number."),
    Variable("RFSTDTC", "Subject Reference Start Date/Time", "Derived", comment="First administration (UTC)."),
    Variable("RFENDTC", "Subject Reference End Date/Time", "Derived", comment="Last administration (UTC)."),
    Variable("RFICDTC", "Date/Time of Informed Consent", "CRF"),
    Variable("RFPENDTC", "Date/Time of End of Participation", "Derived", comment="Completion or withdrawal."),
    Variable("DTHDTC", "Date/Time of Death", "Derived", comment="Withdrawal date when the reason is death."),
    Variable("DTHFL", "Subject Death Flag", "Derived"),
    Variable("SITEID", "Study Site Identifier", "CRF"),
    Variable("AGE", "Age", "CRF", numeric=True, comment="Age at screening."),
    Variable("AGEU", "Age Units", "Assigned"),
    Variable("SEX", "Sex", "CRF"),
    Variable("COUNTRY", "Country", "CRF", comment="ISO 3166-1 alpha-2 code of the site, as collected."),
    Variable("ARMCD", "Planned Arm Code", "Assigned", comment="MASKED for users who may not see allocation."),
    Variable("ARM", "Description of Planned Arm", "Assigned", comment="MASKED for users who may not see allocation."),
    Variable("ACTARMCD", "Actual Arm Code", "Derived", comment="MASKED for users who may not see allocation."),
    Variable("ACTARM", "Description of Actual Arm", "Derived", comment="MASKED for users who may not see allocation."),
]
DS_VARIABLES = [
    *_common("DS"),
    Variable("DSSEQ", "Sequence Number", "Derived", numeric=True),
    Variable("DSTERM", "Reported Term for the Disposition Event", "CRF"),
    Variable("DSDECOD", "Standardized Disposition Term", "Assigned"),
    Variable("DSCAT", "Category for Disposition Event", "Assigned"),
    Variable("DSSTDTC", "Start Date/Time of Disposition Event", "CRF"),
    Variable("DSSTDY", "Study Day of Start of Disposition Event", "Derived", numeric=True),
]
EX_VARIABLES = [
    *_common("EX"),
    Variable("EXSEQ", "Sequence Number", "Derived", numeric=True),
    Variable("EXTRT", "Name of Treatment", "Derived", comment="Product of the lot, or PLACEBO; MASKED if blinded."),
    Variable("EXDOSE", "Dose", "CRF", numeric=True, comment="Particles given; missing for blinded users."),
    Variable("EXDOSU", "Dose Units", "Assigned", comment="Blank for blinded users."),
    Variable("EXROUTE", "Route of Administration", "CRF"),
    Variable("EXLOT", "Lot Number", "CRF", comment="Blank for placebo; MASKED for blinded users."),
    Variable("EXSTDTC", "Start Date/Time of Treatment", "CRF"),
    Variable("EXENDTC", "End Date/Time of Treatment", "CRF"),
    Variable("EXSTDY", "Study Day of Start of Treatment", "Derived", numeric=True),
    Variable("EXENDY", "Study Day of End of Treatment", "Derived", numeric=True),
    Variable("VISITNUM", "Visit Number", "Protocol", numeric=True),
    Variable("VISIT", "Visit Name", "Protocol"),
]
AE_VARIABLES = [
    *_common("AE"),
    Variable("AESEQ", "Sequence Number", "Derived", numeric=True),
    Variable("AETERM", "Reported Term for the Adverse Event", "CRF"),
    Variable("AEDECOD", "Dictionary-Derived Term", "Derived", comment="Verbatim term; not MedDRA-coded."),
    Variable("AEBODSYS", "Body System or Organ Class", "CRF"),
    Variable("AEBDSYCD", "Body System or Organ Class Code", "CRF", numeric=True),
    Variable("AETOXGR", "Standard Toxicity Grade", "CRF", comment="CTCAE v5.0."),
    Variable("AESER", "Serious Event", "CRF"),
    Variable("AESDTH", "Results in Death", "CRF"),
    Variable("AESLIFE", "Is Life Threatening", "CRF"),
    Variable("AESHOSP", "Requires or Prolongs Hospitalization", "CRF"),
    Variable("AESDISAB", "Persist or Signif Disability/Incapacity", "CRF"),
    Variable("AESCONG", "Congenital Anomaly or Birth Defect", "CRF"),
    Variable("AESMIE", "Other Medically Important Serious Event", "CRF"),
    Variable("AEREL", "Causality", "CRF"),
    Variable("AEACN", "Action Taken with Study Treatment", "CRF"),
    Variable("AEOUT", "Outcome of Adverse Event", "CRF"),
    Variable("AESTDTC", "Start Date/Time of Adverse Event", "CRF"),
    Variable("AEENDTC", "End Date/Time of Adverse Event", "CRF"),
    Variable("AESTDY", "Study Day of Start of Adverse Event", "Derived", numeric=True),
    Variable("AEENDY", "Study Day of End of Adverse Event", "Derived", numeric=True),
]
QS_VARIABLES = [
    *_common("QS"),
    Variable("QSSEQ", "Sequence Number", "Derived", numeric=True),
    Variable("QSTESTCD", "Question Short Name", "Protocol", comment="Endpoint code."),
    Variable("QSTEST", "Question Name", "Protocol", comment="Endpoint name (ASCII, 40 characters)."),
    Variable("QSORRES", "Finding in Original Units", "CRF"),
    Variable("QSORRESU", "Original Units", "Protocol"),
    Variable("QSSTRESC", "Character Result/Finding in Std Format", "Derived"),
    Variable("QSSTRESN", "Numeric Finding in Standard Units", "Derived", numeric=True),
    Variable("QSSTRESU", "Standard Units", "Protocol"),
    Variable("QSSTAT", "Completion Status", "CRF"),
    Variable("QSREASND", "Reason Not Performed", "CRF"),
    Variable("VISITNUM", "Visit Number", "Protocol", numeric=True),
    Variable("VISIT", "Visit Name", "Protocol"),
    Variable("QSDTC", "Date/Time of Finding", "CRF"),
    Variable("QSDY", "Study Day of Finding", "Derived", numeric=True),
]
DEFINE_COLUMNS = ["dataset", "variable", "label", "type", "length", "origin", "comment"]


def _char_length(frame: pd.DataFrame, name: str) -> int:
    lengths = [len(str(value).encode("ascii")) for value in frame[name]]
    return max([1, *lengths])


def _csv_cell(value: object) -> str:
    # XPORT stores every number as a double; whole numbers are written without ".0" (same value, plainer text).
    if isinstance(value, float) and value.is_integer():
        return csv_value(int(value))
    return csv_value(value)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(list(frame.columns))
        writer.writerows([_csv_cell(value) for value in row] for row in frame.itertuples(index=False, name=None))


def write_sdtm(*, trial: Trial, user, out_dir: str | os.PathLike[str]) -> list[Path]:
    """``<domain>.xpt`` and ``<domain>.csv`` for DM, DS, EX, AE and QS, then ``define.csv``; returns the files."""
    builder = SdtmBuilder(trial=trial, user=user)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    define: list[list[object]] = []
    for domain, (frame, variables, title) in builder.domains().items():
        for variable in variables:
            if len(variable.name) > NAME_LIMIT or len(variable.label) > LABEL_LIMIT:
                raise ValueError(f"{domain}.{variable.name}: name or label too long for XPORT v5")
        xpt = folder / f"{domain.lower()}.xpt"
        pyreadstat.write_xport(
            frame,
            xpt,
            file_label=title,
            column_labels=[variable.label for variable in variables],
            table_name=domain,
            file_format_version=5,
        )
        path_csv = folder / f"{domain.lower()}.csv"
        _write_csv(frame, path_csv)
        written += [xpt, path_csv]
        define += [
            [
                domain,
                variable.name,
                variable.label,
                "Num" if variable.numeric else "Char",
                8 if variable.numeric else _char_length(frame, variable.name),
                variable.origin,
                variable.comment,
            ]
            for variable in variables
        ]
    define_path = folder / "define.csv"
    _write_csv(pd.DataFrame(define, columns=DEFINE_COLUMNS), define_path)
    written.append(define_path)
    return written
