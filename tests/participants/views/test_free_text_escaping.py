"""Stored free text is inert wherever it is shown: an adverse-event verbatim term holding a script or a
spreadsheet formula is rendered escaped on every page that lists adverse events and neutralised in the
participants' CSV and XLSX exports."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from openpyxl import load_workbook

from accounts.testing import log_in
from audit.context import audit_context
from participants.models import AdverseEvent

pytestmark = pytest.mark.django_db
BASE = "/trials/EXO-OA-201"
SCRIPT = "<script>alert(1)</script>"
SCRIPT_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
FORMULA = '=HYPERLINK("http://x")'


@pytest.fixture
def hostile_events(demo_trial):
    """Two adverse events of site S01 whose verbatim terms are a script and a formula (a serious one if any)."""
    events = AdverseEvent.objects.filter(participant__trial=demo_trial, participant__site__code="S01")
    scripted = events.filter(serious=True).first() or events.first()
    formula = events.exclude(pk=scripted.pk).first()
    coordinator = get_user_model().objects.get(username="demo-coordinator")
    with audit_context(reason="test: hostile free text", user=coordinator):
        AdverseEvent.objects.filter(pk=scripted.pk).update(term=SCRIPT)
        AdverseEvent.objects.filter(pk=formula.pk).update(term=FORMULA)
    return scripted, formula


def page(username: str, url: str) -> str:
    client = Client()
    log_in(client, username)
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def assert_inert(html: str, url: str) -> None:
    assert SCRIPT not in html, f"{url} renders the stored script as markup"
    assert SCRIPT_ESCAPED in html, f"{url} does not show the stored term at all"


def test_every_page_that_shows_adverse_events_escapes_the_verbatim_term(hostile_events):
    scripted, formula = hostile_events
    participant = f"{BASE}/participants/{scripted.participant_id}/"
    for username, url in [
        ("demo-site", participant),
        ("demo-site", f"{participant}adverse-events/{scripted.pk}/"),
        ("demo-monitor", participant),
        ("demo-coordinator", f"/admin/participants/adverseevent/{scripted.pk}/change/"),
        ("demo-coordinator", f"/admin/participants/adverseevent/?q={scripted.participant.screening_number}"),
    ]:
        assert_inert(page(username, url), url)
    if scripted.serious:  # the dashboard lists serious events with running reporting clocks
        assert SCRIPT not in page("demo-site", f"{BASE}/")
    formula_page = page("demo-site", f"{BASE}/participants/{formula.participant_id}/adverse-events/{formula.pk}/")
    assert "=HYPERLINK(&quot;http://x&quot;)" in formula_page


@pytest.mark.req("R27")
def test_the_participants_csv_export_neutralises_formulas(hostile_events):
    client = Client()
    log_in(client, "demo-site")
    response = client.get(f"{BASE}/exports/csv/adverse_events/")
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    assert "'" + FORMULA in cells
    assert FORMULA not in cells
    assert SCRIPT in cells  # CSV is not HTML: the text is kept as written, and it is not a formula


@pytest.mark.req("R27")
def test_the_participants_xlsx_export_neutralises_formulas(hostile_events):
    client = Client()
    log_in(client, "demo-site")
    response = client.get(f"{BASE}/exports/xlsx/")
    assert response.status_code == 200
    book = load_workbook(io.BytesIO(b"".join(response.streaming_content)))
    cells = [cell for sheet in book for row in sheet.iter_rows() for cell in row if cell.value is not None]
    assert not [cell.coordinate for cell in cells if cell.data_type == "f"], "a stored value became a formula"
    assert "'" + FORMULA in [cell.value for cell in cells]
    assert any(isinstance(cell.value, int | float) and not isinstance(cell.value, bool) for cell in cells)
