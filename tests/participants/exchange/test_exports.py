"""CSV and XLSX exports of the demo trial: one table per domain, blinding, formula safety and streaming."""

from __future__ import annotations

import csv
import html
import io
import re
import zipfile

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models.query import QuerySet
from openpyxl import load_workbook

from audit.context import audit_context
from participants.exchange import exports
from participants.exchange.exports import (
    DICTIONARY,
    MASKED,
    csv_streaming_response,
    export_tables,
    stream_csv,
    write_csv_export,
    write_xlsx_export,
)
from participants.models import AdverseEvent, DoseAdministration, OutcomeMeasurement, Randomization, Visit

DOMAIN_TABLES = [
    "participants",
    "randomizations",
    "visits",
    "outcome_measurements",
    "adverse_events",
    "doses",
    "deviations",
    "queries",
    "signatures",
]
ARM_REVEALING = ["PBO", "LOW", "HIGH", "Placebo (saline)", "Exosomes 1×10⁹ particles", "Exosomes 1×10¹⁰ particles"]
INJECTION = '=HYPERLINK("http://evil.example/x","click")'


def whole_word(text: str) -> re.Pattern[bytes]:
    return re.compile(rb"(?<![\w])" + re.escape(text.encode("utf-8")) + rb"(?![\w])")


def revealing_words_in(data: bytes) -> list[str]:
    return [word for word in ARM_REVEALING if whole_word(word).search(data)]


def _unescaped(name: str, data: bytes) -> bytes:
    # XML may spell a character as a reference (openpyxl writes "×" as "&#215;"): compare the characters.
    if name.endswith((".xml", ".rels")):
        return html.unescape(data.decode("utf-8")).encode("utf-8")
    return data


def file_bytes(path) -> bytes:
    """A file's bytes; for a zip container (XLSX) every member's, so nothing hides in deflate or in XML escapes."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return b"\n".join(_unescaped(name, archive.read(name)) for name in archive.namelist())
    return _unescaped(path.name, path.read_bytes())


def user(username: str):
    return get_user_model().objects.get(username=username)


@pytest.fixture
def unblinded(demo_trial):
    return user("demo-unblinded-stat")


@pytest.fixture
def blinded(demo_trial):
    return user("demo-blinded-stat")


def read_csv(path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_csv_export_writes_every_domain_and_the_dictionary(demo_trial, unblinded, tmp_path):
    written = write_csv_export(trial=demo_trial, user=unblinded, out_dir=tmp_path)

    assert [path.name for path in written] == [f"{name}.csv" for name in [*DOMAIN_TABLES, DICTIONARY]]
    participants = read_csv(tmp_path / "participants.csv")
    assert len(participants) == demo_trial.participants.count()
    assert participants[0]["subject_id"] == f"EXO-OA-201-{participants[0]['screening_number']}"
    measurements = read_csv(tmp_path / "outcome_measurements.csv")
    assert len(measurements) == OutcomeMeasurement.objects.filter(visit__participant__trial=demo_trial).count()
    randomizations = read_csv(tmp_path / "randomizations.csv")
    assert {row["arm_code"] for row in randomizations} == {"PBO", "LOW", "HIGH"}
    # the bytes are UTF-8 with the arm names as stored
    assert "Exosomes 1×10¹⁰ particles" in (tmp_path / "randomizations.csv").read_text(encoding="utf-8")


def test_csv_values_match_the_database(demo_trial, unblinded, tmp_path):
    write_csv_export(trial=demo_trial, user=unblinded, out_dir=tmp_path)
    dose = DoseAdministration.objects.filter(participant__trial=demo_trial, lot__isnull=False).order_by("pk").first()
    row = next(r for r in read_csv(tmp_path / "doses.csv") if r["record_id"] == str(dose.pk))
    assert row["lot_number"] == dose.lot.lot_number
    assert float(row["particles_given"]) == dose.particles_given
    assert row["administered_at"] == dose.administered_at.isoformat()
    event = AdverseEvent.objects.filter(participant__trial=demo_trial).order_by("pk").first()
    ae_row = next(r for r in read_csv(tmp_path / "adverse_events.csv") if r["record_id"] == str(event.pk))
    assert ae_row["soc_code"] == event.soc
    assert ae_row["soc_name"]
    assert ae_row["grade"] == str(event.grade)
    assert ae_row["serious"] == ("true" if event.serious else "false")


def test_formula_text_is_neutralised_and_negative_numbers_stay_numbers(demo_trial, unblinded, tmp_path):
    event = AdverseEvent.objects.filter(participant__trial=demo_trial).order_by("pk").first()
    with audit_context(reason="test"):
        AdverseEvent.objects.filter(pk=event.pk).update(term=INJECTION)
    negative = Visit.objects.filter(participant__trial=demo_trial, study_day__lt=0).order_by("pk").first()
    assert negative is not None, "the demo screening visits fall before baseline"

    write_csv_export(trial=demo_trial, user=unblinded, out_dir=tmp_path)
    ae_row = next(r for r in read_csv(tmp_path / "adverse_events.csv") if r["record_id"] == str(event.pk))
    assert ae_row["term"] == "'" + INJECTION
    raw_visits = (tmp_path / "visits.csv").read_text(encoding="utf-8")
    visit_row = next(r for r in read_csv(tmp_path / "visits.csv") if r["record_id"] == str(negative.pk))
    assert visit_row["study_day"] == str(negative.study_day)
    assert f",{negative.study_day}," in raw_visits  # unquoted, no apostrophe: a number to a spreadsheet

    path = write_xlsx_export(trial=demo_trial, user=unblinded, path=tmp_path / "export.xlsx")
    workbook = load_workbook(path, read_only=True)
    ae_sheet = list(workbook["adverse_events"].iter_rows(values_only=True))
    header = ae_sheet[0]
    ae_cells = next(r for r in ae_sheet[1:] if r[header.index("record_id")] == event.pk)
    assert ae_cells[header.index("term")] == "'" + INJECTION
    visit_sheet = list(workbook["visits"].iter_rows(values_only=True))
    visit_header = visit_sheet[0]
    visit_cells = next(r for r in visit_sheet[1:] if r[visit_header.index("record_id")] == negative.pk)
    assert visit_cells[visit_header.index("study_day")] == negative.study_day  # an int, not text
    workbook.close()
    # No formula anywhere in the workbook: openpyxl writes formulas as <f> elements.
    with zipfile.ZipFile(path) as archive:
        assert not any(b"<f>" in archive.read(name) for name in archive.namelist() if name.endswith(".xml"))


# Free text a site might type as an AE verbatim term; each would run as a formula if a spreadsheet opened it raw.
FORMULA_TERMS = ['=HYPERLINK("http://x")', "@SUM(1)", "-2+3", "+1", "\tTAB=1", "\rCR=1"]
SCRIPT_TERM = "<script>alert(1)</script>"


def test_formula_injection_in_free_text_is_neutralised_in_csv_and_xlsx(demo_trial, unblinded, tmp_path):
    events = list(AdverseEvent.objects.filter(participant__trial=demo_trial).order_by("pk")[: len(FORMULA_TERMS) + 1])
    terms = {event.pk: term for event, term in zip(events, [*FORMULA_TERMS, SCRIPT_TERM], strict=True)}
    with audit_context(reason="test"):
        for pk, term in terms.items():
            AdverseEvent.objects.filter(pk=pk).update(term=term)
    expected = {pk: term if term == SCRIPT_TERM else "'" + term for pk, term in terms.items()}

    write_csv_export(trial=demo_trial, user=unblinded, out_dir=tmp_path)
    streamed = "".join(stream_csv(trial=demo_trial, user=unblinded, table="adverse_events"))
    assert streamed == (tmp_path / "adverse_events.csv").read_bytes().decode("utf-8")
    csv_terms = {int(row["record_id"]): row["term"] for row in read_csv(tmp_path / "adverse_events.csv")}
    assert {pk: csv_terms[pk] for pk in terms} == expected
    assert f",{SCRIPT_TERM}," in streamed  # verbatim: a CSV has no markup, the text is only data

    path = write_xlsx_export(trial=demo_trial, user=unblinded, path=tmp_path / "export.xlsx")
    workbook = load_workbook(path)  # not read-only: cells keep their data type
    sheet = workbook["adverse_events"]
    header = [cell.value for cell in sheet[1]]
    cells = {row[header.index("record_id")].value: row[header.index("term")] for row in sheet.iter_rows(min_row=2)}
    assert {pk: cells[pk].value for pk in terms} == expected
    assert {cells[pk].data_type for pk in terms} == {"s"}  # strings, never formulas ("f")
    workbook.close()
    with zipfile.ZipFile(path) as archive:
        assert not any(b"<f>" in archive.read(name) for name in archive.namelist() if name.endswith(".xml"))


def test_blinded_export_masks_arm_and_dose_and_contains_no_arm_words(demo_trial, blinded, tmp_path):
    write_csv_export(trial=demo_trial, user=blinded, out_dir=tmp_path / "csv")
    xlsx = write_xlsx_export(trial=demo_trial, user=blinded, path=tmp_path / "export.xlsx")

    for path in [*sorted((tmp_path / "csv").iterdir()), xlsx]:
        assert revealing_words_in(file_bytes(path)) == [], path.name
    randomizations = read_csv(tmp_path / "csv" / "randomizations.csv")
    assert randomizations
    assert {(row["arm_code"], row["arm_name"]) for row in randomizations} == {(MASKED, MASKED)}
    doses = read_csv(tmp_path / "csv" / "doses.csv")
    assert doses
    for column in ("lot_number", "volume_ml", "particles_given", "administered_by", "notes"):
        assert {row[column] for row in doses} == {MASKED}, column
    assert {row["route"] for row in doses} == {"intra_articular"}


def test_unblinded_export_has_the_arm_words(demo_trial, unblinded, tmp_path):
    write_csv_export(trial=demo_trial, user=unblinded, out_dir=tmp_path / "csv")
    xlsx = write_xlsx_export(trial=demo_trial, user=unblinded, path=tmp_path / "export.xlsx")

    csv_bytes = b"".join(file_bytes(path) for path in sorted((tmp_path / "csv").iterdir()))
    assert revealing_words_in(csv_bytes) == ARM_REVEALING
    assert revealing_words_in(file_bytes(xlsx)) == ARM_REVEALING


def test_blinded_export_never_reads_the_arm(demo_trial, blinded, monkeypatch):
    """Masked columns are not even selected: the SQL of the blinded randomization query has no arm."""
    seen: list[str] = []
    original = QuerySet.values_list

    def spy(self, *fields, **kwargs):
        seen.extend(fields)
        return original(self, *fields, **kwargs)

    monkeypatch.setattr(QuerySet, "values_list", spy)
    rows = list(export_tables(trial=demo_trial, user=blinded)["randomizations"].rows())
    assert rows
    assert not [name for name in seen if name.startswith("arm")]


def test_site_staff_export_only_their_site(demo_trial, tmp_path):
    site_user = user("demo-site")
    write_csv_export(trial=demo_trial, user=site_user, out_dir=tmp_path)
    participants = read_csv(tmp_path / "participants.csv")
    assert participants
    assert {row["site_code"] for row in participants} == {"S01"}
    assert {row["subject_id"].split("-")[3] for row in read_csv(tmp_path / "outcome_measurements.csv")} == {"S01"}
    assert revealing_words_in(b"".join(p.read_bytes() for p in tmp_path.iterdir())) == []


def test_members_without_participant_access_cannot_export(demo_trial, tmp_path):
    with pytest.raises(PermissionDenied):
        write_csv_export(trial=demo_trial, user=user("demo-sponsor"), out_dir=tmp_path / "csv")
    with pytest.raises(PermissionDenied):
        write_xlsx_export(trial=demo_trial, user=user("demo-sponsor"), path=tmp_path / "xlsx" / "export.xlsx")
    with pytest.raises(PermissionDenied):
        stream_csv(trial=demo_trial, user=user("demo-dsmb"), table="participants")
    assert not list(tmp_path.iterdir())  # refused before any folder or file was made


def test_data_dictionary_lists_every_exported_column(demo_trial, blinded, unblinded):
    for member in (blinded, unblinded):
        tables = export_tables(trial=demo_trial, user=member)
        dictionary = list(tables[DICTIONARY].rows())
        described = {(row[0], row[1]) for row in dictionary}
        exported = {(name, column) for name in DOMAIN_TABLES for column in tables[name].columns}
        assert exported == described
        for row in dictionary:
            assert row[3], row  # a label
            assert row[4] in {"text", "integer", "float", "boolean", "date", "datetime"}, row


def test_data_dictionary_describes_choices_endpoints_and_blinding(demo_trial, blinded, unblinded):
    def rows_for(member):
        return list(export_tables(trial=demo_trial, user=member)[DICTIONARY].rows())

    blinded_rows = rows_for(blinded)
    sex = next(row for row in blinded_rows if row[:2] == ("participants", "sex"))
    assert sex[6] == "F=Female; M=Male; U=Undifferentiated / intersex"
    womac = next(row for row in blinded_rows if row[2] == "WOMACP")
    assert womac[:2] == ("outcome_measurements", "value")
    assert (womac[3], womac[4], womac[5], womac[7], womac[8]) == ("WOMAC pain (0–100)", "float", "points", 0, 100)
    responder = next(row for row in blinded_rows if row[2] == "RESP")
    assert (responder[4], responder[6]) == ("integer", "0=No; 1=Yes")
    volume = next(row for row in blinded_rows if row[:2] == ("doses", "volume_ml"))
    assert (volume[5], volume[6], volume[10]) == ("mL", MASKED, "masked for blinded users")
    arm = next(row for row in blinded_rows if row[:2] == ("randomizations", "arm_code"))
    assert arm[6] == MASKED
    unblinded_arm = next(row for row in rows_for(unblinded) if row[:2] == ("randomizations", "arm_code"))
    assert unblinded_arm[6] == "HIGH=Exosomes 1×10¹⁰ particles; LOW=Exosomes 1×10⁹ particles; PBO=Placebo (saline)"


def test_stream_csv_sends_the_header_first_then_chunks_of_whole_rows(demo_trial, unblinded, monkeypatch):
    selected: list[str] = []
    original_select = exports.TrialExport.csv_select

    def counting_select(self, name):
        selected.append(name)
        return original_select(self, name)

    monkeypatch.setattr(exports.TrialExport, "csv_select", counting_select)
    monkeypatch.setattr(exports, "STREAMED_CHUNK_BYTES", 4096)
    total = OutcomeMeasurement.objects.filter(visit__participant__trial=demo_trial).count()

    chunks = stream_csv(trial=demo_trial, user=unblinded, table="outcome_measurements")
    header = next(chunks)
    assert header.startswith("record_id,subject_id,visit_code")
    assert selected == []  # the header goes out before the table is queried
    rest = list(chunks)
    assert selected == ["outcome_measurements"]
    assert len(rest) > 2
    for chunk in rest:
        assert chunk.endswith("\r\n")
    longest_row = max(len(line.encode()) for line in "".join(rest).split("\r\n"))
    for chunk in rest[:-1]:  # cut at the first row that reaches the size, counted as COPY sent it (LF line ends)
        assert 4096 <= len(chunk.replace("\r\n", "\n").encode()) <= 4096 + longest_row
    body = header + "".join(rest)
    assert len(list(csv.reader(io.StringIO(body)))) == total + 1


@pytest.mark.parametrize("username", ["demo-unblinded-stat", "demo-blinded-stat", "demo-site"])
def test_copy_csv_is_byte_identical_to_formatting_each_value_in_python(demo_trial, username):
    """The SQL formatting of the streamed CSV is csv_value's, cell for cell: same bytes as the Python writer."""
    event = AdverseEvent.objects.filter(participant__trial=demo_trial).order_by("pk").first()
    with audit_context(reason="test"):
        # quotes, a line break inside a field, a formula and non-ASCII text
        AdverseEvent.objects.filter(pk=event.pk).update(term='=1+1 "knee"\nswelling, Ödem')
    member = user(username)
    export = exports.TrialExport(trial=demo_trial, user=member)
    for name, table in export.tables().items():
        assert "".join(stream_csv(trial=demo_trial, user=member, table=name)) == "".join(exports._csv_chunks(table)), (
            name
        )


def test_blinded_csv_query_does_not_select_the_arm(demo_trial, blinded, unblinded):
    select, params = exports.TrialExport(trial=demo_trial, user=blinded).csv_select("randomizations")
    assert '"trials_arm"' not in select
    assert MASKED in params
    unblinded_select, _ = exports.TrialExport(trial=demo_trial, user=unblinded).csv_select("randomizations")
    assert '"trials_arm"' in unblinded_select


def test_streaming_response_and_unknown_table(demo_trial, blinded):
    response = csv_streaming_response(trial=demo_trial, user=blinded, table="randomizations")
    assert response.streaming
    assert response["Content-Disposition"] == 'attachment; filename="EXO-OA-201-randomizations.csv"'
    content = b"".join(response.streaming_content)
    lines = content.decode("utf-8").splitlines()
    assert lines[0] == "subject_id,randomization_number,stratum,randomized_at,randomized_by,arm_code,arm_name"
    assert len(lines) == Randomization.objects.filter(trial=demo_trial).count() + 1
    assert revealing_words_in(content) == []
    with pytest.raises(KeyError):
        stream_csv(trial=demo_trial, user=blinded, table="allocation_slots")


def test_the_streamed_export_works_with_the_debug_cursor(demo_trial, unblinded, settings):
    """``make run`` serves with DEBUG=True, where Django wraps cursors in its query-logging debug wrapper."""
    plain = "".join(stream_csv(trial=demo_trial, user=unblinded, table="outcome_measurements"))
    settings.DEBUG = True
    assert "".join(stream_csv(trial=demo_trial, user=unblinded, table="outcome_measurements")) == plain
