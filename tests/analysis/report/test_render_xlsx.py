"""XLSX renderer: sheets per table, typed cells, formula neutralisation and byte-identical output."""

import dataclasses
import datetime as dt
import zipfile

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook

from analysis.report.document import Section, Table
from analysis.report.render_xlsx import HEADER_ROW, render_xlsx

from .conftest import FORMULA, SCRIPT_TERM


@pytest.fixture(scope="module")
def xlsx_path(report_document, tmp_path_factory):
    path = tmp_path_factory.mktemp("xlsx") / "report.xlsx"
    render_xlsx(report_document, path)
    return path


@pytest.fixture(scope="module")
def workbook(xlsx_path):
    return load_workbook(xlsx_path)


def _column(sheet, heading):
    headings = [cell.value for cell in sheet[HEADER_ROW]]
    index = headings.index(heading) + 1
    return [sheet.cell(row=row, column=index) for row in range(HEADER_ROW + 1, sheet.max_row + 1)]


def test_contents_first_then_one_sheet_per_table_named_by_key(workbook, report_document):
    assert workbook.sheetnames == ["Contents", *(table.key for table in report_document.tables())]


def test_contents_lists_metadata_provenance_and_links_to_every_table(workbook, report_document):
    contents = workbook["Contents"]
    values = [cell.value for row in contents.iter_rows() for cell in row if cell.value is not None]
    assert report_document.title in values
    assert "CLOSED" in values
    assert dt.datetime(2025, 3, 1) in values  # the cut-off is a real date cell  # noqa: DTZ001
    assert "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" in values
    links = {cell.value: cell.hyperlink.location for row in contents.iter_rows() for cell in row if cell.hyperlink}
    assert links == {table.key: f"'{table.key}'!A1" for table in report_document.tables()}


def test_table_sheet_has_title_note_bold_frozen_header(workbook):
    sheet = workbook["enrolment_by_site"]
    assert sheet["A1"].value == "Randomised participants by site"
    assert sheet["A2"].value == "Counts are cumulative at the data cut-off."
    assert [cell.value for cell in sheet[HEADER_ROW]] == ["site", "randomized"]
    assert all(cell.font.bold for cell in sheet[HEADER_ROW])
    assert sheet.freeze_panes == f"A{HEADER_ROW + 1}"


def test_numbers_stay_numeric_and_negative_numbers_untouched(workbook):
    sheet = workbook["primary_efficacy"]
    estimates = _column(sheet, "estimate")
    assert all(cell.data_type == "n" for cell in estimates)
    assert estimates[0].value == pytest.approx(-1.23456789)  # full precision, not the PDF's 4 decimals
    assert [cell.value for cell in _column(sheet, "ci_lower")] == [-2.0, -1.25, -0.1, 1.1]
    assert [cell.value for cell in _column(sheet, "n")] == [254, 254, 250, 249]
    assert _column(sheet, "p_value")[0].value == pytest.approx(4e-7)


def test_formula_text_is_neutralised_and_markup_kept_verbatim(workbook):
    endpoints = [cell.value for cell in _column(workbook["primary_efficacy"], "endpoint")]
    assert "'" + FORMULA in endpoints
    assert FORMULA not in endpoints
    assert SCRIPT_TERM in endpoints
    assert all(cell.data_type == "s" for cell in _column(workbook["primary_efficacy"], "endpoint"))


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"])
def test_every_formula_prefix_is_neutralised(report_document, tmp_path, text):
    frame = pd.DataFrame({"value": [text, -3.5]}, dtype=object)
    document = dataclasses.replace(
        report_document, sections=(Section(title="X", tables=(Table(key="t", title="=HYPERLINK(1)", frame=frame),)),)
    )
    render_xlsx(document, tmp_path / "x.xlsx")
    sheet = load_workbook(tmp_path / "x.xlsx")["t"]
    # Some XML parsers read a stored CR back as LF (openpyxl's choice depends on whether lxml is installed);
    # what matters is the leading quote.
    assert sheet.cell(row=HEADER_ROW + 1, column=1).value in ("'" + text, ("'" + text).replace("\r", "\n"))
    assert sheet.cell(row=HEADER_ROW + 2, column=1).value == -3.5
    assert sheet["A1"].value == "'=HYPERLINK(1)"


def test_missing_and_infinite_values_and_colliding_keys(report_document, tmp_path):
    frame = pd.DataFrame({"bound": [np.nan, np.inf, -np.inf, 1.5], "flag": [True, False, True, False]})
    long_key = "k" * 40
    document = dataclasses.replace(
        report_document,
        sections=(
            Section(
                title="X",
                tables=(
                    Table(key=long_key, title="a", frame=frame),
                    Table(key=long_key, title="b", frame=frame),
                    Table(key="contents", title="c", frame=frame),
                ),
            ),
        ),
    )
    render_xlsx(document, tmp_path / "x.xlsx")
    workbook = load_workbook(tmp_path / "x.xlsx")
    assert workbook.sheetnames == ["Contents", "k" * 31, "k" * 29 + "_2", "contents_2"]
    sheet = workbook["k" * 31]
    assert [cell.value for cell in _column(sheet, "bound")] == [None, "∞", "−∞", 1.5]
    assert [cell.data_type for cell in _column(sheet, "flag")] == ["b"] * 4


def test_marking_and_confidentiality_in_page_header(workbook):
    sheet = workbook["primary_efficacy"]
    assert "CLOSED" in sheet.oddHeader.center.text
    assert sheet.oddHeader.right.text == "CONFIDENTIAL"
    assert sheet.oddFooter.right.text == "Page &P of &N"


def test_column_widths_fit_the_content(workbook):
    sheet = workbook["ae_listing"]
    widths = {letter: dimension.width for letter, dimension in sheet.column_dimensions.items()}
    assert widths["B"] > widths["C"]  # adverse-event terms are wider than grades


def test_rendering_twice_gives_identical_bytes_with_fixed_timestamps(report_document, xlsx_path, tmp_path):
    again = tmp_path / "again.xlsx"
    render_xlsx(report_document, again)
    assert again.read_bytes() == xlsx_path.read_bytes()
    with zipfile.ZipFile(xlsx_path) as archive:
        assert {info.date_time for info in archive.infolist()} == {(2025, 3, 4, 9, 30, 0)}
    properties = load_workbook(xlsx_path).properties
    assert properties.created == properties.modified == dt.datetime(2025, 3, 4, 9, 30)  # noqa: DTZ001
