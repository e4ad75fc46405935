"""``manage.py export_trial``: every format, attributable to a named user whose role decides the blinding."""

from __future__ import annotations

import csv
import logging

import pyreadstat
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from lxml import etree
from openpyxl import load_workbook

from participants.models import Participant


def run(*args: str) -> list[str]:
    from io import StringIO

    out = StringIO()
    call_command("export_trial", *args, stdout=out)
    return out.getvalue().splitlines()


def test_csv_format_prints_every_file_and_logs_the_export(demo_trial, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="exotrial.exports"):
        lines = run("EXO-OA-201", "--format", "csv", "--out", str(tmp_path), "--user", "demo-blinded-stat")
    files = sorted(tmp_path.iterdir())
    assert [line for line in lines[:-1]] == [
        str(tmp_path / f"{name}.csv")
        for name in (
            "participants",
            "randomizations",
            "visits",
            "outcome_measurements",
            "adverse_events",
            "doses",
            "deviations",
            "queries",
            "signatures",
            "data_dictionary",
        )
    ]
    assert len(files) == 10
    assert lines[-1] == "Exported EXO-OA-201 as csv for demo-blinded-stat: 10 file(s) (allocation masked)."
    with (tmp_path / "randomizations.csv").open(encoding="utf-8", newline="") as handle:
        assert {row["arm_code"] for row in csv.DictReader(handle)} == {"MASKED"}
    assert any(
        "export csv of EXO-OA-201 by demo-blinded-stat (allocation masked)" in record.getMessage()
        for record in caplog.records
    )


def test_xlsx_format(demo_trial, tmp_path):
    lines = run("EXO-OA-201", "--format", "xlsx", "--out", str(tmp_path), "--user", "demo-unblinded-stat")
    path = tmp_path / "EXO-OA-201.xlsx"
    assert lines[0] == str(path)
    assert lines[-1].endswith("1 file(s).")
    workbook = load_workbook(path, read_only=True)
    assert workbook.sheetnames[-1] == "data_dictionary"
    participants = list(workbook["participants"].iter_rows(values_only=True))
    assert len(participants) == Participant.objects.filter(trial=demo_trial).count() + 1
    workbook.close()


def test_odm_format(demo_trial, tmp_path):
    lines = run("EXO-OA-201", "--format", "odm", "--out", str(tmp_path), "--user", "demo-datamanager")
    path = tmp_path / "EXO-OA-201-odm.xml"
    assert lines[0] == str(path)
    root = etree.parse(str(path)).getroot()
    assert root.get("ODMVersion") == "1.3.2"
    assert "demo-datamanager" in root.get("Description")


def test_sdtm_format(demo_trial, tmp_path):
    lines = run("EXO-OA-201", "--format", "sdtm", "--out", str(tmp_path / "sdtm"), "--user", "demo-unblinded-stat")
    assert len(lines) == 12  # 5 domains × (xpt + csv) + define.csv + summary
    dm, _meta = pyreadstat.read_xport(tmp_path / "sdtm" / "dm.xpt")
    assert {"PBO", "LOW", "HIGH"} <= set(dm["ARMCD"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["NOPE-1", "--format", "csv", "--user", "demo-blinded-stat"], "No trial 'NOPE-1'."),
        (["EXO-OA-201", "--format", "csv", "--user", "nobody"], "No active user 'nobody'."),
        (["EXO-OA-201", "--format", "csv", "--user", "demo-sponsor"], "demo-sponsor may not export participant data"),
    ],
)
def test_refusals(demo_trial, tmp_path, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args, "--out", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_user_is_required(demo_trial, tmp_path):
    with pytest.raises(CommandError, match="--user"):
        run("EXO-OA-201", "--format", "csv", "--out", str(tmp_path))
