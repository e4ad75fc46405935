"""CSV zip renderer: one CSV per table plus README, unformatted numbers, formula safety, fixed bytes."""

import csv
import dataclasses
import io
import zipfile

import numpy as np
import pandas as pd
import pytest

from analysis.report.document import Section, Table
from analysis.report.render_csv import render_csv_zip

from .conftest import FORMULA, SCRIPT_TERM


@pytest.fixture(scope="module")
def zip_path(report_document, tmp_path_factory):
    path = tmp_path_factory.mktemp("csv") / "report.zip"
    render_csv_zip(report_document, path)
    return path


def _read_csv(archive, name):
    return list(csv.reader(io.StringIO(archive.read(name).decode("utf-8"))))


def test_zip_holds_every_table_and_readme_in_sorted_order(zip_path, report_document):
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
    assert names == sorted([*(f"{table.key}.csv" for table in report_document.tables()), "README.txt"])


def test_csv_has_header_and_full_precision_numbers(zip_path):
    with zipfile.ZipFile(zip_path) as archive:
        rows = _read_csv(archive, "primary_efficacy.csv")
    assert rows[0] == ["endpoint", "n", "estimate", "ci_lower", "ci_upper", "p_value"]
    assert rows[1] == ["WOMAC pain Δ week 12", "254", "-1.23456789", "-2.0", "-0.4", "4e-07"]
    assert float(rows[3][2]) == pytest.approx(0.000012345)


def test_formula_text_neutralised_markup_verbatim_negatives_numeric(zip_path):
    with zipfile.ZipFile(zip_path) as archive:
        endpoints = [row[0] for row in _read_csv(archive, "primary_efficacy.csv")[1:]]
    assert "'" + FORMULA in endpoints
    assert FORMULA not in endpoints
    assert SCRIPT_TERM in endpoints


def test_readme_describes_the_report(zip_path, report_document):
    with zipfile.ZipFile(zip_path) as archive:
        readme = archive.read("README.txt").decode("utf-8")
    for expected in (
        report_document.title,
        "Marking: CLOSED",
        "Data cut-off: 2025-03-01",
        "Generated: 2025-03-04 09:30:00 UTC",
        "dataset_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "primary_efficacy.csv: Primary and key secondary endpoints",
    ):
        assert expected in readme


def test_missing_values_are_empty_and_unsafe_keys_stay_inside_the_archive(report_document, tmp_path):
    frame = pd.DataFrame({"x": [np.nan, 1.5, np.inf], "when": pd.to_datetime(["2025-01-02", None, "2025-01-03"])})
    document = dataclasses.replace(
        report_document,
        sections=(Section(title="X", tables=(Table(key="../evil", title="t", frame=frame),)),),
    )
    render_csv_zip(document, tmp_path / "x.zip")
    with zipfile.ZipFile(tmp_path / "x.zip") as archive:
        assert archive.namelist() == ["README.txt", "___evil.csv"]
        assert _read_csv(archive, "___evil.csv") == [
            ["x", "when"],
            ["", "2025-01-02T00:00:00"],
            ["1.5", ""],
            ["inf", "2025-01-03T00:00:00"],
        ]


def test_rendering_twice_gives_identical_bytes_with_fixed_timestamps(report_document, zip_path, tmp_path):
    again = tmp_path / "again.zip"
    render_csv_zip(report_document, again)
    assert again.read_bytes() == zip_path.read_bytes()
    with zipfile.ZipFile(zip_path) as archive:
        assert {info.date_time for info in archive.infolist()} == {(2025, 3, 4, 9, 30, 0)}
