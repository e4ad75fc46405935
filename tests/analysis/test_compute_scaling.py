"""The interim report's size does not grow with the number of participants (document.py's size rule).

Pure: synthetic ADaM datasets shaped like ``analysis.extract``'s freeze, at two trial sizes with the same design
(sites, visits, AE terms), go through ``compute`` and ``assemble``; every table of the reports must have the same
number of rows at both sizes, so rendering the PDF, XLSX and HTML costs the same however many participants the
trial has. Participant-level listings belong in the frozen datasets.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from analysis import assemble
from analysis.compute import AnalysisSpec, compute

VISITS = ("BL", "W4", "W8", "W12", "W16", "W20")
SITES = ("S01", "S02", "S03", "S04", "S05", "S06")
ARMS = np.array(["PBO", "LOW", "HIGH"])
ARM_EFFECT = {"PBO": -10.0, "LOW": -15.0, "HIGH": -22.0}
AE_TERMS = {"General disorders": ("Fatigue", "Pyrexia"), "Nervous system disorders": ("Headache", "Dizziness")}


def _adam_datasets(participants: int, seed: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    subjid = np.array([f"{SITES[i % len(SITES)]}-{i:05d}" for i in range(participants)])
    usubjid = np.char.add("SYN-", subjid)
    site = np.array([s[:3] for s in subjid])
    arm = ARMS[rng.permutation(np.arange(participants) % 3)]  # balanced, and not aliased with the site
    randomized = pd.Timestamp("2025-03-03") + pd.to_timedelta(rng.integers(0, 300, participants), unit="D")
    baseline = np.clip(rng.normal(62.0, 10.0, participants), 40.0, 100.0).round(1)
    stopped = np.arange(participants) % 10 == 0
    adsl = pd.DataFrame(
        {
            "USUBJID": usubjid,
            "SUBJID": subjid,
            "SITEID": site,
            "TRT01P": arm,
            "TRT01A": arm,
            "RANDDT": randomized.date,
            "ITTFL": "Y",
            "SAFFL": "Y",
            "PPROTFL": "Y",
            "AGE": rng.integers(40, 81, participants),
            "SEX": np.where(np.arange(participants) % 2 == 0, "F", "M"),
            "EOSSTT": np.where(stopped, "DISCONTINUED", "ONGOING"),
            "DCSREAS": np.where(
                stopped, np.where(np.arange(participants) % 20 == 0, "LOST_TO_FOLLOW_UP", "ADVERSE_EVENT"), ""
            ),
            "EOSDT": None,
            "TRTSDT": randomized.date,
            "BASEPAIN": np.where(baseline > 60, ">60", "<=60"),
        }
    )
    biomarker = np.exp(rng.normal(0.0, 0.5, participants)).round(3)
    effect = np.array([ARM_EFFECT[code] for code in arm])
    person = rng.normal(0.0, 6.0, participants)
    rows = []
    for number, visit in enumerate(VISITS):
        share = min(number / 3.0, 1.0)
        value = baseline if number == 0 else baseline + effect * share + person + rng.normal(0.0, 8.0, participants)
        value = np.where((number > 0) & (rng.uniform(size=participants) < 0.05), np.nan, np.clip(value, 0, 100))
        rows.append(
            pd.DataFrame(
                {
                    "USUBJID": usubjid,
                    "PARAMCD": "WOMACP",
                    "AVISIT": visit,
                    "AVISITN": number + 2,
                    "AVAL": value.round(1),
                    "BASE": baseline,
                    "CHG": (value.round(1) - baseline) if number else np.nan,
                }
            )
        )
    week12 = rows[VISITS.index("W12")]
    rows.append(
        pd.DataFrame(
            {
                "USUBJID": usubjid,
                "PARAMCD": "RESP",
                "AVISIT": "W12",
                "AVISITN": 5,
                "AVAL": np.where(week12["AVAL"].notna(), (week12["CHG"] <= -15).astype(float), np.nan),
                "BASE": np.nan,
                "CHG": np.nan,
            }
        )
    )
    rows.append(
        pd.DataFrame(
            {"USUBJID": usubjid, "PARAMCD": "EVMIR140", "AVISIT": "BL", "AVISITN": 2, "AVAL": biomarker}
        ).assign(BASE=biomarker, CHG=np.nan)
    )
    adeff = pd.concat(rows, ignore_index=True)
    adeff["ANL01FL"] = np.where(adeff["AVAL"].notna(), "Y", "")
    events_per_person = 2
    owner = np.repeat(np.arange(participants), events_per_person)
    terms = [(soc, term) for soc, names in AE_TERMS.items() for term in names]
    chosen = np.arange(len(owner)) % len(terms)
    adae = pd.DataFrame(
        {
            "USUBJID": usubjid[owner],
            "AEBODSYS": [terms[i][0] for i in chosen],
            "AEDECOD": [terms[i][1] for i in chosen],
            "AETOXGR": 1 + np.arange(len(owner)) % 3,
            "AESER": np.where(np.arange(len(owner)) % 25 == 0, "Y", "N"),
            "AEREL": np.where(np.arange(len(owner)) % 2 == 0, "Y", "N"),
            "TRTEMFL": "Y",
            "AEACN": "none",
            "AESDTH": "N",
        }
    )
    rescue = np.minimum(rng.exponential(200.0, participants), 182.0).round(1)
    adtte = pd.DataFrame(
        {"USUBJID": usubjid, "PARAMCD": "TTRESC", "AVAL": rescue, "CNSR": (rescue >= 182.0).astype(int)}
    )
    adex = pd.DataFrame(
        {
            "USUBJID": usubjid,
            "EXTRT": arm,
            "EXLOT": np.where(arm == "PBO", "", np.where(np.arange(participants) % 2 == 0, "LOT-A", "LOT-B")),
            "EXDOSE": np.select([arm == "PBO", arm == "LOW"], [0.0, 1e9], 1e10),
            "EXVOL": 2.0,
        }
    )
    failures = participants // 5
    screening = pd.DataFrame(
        {
            "SUBJID": [*subjid, *(f"SF-{i:05d}" for i in range(failures))],
            "SITEID": [*site, *(SITES[i % len(SITES)] for i in range(failures))],
            "SCRNFL": ["N"] * participants + ["Y"] * failures,
            "SCRNFREAS": [""] * participants + [("IN02", "IN03", "EX01")[i % 3] for i in range(failures)],
        }
    )
    queries = pd.DataFrame({"SITEID": list(SITES) * 3, "QSTAT": ["OPEN", "ANSWERED", "CLOSED"] * len(SITES)})
    return {
        "adsl": adsl,
        "adeff": adeff,
        "adae": adae,
        "adtte": adtte,
        "adex": adex,
        "screening": screening,
        "queries": queries,
    }


def _spec(planned_n: int) -> AnalysisSpec:
    return AnalysisSpec(
        kind="interim",
        look_number=1,
        primary_paramcd="WOMACP",
        primary_visit="W12",
        lower_is_better=True,
        reference_arm="PBO",
        monitored_arm="HIGH",
        strata=("SITEID", "BASEPAIN"),
        alpha=0.025,
        power=0.9,
        look_fractions=(0.5, 0.75, 1.0),
        spending="obf",
        hsd_gamma=None,
        futility_threshold=0.1,
        planned_n=planned_n,
        key_secondaries=(("RESP", "binary", "W12"), ("TTRESC", "time_to_event", "W20")),
        biomarker_paramcd="EVMIR140",
    )


def _table_lengths(participants: int) -> dict[str, int]:
    results = compute(_adam_datasets(participants, seed=participants), _spec(2 * participants))
    common = {
        "trial_code": "SYN",
        "cutoff": dt.date(2026, 1, 1),
        "generated_at": dt.datetime(2026, 1, 2, 8, 0, tzinfo=dt.UTC),
        "provenance": {},
    }
    lengths = {}
    for name, document in (
        ("open", assemble.open_report(results, _spec(2 * participants), **common)),
        ("closed", assemble.closed_report(results, _spec(2 * participants), **common)),
    ):
        for table in document.tables():
            lengths[f"{name}:{table.key}"] = len(table.frame)
    return lengths


def test_report_tables_do_not_grow_with_the_number_of_participants():
    small, large = _table_lengths(300), _table_lengths(1500)
    assert set(small) == set(large)
    assert "closed:sensitivity_mmrm" in small  # the repeated-measures model ran at both sizes
    grown = {key: (small[key], large[key]) for key in small if small[key] != large[key]}
    assert not grown, f"report tables grow with the number of participants: {grown}"


@pytest.mark.parametrize("participants", [300])
def test_interim_results_recover_the_simulated_effect(participants):
    results = compute(_adam_datasets(participants, seed=1), _spec(2 * participants))
    high = next(c for c in results.summary["primary"]["contrasts"] if c["arm"] == "HIGH")
    assert high["ci_lower"] < -12.0 < high["ci_upper"]
    mmrm = results.tables["sensitivity_mmrm"].set_index("arm")
    assert mmrm.loc["HIGH", "ci_lower"] < -12.0 < mmrm.loc["HIGH", "ci_upper"]
