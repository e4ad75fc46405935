"""SDTM datasets of the demo trial: XPORT v5 files that read back as their CSV twins, define.csv, blinding."""

from __future__ import annotations

import csv
import math
import re

import pandas as pd
import pyreadstat
import pytest
from django.contrib.auth import get_user_model

from participants.exchange.sdtm import ascii_text, write_sdtm
from participants.models import AdverseEvent, DoseAdministration, OutcomeMeasurement, Participant
from trials.models import Endpoint

DOMAINS = ["DM", "DS", "EX", "AE", "QS"]
ARM_REVEALING = ["PBO", "LOW", "HIGH", "Placebo (saline)", "Exosomes 1×10⁹ particles", "Exosomes 1×10¹⁰ particles"]


def user(username: str):
    return get_user_model().objects.get(username=username)


def whole_word(text: str) -> re.Pattern[bytes]:
    return re.compile(rb"(?<![\w])" + re.escape(text.encode("utf-8")) + rb"(?![\w])")


@pytest.fixture
def unblinded_sdtm(demo_trial, tmp_path):
    written = write_sdtm(trial=demo_trial, user=user("demo-unblinded-stat"), out_dir=tmp_path)
    return tmp_path, written


@pytest.fixture
def blinded_sdtm(demo_trial, tmp_path):
    written = write_sdtm(trial=demo_trial, user=user("demo-blinded-stat"), out_dir=tmp_path)
    return tmp_path, written


def read_define(folder) -> list[dict[str, str]]:
    with (folder / "define.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def read_pair(folder, domain: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    xpt, meta = pyreadstat.read_xport(folder / f"{domain.lower()}.xpt")
    char = [row["variable"] for row in read_define(folder) if row["dataset"] == domain and row["type"] == "Char"]
    from_csv = pd.read_csv(
        folder / f"{domain.lower()}.csv", dtype=dict.fromkeys(char, str), keep_default_na=False, na_values={}
    )
    return xpt, from_csv, meta


def test_writes_xpt_csv_and_define(unblinded_sdtm):
    _folder, written = unblinded_sdtm
    assert [path.name for path in written] == [
        *[f"{domain.lower()}.{ext}" for domain in DOMAINS for ext in ("xpt", "csv")],
        "define.csv",
    ]


@pytest.mark.parametrize("domain", DOMAINS)
def test_xpt_reads_back_with_the_csv_values(unblinded_sdtm, domain):
    folder, _ = unblinded_sdtm
    xpt, from_csv, meta = read_pair(folder, domain)
    assert len(xpt) > 0
    assert list(xpt.columns) == list(from_csv.columns)
    for column in xpt.columns:
        if not pd.api.types.is_numeric_dtype(xpt[column]):
            assert xpt[column].tolist() == from_csv[column].tolist(), column
        else:
            numeric = pd.to_numeric(from_csv[column].replace("", None), errors="raise").astype("float64")
            pd.testing.assert_series_equal(xpt[column], numeric, check_names=False)
    # pandas reads the same file too
    assert pd.read_sas(folder / f"{domain.lower()}.xpt", format="xport", encoding="ascii").shape == xpt.shape
    assert meta.table_name == domain


def test_xport_v5_limits_and_define_metadata(unblinded_sdtm):
    folder, _ = unblinded_sdtm
    define = read_define(folder)
    for domain in DOMAINS:
        xpt, meta = pyreadstat.read_xport(folder / f"{domain.lower()}.xpt")
        rows = [row for row in define if row["dataset"] == domain]
        assert [row["variable"] for row in rows] == list(xpt.columns)
        for row in rows:
            assert len(row["variable"]) <= 8
            assert 0 < len(row["label"]) <= 40
            assert meta.column_names_to_labels[row["variable"]] == row["label"]
            assert row["type"] in {"Char", "Num"}
            assert row["origin"] in {"CRF", "Derived", "Assigned", "Protocol"}
            if row["type"] == "Char":
                longest = max([1, *(len(value.encode("ascii")) for value in xpt[row["variable"]])])
                assert int(row["length"]) == longest <= 200
            else:
                assert row["length"] == "8"
        assert {"STUDYID", "DOMAIN", "USUBJID"} <= set(xpt.columns)
        assert set(xpt["DOMAIN"]) == {domain}
        assert set(xpt["STUDYID"]) == {"EXO-OA-201"}


def test_dm_content(demo_trial, unblinded_sdtm):
    folder, _ = unblinded_sdtm
    dm, _ = pyreadstat.read_xport(folder / "dm.xpt")
    assert len(dm) == demo_trial.participants.count()
    assert dm["USUBJID"].is_unique
    assert set(dm["AGEU"]) == {"YEARS"}
    assert "BRTHDTC" not in dm.columns
    failed = Participant.objects.filter(trial=demo_trial, status="screen_failed").count()
    assert (dm["ARMCD"] == "SCRNFAIL").sum() == failed
    assert set(dm["ARMCD"]) == {"PBO", "LOW", "HIGH", "SCRNFAIL", "NOTASSGN"}
    assert set(dm["ARM"]) >= {"Placebo (saline)", "Exosomes 1x10^9 particles", "Exosomes 1x10^10 particles"}
    dosed = dm[dm["RFSTDTC"] != ""]
    assert (dosed["ACTARMCD"] == dosed["ARMCD"]).all()
    assert (
        len(dosed)
        == DoseAdministration.objects.filter(participant__trial=demo_trial).values("participant").distinct().count()
    )
    deaths = dm[dm["DTHFL"] == "Y"]
    assert len(deaths) == Participant.objects.filter(trial=demo_trial, withdrawal_reason="death").count() >= 1
    assert set(dm["COUNTRY"]) == {"GB", "DE", "ES", "NL"}


def test_ae_ex_qs_ds_content(demo_trial, unblinded_sdtm):
    folder, _ = unblinded_sdtm
    ae, _ = pyreadstat.read_xport(folder / "ae.xpt")
    assert len(ae) == AdverseEvent.objects.filter(participant__trial=demo_trial).count()
    assert set(ae["AESER"]) == {"Y", "N"}
    assert set(ae["AETOXGR"]) <= {"1", "2", "3", "4", "5"}
    assert set(ae["AEOUT"]) <= {
        "RECOVERED/RESOLVED",
        "RECOVERING/RESOLVING",
        "NOT RECOVERED/NOT RESOLVED",
        "RECOVERED/RESOLVED WITH SEQUELAE",
        "FATAL",
        "UNKNOWN",
    }
    assert not (ae["AESTDY"] == 0).any()  # SDTM has no day 0

    ex, _ = pyreadstat.read_xport(folder / "ex.xpt")
    assert len(ex) == DoseAdministration.objects.filter(participant__trial=demo_trial).count()
    assert set(ex["EXROUTE"]) == {"INTRA-ARTICULAR"}
    assert set(ex["EXTRT"]) == {"PLACEBO", "UC-MSC EXOSOMES (EXOKNEE)"}
    assert set(ex.loc[ex["EXTRT"] == "PLACEBO", "EXDOSE"]) == {0.0}
    assert set(ex.loc[ex["EXTRT"] != "PLACEBO", "EXDOSE"].round(-6)) == {1e9, 1e10}
    assert set(ex.loc[ex["EXTRT"] != "PLACEBO", "EXLOT"]) <= {"EXO-UC-2501", "EXO-UC-2502"}
    assert (ex["EXSTDY"] == 1).all()  # the single dose is the reference start

    qs, _ = pyreadstat.read_xport(folder / "qs.xpt")
    in_qs = (
        OutcomeMeasurement.objects.filter(visit__participant__trial=demo_trial)
        .exclude(endpoint__kind=Endpoint.Kind.TIME_TO_EVENT)
        .exclude(endpoint__role=Endpoint.EndpointRole.BIOMARKER)
    )
    assert len(qs) == in_qs.count()
    assert set(qs["QSTESTCD"]) == {"WOMACP", "RESP"}
    not_done = qs[qs["QSSTAT"] == "NOT DONE"]
    assert len(not_done) == in_qs.filter(value__isnull=True).count() > 0
    assert not_done["QSSTRESN"].isna().all()
    assert (not_done["QSREASND"] != "").all()
    done = qs[qs["QSSTAT"] == ""]
    assert [float(v) for v in done["QSORRES"]] == done["QSSTRESN"].tolist()
    assert set(qs["VISIT"]) <= {"BASELINE (DAY 0)", "WEEK 4", "WEEK 12", "WEEK 26"}

    ds, _ = pyreadstat.read_xport(folder / "ds.xpt")
    assert {"INFORMED CONSENT OBTAINED", "RANDOMIZED", "COMPLETED", "SCREEN FAILURE", "DEATH"} <= set(ds["DSDECOD"])
    assert not (ds["DSSTDY"] == 0).any()


def test_blinded_sdtm_masks_arm_and_dose(blinded_sdtm):
    folder, written = blinded_sdtm
    for path in written:
        data = path.read_bytes()
        found = [word for word in ARM_REVEALING if whole_word(word).search(data)]
        assert found == [], path.name
        for folded in ("Placebo (saline)", "Exosomes 1x10^9 particles", "Exosomes 1x10^10 particles", "EXOKNEE"):
            assert folded.encode() not in data, (path.name, folded)
    dm, _ = pyreadstat.read_xport(folder / "dm.xpt")
    randomized = dm[~dm["ARMCD"].isin(["SCRNFAIL", "NOTASSGN"])]
    assert len(randomized) > 0
    for column in ("ARMCD", "ARM", "ACTARMCD", "ACTARM"):
        assert set(randomized[column]) == {"MASKED"}, column
    ex, _ = pyreadstat.read_xport(folder / "ex.xpt")
    assert set(ex["EXTRT"]) == {"MASKED"}
    assert set(ex["EXLOT"]) == {"MASKED"}
    assert ex["EXDOSE"].isna().all()
    assert set(ex["EXDOSU"]) == {""}


def test_ascii_text_spells_out_clinical_symbols():
    assert ascii_text("Exosomes 1×10⁹ particles") == "Exosomes 1x10^9 particles"
    assert ascii_text("Serum exosomal miR-140-3p (relative expression, 2^-ΔΔCt)").endswith("2^-DDCt)")
    assert ascii_text("WOMAC pain (0–100) ≤ 5 µg") == "WOMAC pain (0-100) <= 5 ug"
    assert ascii_text("Universitätsklinikum") == "Universitatsklinikum"
    assert not math.isnan(len(ascii_text("")))
