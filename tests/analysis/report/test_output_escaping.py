"""Hostile free text in the analysis outputs: an adverse-event term holding a script and one holding a spreadsheet
formula go through a real final analysis and come out inert — escaped in the HTML report (file and page), shown
literally in the PDF (not parsed as reportlab markup), and neutralised in the XLSX and CSV tables, where real
numbers stay numbers."""

from __future__ import annotations

import csv
import io
import re
import shutil
import zipfile

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from openpyxl import load_workbook
from pypdf import PdfReader

from accounts.testing import log_in
from analysis.models import AnalysisRun
from analysis.services import analysis_run_execute, analysis_run_request, run_folder
from audit.context import audit_context
from participants.models import AdverseEvent
from trials import demo

# A final analysis runs in the test: minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.django_db, pytest.mark.timeout(1200)]
SCRIPT = "<script>alert(1)</script>"
SCRIPT_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
FORMULA = '=HYPERLINK("http://x")'


def treatment_emergent_events(trial, count: int) -> list[AdverseEvent]:
    """Events after the participant's first dose and before the cut-off: they reach the safety tables."""
    chosen = []
    events = AdverseEvent.objects.filter(participant__trial=trial, onset_date__lt=demo.ENROLMENT_END)
    for event in events.select_related("participant").order_by("pk"):
        first_dose = event.participant.doses.order_by("administered_at").first()
        if first_dose and event.onset_date > first_dose.administered_at.date():
            chosen.append(event)
        if len(chosen) == count:
            return chosen
    raise AssertionError("the demo trial has no treatment-emergent adverse events to use")


@pytest.fixture(scope="module")
def hostile_run(django_db_setup, django_db_blocker, demo_seed):
    """A final analysis of data whose AE terms are a script and a formula.

    Everything it writes is rolled back at the end of the module, and its files removed, so the session's demo data
    (and its audit trail, which other tests read) stay as seeded.
    """
    with django_db_blocker.unblock():
        module_transaction = transaction.atomic()
        module_transaction.__enter__()
        run = None
        try:
            trial = demo_seed.trial
            statistician = get_user_model().objects.get(username="demo-unblinded-stat")
            scripted, formula = treatment_emergent_events(trial, 2)
            with audit_context(reason="test: hostile free text in analysis outputs", user=statistician):
                AdverseEvent.objects.filter(pk=scripted.pk).update(term=SCRIPT)
                AdverseEvent.objects.filter(pk=formula.pk).update(term=FORMULA)
            run = analysis_run_request(trial=trial, user=statistician, kind="final", cutoff=demo.ENROLMENT_END)
            run = analysis_run_execute(run_id=run.pk)
            assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
            yield run
        finally:
            transaction.set_rollback(True)
            module_transaction.__exit__(None, None, None)
            if run is not None:
                shutil.rmtree(run_folder(run), ignore_errors=True)


@pytest.mark.req("R27")
def test_the_html_report_escapes_the_term_in_the_file_and_on_the_page(hostile_run):
    html = (run_folder(hostile_run) / "report.html").read_text(encoding="utf-8")
    assert SCRIPT_ESCAPED in html
    assert SCRIPT not in html

    client = Client()
    log_in(client, "demo-unblinded-stat")
    page = client.get(f"/trials/EXO-OA-201/analyses/{hostile_run.pk}/report/final/")
    assert page.status_code == 200
    assert SCRIPT_ESCAPED in page.content.decode()
    assert SCRIPT not in page.content.decode()


@pytest.mark.req("R27")
def test_the_pdf_shows_the_term_literally(hostile_run):
    reader = PdfReader(run_folder(hostile_run) / "report.pdf")
    text = re.sub(r"\s+", "", "".join(page.extract_text() for page in reader.pages))
    # had the term been parsed as Paragraph markup, the tags would be gone (or the build would have failed)
    assert SCRIPT in text
    assert re.sub(r"\s+", "", FORMULA) in text


@pytest.mark.req("R27")
def test_the_xlsx_neutralises_the_formula_and_keeps_numbers_numeric(hostile_run):
    book = load_workbook(run_folder(hostile_run) / "report.xlsx")
    cells = [cell for sheet in book for row in sheet.iter_rows() for cell in row if cell.value is not None]
    assert not [f"{cell.parent.title}!{cell.coordinate}" for cell in cells if cell.data_type == "f"]
    values = [cell.value for cell in cells]
    assert "'" + FORMULA in values
    assert SCRIPT in values  # a script is harmless in a spreadsheet cell: kept as written
    numbers = [value for value in values if isinstance(value, int | float) and not isinstance(value, bool)]
    assert any(value < 0 for value in numbers), "negative numbers (estimates, differences) must stay numeric"


@pytest.mark.req("R27")
def test_the_csv_tables_neutralise_the_formula_and_leave_numbers_alone(hostile_run):
    with zipfile.ZipFile(run_folder(hostile_run) / "tables.zip") as archive:
        cells = [
            cell
            for name in archive.namelist()
            if name.endswith(".csv")
            for row in csv.reader(io.StringIO(archive.read(name).decode("utf-8")))
            for cell in row
        ]
    assert "'" + FORMULA in cells
    assert FORMULA not in cells
    prefixed_numbers = [cell for cell in cells if cell.startswith("'") and _is_number(cell[1:])]
    assert prefixed_numbers == []
    assert any(cell.startswith("-") and _is_number(cell) for cell in cells)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
