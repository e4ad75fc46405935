"""PDF renderer: structure, extractable text, escaping, layout limits and byte-identical output."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pypdf import PdfReader

from analysis.report.document import Section, Table
from analysis.report.render_pdf import render_pdf

from .conftest import SCRIPT_TERM


@pytest.fixture(scope="module")
def pdf_path(report_document, tmp_path_factory):
    path = tmp_path_factory.mktemp("pdf") / "report.pdf"
    render_pdf(report_document, path)
    return path


@pytest.fixture(scope="module")
def pages(pdf_path):
    return [page.extract_text() for page in PdfReader(pdf_path).pages]


def _flat(text):
    return re.sub(r"\s+", " ", text)


def test_pdf_opens_and_has_title_contents_and_body_pages(pages):
    assert len(pages) > 3
    assert "EXO-OA-201 interim analysis 1 — DSMB closed report" in _flat(pages[0])
    assert "Contents" in pages[1]


def test_every_page_has_header_and_page_x_of_y_footer(pages):
    total = len(pages)
    for number, text in enumerate(pages, start=1):
        assert "EXO-OA-201 · data cut-off 2025-03-01 · CLOSED · CONFIDENTIAL" in text
        assert f"Page {number} of {total}" in text


def test_title_page_carries_metadata_in_utc_and_provenance(pages):
    first = _flat(pages[0])
    for expected in ("CLOSED", "CONFIDENTIAL", "2025-03-01", "2025-03-04 09:30:00 UTC", "code_version", "SAP v2.0"):
        assert expected in first
    # The SHA-256 wraps inside its cell; all of it must still be there.
    assert "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" in re.sub(r"\s+", "", pages[0])


def test_table_of_contents_lists_sections_tables_and_figures_with_their_pages(pages):
    contents = _flat(pages[1])
    for heading in ("Trial status", "Primary efficacy", "Safety", "Sequential monitoring"):
        assert heading in contents
        # The entry's page number must be the page the heading is actually on.
        listed = int(re.search(re.escape(heading) + r"[ .]*?(\d+)", contents).group(1))
        assert heading in pages[listed - 1]
    assert "Table 2. Primary and key secondary endpoints" in contents
    assert "Figure 2. CONSORT flow diagram" in contents


def test_table_values_are_formatted(pages):
    body = _flat(" ".join(pages[2:]))
    assert "WOMAC pain Δ week 12" in body
    assert "-1.2346" in body  # floats to at most 4 decimals
    assert "0.031274" not in body
    assert "0.0313" in body  # p-values to 4 fixed decimals
    assert "<0.0001" in body  # and floored
    assert "1.234e-05" in body  # tiny non-p-values keep significant digits instead of showing 0
    assert "254" in body
    assert "254.0" not in body


def test_special_characters_render_from_embedded_font(pages):
    body = " ".join(pages)
    for character in ("×", "≤", "µ", "Δ", "⁹", "−"):
        assert character in body


def test_script_term_appears_literally(pages):
    body = _flat(" ".join(pages))
    assert SCRIPT_TERM in body
    assert "must show literally & never become markup" in body


def test_wide_table_goes_landscape_and_long_table_repeats_its_header(pdf_path):
    reader = PdfReader(pdf_path)
    landscape = [page for page in reader.pages if page.mediabox.width > page.mediabox.height]
    assert landscape
    wide_page = re.sub(r"\s+", "", " ".join(page.extract_text() for page in landscape))
    # Identifier headings too wide for their column break after an underscore, never mid-word.
    assert "particle_concentration_visit_16" in wide_page
    assert "LOT-2024-003" in wide_page
    listing_pages = [page.extract_text() for page in reader.pages if "EXO-0" in page.extract_text()]
    assert len(listing_pages) > 1
    assert all("participant" in text and "grade" in text for text in listing_pages)


def test_rendering_twice_gives_identical_bytes(report_document, pdf_path, tmp_path):
    again = tmp_path / "again.pdf"
    render_pdf(report_document, again)
    assert again.read_bytes() == pdf_path.read_bytes()


def test_creation_date_comes_from_generated_at(pdf_path):
    assert PdfReader(pdf_path).metadata["/CreationDate"].startswith("D:20250304093000")


def test_different_content_changes_the_bytes(report_document, pdf_path, tmp_path):
    changed = dataclasses.replace(report_document, cutoff=report_document.cutoff.replace(day=2))
    render_pdf(changed, tmp_path / "changed.pdf")
    assert (tmp_path / "changed.pdf").read_bytes() != pdf_path.read_bytes()


@pytest.mark.parametrize("columns", [3, 40])
def test_tables_never_exceed_the_page_width(report_document, tmp_path, columns):
    frame = pd.DataFrame({f"column_with_a_long_name_{index}": ["x" * 60, "value"] for index in range(columns)})
    document = dataclasses.replace(
        report_document,
        sections=(Section(title="Wide", tables=(Table(key="wide", title="Wide", frame=frame),)),),
    )
    path = tmp_path / "wide.pdf"
    render_pdf(document, path)
    reader = PdfReader(path)
    for page in reader.pages:
        width = float(page.mediabox.width)
        positions = []

        def visitor(text, cm, tm, font_dict, font_size, positions=positions):
            if text.strip():
                positions.append(tm[4] * cm[0] + cm[4])

        page.extract_text(visitor_text=visitor)
        assert positions
        assert max(positions) < width - 40


def test_empty_table_and_section_without_content_render(report_document, tmp_path):
    document = dataclasses.replace(
        report_document,
        sections=(
            Section(title="Empty section"),
            Section(
                title="Empty table",
                tables=(Table(key="empty", title="No events", frame=pd.DataFrame({"term": [], "n": []})),),
            ),
        ),
    )
    path = tmp_path / "empty.pdf"
    render_pdf(document, path)
    text = " ".join(page.extract_text() for page in PdfReader(path).pages)
    assert "Empty section" in text
    assert "No rows." in text


def test_renderers_import_neither_django_nor_other_project_modules():
    # A fresh interpreter: in this one pytest-django has imported Django already.
    code = (
        "import sys\n"
        "import analysis.report.render_pdf, analysis.report.render_xlsx, analysis.report.render_csv\n"
        "import analysis.report.render_html, analysis.report.figures\n"
        "project = ('analysis', 'trials', 'participants', 'audit', 'config')\n"
        "allowed = {'analysis', 'analysis.report', 'analysis.report.document', 'analysis.report.figures'}\n"
        "allowed |= {f'analysis.report.render_{name}' for name in ('pdf', 'xlsx', 'csv', 'html')}\n"
        "loaded = {name for name in sys.modules if name.split('.')[0] in project} - allowed\n"
        "assert 'django' not in sys.modules and not loaded, (sorted(loaded), 'django' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False)  # noqa: S603
    assert result.returncode == 0, result.stderr
