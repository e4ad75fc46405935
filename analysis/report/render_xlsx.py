"""A report as an Excel workbook: a Contents sheet, then one sheet per table with numbers kept numeric.

Every text cell that a spreadsheet would evaluate (``=``, ``+``, ``-``, ``@``, tab, CR) is prefixed with
``'`` so a stored value like ``=cmd|'/C calc'!A0`` is shown, never run; numbers, including negative ones,
are written as numbers and are never touched. The file is byte-identical for the same document: the
workbook's created/modified properties are ``generated_at`` and the zip entries carry fixed timestamps.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import numbers
import os
import zipfile

import numpy as np
import pandas as pd
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.hyperlink import Hyperlink
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter

from analysis.report.document import ReportDocument, Table
from analysis.report.render_csv import is_missing, neutralise_formula, safe_names, table_frame, utc, write_zip

CONTENTS = "Contents"
HEADER_ROW = 4  # title in row 1, note in row 2, a blank row 3, then the column headings
MAX_CELL_TEXT = 32_767  # Excel's limit; longer text makes the file unreadable
MIN_WIDTH, MAX_WIDTH = 8, 60
BOLD = Font(bold=True)


def _text(value: object) -> str:
    text = ILLEGAL_CHARACTERS_RE.sub("", str(value))[:MAX_CELL_TEXT]
    return neutralise_formula(text)


def cell_value(value: object) -> object:
    """The value as openpyxl should store it: numbers, booleans and dates typed, text formula-safe."""
    if is_missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isinf(number):
            # Excel has no infinity; U+2212 keeps the negative one from reading as a formula.
            return "∞" if number > 0 else "−∞"
        return number
    if isinstance(value, pd.Timestamp | dt.datetime):
        stamp = pd.Timestamp(value)
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)  # Excel cannot store a time zone
        return stamp.to_pydatetime()
    if isinstance(value, dt.date):
        return value
    return _text(value)


def _header_footer_text(text: str) -> str:
    # "&" starts a formatting code in Excel headers and footers; "&&" is a literal ampersand.
    return ILLEGAL_CHARACTERS_RE.sub("", text).replace("&", "&&")


def _set_page_furniture(sheet: Worksheet, document: ReportDocument) -> None:
    sheet.oddHeader.left.text = _header_footer_text(
        f"{document.trial_code} · data cut-off {document.cutoff.isoformat()}"
    )
    sheet.oddHeader.center.text = "&B" + _header_footer_text(document.marking)
    sheet.oddHeader.right.text = _header_footer_text(document.confidentiality)
    sheet.oddFooter.left.text = _header_footer_text(document.title)
    sheet.oddFooter.right.text = "Page &P of &N"
    sheet.page_setup.orientation = "landscape"
    sheet.sheet_properties.pageSetUpPr.fitToPage = True
    sheet.page_setup.fitToWidth = 1
    sheet.page_setup.fitToHeight = 0


def _display_length(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, float):
        return len(f"{value:.6g}")
    if isinstance(value, dt.datetime | dt.date):
        return 19 if isinstance(value, dt.datetime) else 10
    return max((len(line) for line in str(value).splitlines()), default=0)


def _fit_columns(sheet: Worksheet, first_row: int) -> None:
    widths: dict[int, int] = {}
    for row in sheet.iter_rows(min_row=first_row):
        for cell in row:
            widths[cell.column] = max(widths.get(cell.column, 0), _display_length(cell.value))
    for column, width in widths.items():
        sheet.column_dimensions[get_column_letter(column)].width = min(max(width + 2, MIN_WIDTH), MAX_WIDTH)


def _write_table(sheet: Worksheet, table: Table, document: ReportDocument) -> None:
    frame = table_frame(table.frame)
    sheet["A1"] = _text(table.title)
    sheet["A1"].font = Font(bold=True, size=12)
    if table.note:
        sheet["A2"] = _text(table.note)
        sheet["A2"].font = Font(italic=True)
    for column, label in enumerate(frame.columns, start=1):
        cell = sheet.cell(row=HEADER_ROW, column=column, value=_text(label))
        cell.font = BOLD
    for row_number, row in enumerate(frame.itertuples(index=False, name=None), start=HEADER_ROW + 1):
        for column, value in enumerate(row, start=1):
            sheet.cell(row=row_number, column=column, value=cell_value(value))
    sheet.freeze_panes = sheet.cell(row=HEADER_ROW + 1, column=1)
    sheet.print_title_rows = f"{HEADER_ROW}:{HEADER_ROW}"
    # The title and note spill across empty neighbours, so only the table itself sets the widths.
    _fit_columns(sheet, HEADER_ROW)
    _set_page_furniture(sheet, document)


def _write_contents(sheet: Worksheet, document: ReportDocument, names: list[str]) -> None:
    sheet["A1"] = _text(document.title)
    sheet["A1"].font = Font(bold=True, size=14)
    details = [
        ("Trial", _text(document.trial_code)),
        ("Marking", _text(document.marking)),
        ("Data cut-off", document.cutoff),
        ("Generated (UTC)", utc(document.generated_at).replace(tzinfo=None)),
        ("Confidentiality", _text(document.confidentiality)),
    ]
    row = 3
    for label, value in details:
        sheet.cell(row=row, column=1, value=label).font = BOLD
        cell = sheet.cell(row=row, column=2, value=value)
        if isinstance(value, dt.datetime):
            cell.number_format = "yyyy-mm-dd hh:mm:ss"
        elif isinstance(value, dt.date):
            cell.number_format = "yyyy-mm-dd"
        row += 1
    if document.provenance:
        row += 1
        sheet.cell(row=row, column=1, value="Provenance").font = Font(bold=True, size=12)
        for key, value in document.provenance.items():
            row += 1
            sheet.cell(row=row, column=1, value=_text(key)).font = BOLD
            sheet.cell(row=row, column=2, value=_text(value))
    row += 2
    sheet.cell(row=row, column=1, value="Tables").font = Font(bold=True, size=12)
    row += 1
    for column, label in enumerate(("Sheet", "Title", "Note"), start=1):
        sheet.cell(row=row, column=column, value=label).font = BOLD
    for name, table in zip(names, document.tables(), strict=True):
        row += 1
        link = sheet.cell(row=row, column=1, value=name)
        link.hyperlink = Hyperlink(ref=link.coordinate, location=f"'{name}'!A1", display=name)
        link.style = "Hyperlink"
        sheet.cell(row=row, column=2, value=_text(table.title))
        sheet.cell(row=row, column=3, value=_text(table.note) if table.note else None)
    _fit_columns(sheet, 3)
    _set_page_furniture(sheet, document)


def render_xlsx(document: ReportDocument, path: str | os.PathLike[str]) -> None:
    """Write ``document`` as an XLSX workbook to ``path``."""
    workbook = Workbook()
    contents = workbook.active
    contents.title = CONTENTS
    tables = document.tables()
    names = safe_names((table.key for table in tables), reserved=[CONTENTS])
    _write_contents(contents, document, names)
    for name, table in zip(names, tables, strict=True):
        _write_table(workbook.create_sheet(name), table, document)

    stamp = utc(document.generated_at).replace(tzinfo=None)
    properties = workbook.properties
    properties.title = document.title
    properties.subject = f"{document.trial_code} · {document.marking}"
    properties.creator = properties.lastModifiedBy = "ExoTrial"
    properties.keywords = document.marking
    properties.description = document.confidentiality
    properties.created = properties.modified = stamp

    # ExcelWriter rather than Workbook.save: save() stamps "modified" with the current time.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(workbook, archive).write_data()
    with zipfile.ZipFile(buffer) as written:
        entries = [(info.filename, written.read(info)) for info in written.infolist()]
    write_zip(path, entries, document.generated_at)
