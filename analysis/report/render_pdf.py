"""A report as an A4 PDF: title page, table of contents, then the sections with their tables and figures.

The PDF is byte-identical for the same document (reportlab's invariant mode, the creation date taken from
``generated_at``, the document ID derived from the content), so an archived report can be verified by
hash. Text is set in DejaVu Sans, embedded from matplotlib's package data because it is always installed
with matplotlib and, unlike the standard PDF fonts, has ×, −, ≤, µ, Δ and the superscript digits.
"""

from __future__ import annotations

import functools
import io
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import matplotlib as mpl
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_LEFT, TA_RIGHT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    CondPageBreak,
    Flowable,
    Frame,
    Image,
    KeepTogether,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
)
from reportlab.platypus import Table as PdfTable
from reportlab.platypus import TableStyle as PdfTableStyle
from reportlab.platypus.tableofcontents import TableOfContents

from analysis.report.document import Figure, ReportDocument, Section, Table
from analysis.report.render_csv import table_frame, utc
from analysis.report.render_html import formatted_rows, numeric_columns

FONT = "ExoDejaVuSans"
BOLD = "ExoDejaVuSans-Bold"
ITALIC = "ExoDejaVuSans-Oblique"
BOLD_ITALIC = "ExoDejaVuSans-BoldOblique"

PORTRAIT = A4
LANDSCAPE = landscape(A4)
MARGIN_X = 18 * mm
MARGIN_TOP = 20 * mm
MARGIN_BOTTOM = 18 * mm
CELL_PAD_X = 3.0
CELL_PAD_Y = 2.0
MAX_NATURAL_COLUMN = 200.0  # wider text wraps instead of pushing the table into landscape
MAX_WORD_FLOOR = 90.0  # a longer single word in a text cell may be split when space is short
MAX_NATURAL_HEADER = 90.0  # long column headings wrap onto two lines rather than widen the column
# A section heading or a table caption starts a new page when less than this is left, instead of being
# stranded at the foot of one (keepWithNext would push a multi-page table wholly to the next page instead).
MIN_SECTION_START = 45 * mm
MIN_TABLE_START = 30 * mm
# Table layouts from most to least preferred (see _choose_layout).
TABLE_LAYOUTS = (("portrait", 8.0), ("portrait", 7.0), ("landscape", 8.0), ("landscape", 7.0), ("landscape", 6.0))

INK = colors.HexColor("#1a1a1a")
MUTED = colors.HexColor("#595959")
HEADER_FILL = colors.HexColor("#1f4e79")
ZEBRA = colors.HexColor("#eef3f8")
RULE = colors.HexColor("#8c8c8c")
MARKING_COLOURS = {"OPEN": "#1b7837", "CLOSED": "#b2182b", "FINAL": "#1f4e79"}

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_IDENTIFIER_BREAK = re.compile(r"(?<=_)(?=.)")


@functools.cache
def _register_fonts() -> None:
    fonts = Path(mpl.get_data_path()) / "fonts" / "ttf"
    for name, filename in (
        (FONT, "DejaVuSans.ttf"),
        (BOLD, "DejaVuSans-Bold.ttf"),
        (ITALIC, "DejaVuSans-Oblique.ttf"),
        (BOLD_ITALIC, "DejaVuSans-BoldOblique.ttf"),
    ):
        pdfmetrics.registerFont(TTFont(name, str(fonts / filename)))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=BOLD, italic=ITALIC, boldItalic=BOLD_ITALIC)


def markup(text: object) -> str:
    """Paragraph markup that shows ``text`` literally: XML specials escaped, line breaks kept."""
    cleaned = _CONTROL.sub("", str(text))
    return "<br/>".join(escape(line) for line in cleaned.splitlines()) if cleaned else ""


@dataclass(frozen=True)
class _Styles:
    title: ParagraphStyle
    heading: ParagraphStyle
    subheading: ParagraphStyle
    body: ParagraphStyle
    caption: ParagraphStyle
    note: ParagraphStyle
    meta_key: ParagraphStyle
    meta_value: ParagraphStyle
    marking: ParagraphStyle
    toc: tuple[ParagraphStyle, ParagraphStyle]

    @classmethod
    def build(cls) -> _Styles:
        body = ParagraphStyle("Body", fontName=FONT, fontSize=9.5, leading=13, textColor=INK, spaceAfter=6)
        return cls(
            title=ParagraphStyle("Title", parent=body, fontName=BOLD, fontSize=20, leading=25, spaceAfter=10),
            heading=ParagraphStyle(
                "Heading", parent=body, fontName=BOLD, fontSize=14, leading=18, spaceBefore=10, keepWithNext=1
            ),
            subheading=ParagraphStyle("Subheading", parent=body, fontName=BOLD, fontSize=11, leading=14, spaceBefore=8),
            body=body,
            caption=ParagraphStyle(
                "Caption",
                parent=body,
                fontName=BOLD,
                fontSize=9,
                leading=12,
                spaceBefore=6,
                spaceAfter=4,
            ),
            note=ParagraphStyle("Note", parent=body, fontName=ITALIC, fontSize=7.5, leading=10, textColor=MUTED),
            meta_key=ParagraphStyle("MetaKey", parent=body, fontName=BOLD, fontSize=8.5, leading=11, spaceAfter=0),
            meta_value=ParagraphStyle("MetaValue", parent=body, fontSize=8.5, leading=11, spaceAfter=0),
            marking=ParagraphStyle(
                "Marking", parent=body, fontName=BOLD, fontSize=16, leading=20, alignment=TA_CENTER, spaceAfter=0
            ),
            toc=(
                ParagraphStyle("TOC0", parent=body, fontName=BOLD, fontSize=10, leading=14, leftIndent=0, spaceAfter=2),
                ParagraphStyle("TOC1", parent=body, fontSize=8.5, leading=11, leftIndent=14, spaceAfter=1),
            ),
        )


class _Entry(Paragraph):
    """A paragraph that is also a table-of-contents entry and a PDF outline bookmark."""

    def __init__(self, text: str, style: ParagraphStyle, *, level: int, key: str) -> None:
        super().__init__(markup(text), style)
        self.toc_level = level
        self.toc_key = key
        self.toc_plain = _CONTROL.sub("", text)


def _numbered_canvas(document: ReportDocument) -> Callable[..., Canvas]:
    """A canvas class that adds "Page x of y" once the page count is known and pins the creation date."""
    stamp = utc(document.generated_at)
    pdf_date = f"D:{stamp:%Y%m%d%H%M%S}+00'00'"
    footer_left = document.title

    class NumberedCanvas(Canvas):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.setDateFormatter(lambda *_: pdf_date)
            self._page_states: list[dict[str, object]] = []

        def showPage(self) -> None:  # noqa: N802 - reportlab's API name
            # Defer the real page end until save(), when the total page count is known.
            self._page_states.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._page_states)
            for state in self._page_states:
                self.__dict__.update(state)
                self._draw_footer(total)
                super().showPage()
            super().save()

        def _draw_footer(self, total: int) -> None:
            width = self._pagesize[0]
            self.saveState()
            self.setFont(FONT, 7.5)
            self.setFillColor(MUTED)
            label = f"Page {self._pageNumber} of {total}"
            self.drawRightString(width - MARGIN_X, MARGIN_BOTTOM / 2, label)
            room = width - 2 * MARGIN_X - pdfmetrics.stringWidth(label, FONT, 7.5) - 12
            self.drawString(MARGIN_X, MARGIN_BOTTOM / 2, _fit(footer_left, room, 7.5))
            self.restoreState()

    return NumberedCanvas


def _fit(text: str, width: float, size: float) -> str:
    if pdfmetrics.stringWidth(text, FONT, size) <= width:
        return text
    while text and pdfmetrics.stringWidth(text + "…", FONT, size) > width:
        text = text[:-1]
    return text + "…"


class _ReportTemplate(BaseDocTemplate):
    def __init__(self, filename: str, document: ReportDocument) -> None:
        super().__init__(
            filename,
            pagesize=PORTRAIT,
            leftMargin=MARGIN_X,
            rightMargin=MARGIN_X,
            topMargin=MARGIN_TOP,
            bottomMargin=MARGIN_BOTTOM,
            title=document.title,
            author="ExoTrial",
            subject=f"{document.trial_code} · data cut-off {document.cutoff.isoformat()} · {document.marking}",
            creator="ExoTrial",
            invariant=1,
            lang="en",
        )
        self.header_text = (
            f"{document.trial_code} · data cut-off {document.cutoff.isoformat()} · {document.marking} · CONFIDENTIAL"
        )
        self.addPageTemplates(
            [
                PageTemplate(id=name, frames=[_frame(size)], onPage=self._draw_header, pagesize=size)
                for name, size in (("portrait", PORTRAIT), ("landscape", LANDSCAPE))
            ]
        )

    def _draw_header(self, canvas: Canvas, _doc: BaseDocTemplate) -> None:
        width, height = canvas._pagesize
        size = 8.0
        while size > 5 and pdfmetrics.stringWidth(self.header_text, FONT, size) > width - 2 * MARGIN_X:
            size -= 0.5
        canvas.saveState()
        canvas.setFont(FONT, size)
        canvas.setFillColor(MUTED)
        canvas.drawCentredString(width / 2, height - MARGIN_TOP / 2, self.header_text)
        canvas.setStrokeColor(RULE)
        canvas.setLineWidth(0.4)
        canvas.line(MARGIN_X, height - MARGIN_TOP / 2 - 4, width - MARGIN_X, height - MARGIN_TOP / 2 - 4)
        canvas.restoreState()

    def afterFlowable(self, flowable: Flowable) -> None:  # noqa: N802 - reportlab's API name
        if isinstance(flowable, _Entry):
            self.canv.bookmarkPage(flowable.toc_key)
            self.canv.addOutlineEntry(flowable.toc_plain, flowable.toc_key, level=flowable.toc_level, closed=True)
            self.notify("TOCEntry", (flowable.toc_level, flowable.text, self.page, flowable.toc_key))


def _frame(pagesize: tuple[float, float]) -> Frame:
    width, height = pagesize
    # No frame padding: table widths are computed against exactly this width.
    return Frame(
        MARGIN_X,
        MARGIN_BOTTOM,
        width - 2 * MARGIN_X,
        height - MARGIN_TOP - MARGIN_BOTTOM,
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
    )


def _frame_width(orientation: str) -> float:
    return (LANDSCAPE if orientation == "landscape" else PORTRAIT)[0] - 2 * MARGIN_X


def _frame_height(orientation: str) -> float:
    return (LANDSCAPE if orientation == "landscape" else PORTRAIT)[1] - MARGIN_TOP - MARGIN_BOTTOM


@dataclass(frozen=True)
class _ColumnMetrics:
    """Widths at a 1-point font, so any font size is a multiplication away."""

    cells: float  # widest cell line
    cell_word: float  # widest single word in any cell: text columns can wrap down to it
    numeric: bool  # numbers must never wrap
    header: float  # whole heading on one line
    header_word: float  # widest piece of the heading, split at spaces and after underscores

    def natural(self, size: float) -> float:
        header = max(min(self.header * size, MAX_NATURAL_HEADER), self.header_word * size)
        return min(max(self.cells * size, header), MAX_NATURAL_COLUMN) + 2 * CELL_PAD_X

    def minimum(self, size: float) -> float:
        return max(self.floor(size) - 2 * CELL_PAD_X, self.header_word * size) + 2 * CELL_PAD_X

    def floor(self, size: float) -> float:
        """Narrowest width that keeps the data readable: numbers whole, words unsplit (up to a cap)."""
        data = self.cells * size if self.numeric else min(self.cell_word * size, MAX_WORD_FLOOR)
        return data + 2 * CELL_PAD_X


def _pieces(text: str) -> list[str]:
    return [piece for word in text.split() for piece in _IDENTIFIER_BREAK.split(word)] or [""]


def _metrics(header: Sequence[str], rows: list[list[str]], numeric: list[bool]) -> list[_ColumnMetrics]:
    metrics = []
    for index, column in enumerate(header):
        cells = [row[index] for row in rows]
        metrics.append(
            _ColumnMetrics(
                cells=max((_widest_line(cell, FONT) for cell in cells), default=0.0),
                cell_word=max((_width(word, FONT) for cell in cells for word in cell.split()), default=0.0),
                numeric=numeric[index],
                header=_widest_line(column, BOLD),
                header_word=max(_width(piece, BOLD) for piece in _pieces(column)),
            )
        )
    return metrics


def _width(text: str, font: str) -> float:
    return pdfmetrics.stringWidth(text, font, 1.0)


def _widest_line(text: str, font: str) -> float:
    return max((_width(line, font) for line in text.splitlines()), default=0.0)


def _water_fill(widths: list[float], total: float) -> list[float]:
    """Cap the widest columns at a common width so the columns sum to ``total``; narrow ones keep theirs."""
    remaining, capped = total, sorted(widths)
    for index, width in enumerate(capped):
        share = remaining / (len(capped) - index)
        if width > share:
            return [min(original, share) for original in widths]
        remaining -= width
    return widths


def _choose_layout(metrics: list[_ColumnMetrics]) -> tuple[str, float, list[float]]:
    """Orientation, font size and column widths for a table, never wider than the frame.

    Preference: every column at its natural width (portrait before landscape, larger type before
    smaller); else columns squeezed towards their minimum (text wraps between words, numbers never);
    else, at the smallest landscape layout, headings split inside words and, only if that is not enough,
    the widest data columns are capped too.
    """
    for orientation, size in TABLE_LAYOUTS:
        widths = [column.natural(size) for column in metrics]
        if sum(widths) <= _frame_width(orientation):
            return orientation, size, widths
    for orientation, size in TABLE_LAYOUTS:
        minimum = [column.minimum(size) for column in metrics]
        spare = _frame_width(orientation) - sum(minimum)
        if spare >= 0:
            wanted = [column.natural(size) - least for column, least in zip(metrics, minimum, strict=True)]
            scale = spare / sum(wanted) if sum(wanted) > 0 else 0.0
            return orientation, size, [least + want * scale for least, want in zip(minimum, wanted, strict=True)]
    # Headings give way first (they split inside words); the data only if even its floors do not fit.
    orientation, size = TABLE_LAYOUTS[-1]
    available = _frame_width(orientation)
    floors = [column.floor(size) for column in metrics]
    if sum(floors) >= available:
        return orientation, size, _water_fill(floors, available)
    extra = _water_fill(
        [column.minimum(size) - floor for column, floor in zip(metrics, floors, strict=True)], available - sum(floors)
    )
    return orientation, size, [floor + more for floor, more in zip(floors, extra, strict=True)]


def _header_markup(column: str, inner: float, size: float) -> str:
    """Heading markup; an identifier-like heading too wide for its column breaks after underscores."""
    if " " in column or _width(column, BOLD) * size <= inner:
        return markup(column)
    lines = [""]
    for piece in _IDENTIFIER_BREAK.split(column):
        if lines[-1] and _width(lines[-1] + piece, BOLD) * size > inner:
            lines.append(piece)
        else:
            lines[-1] += piece
    return "<br/>".join(markup(line) for line in lines)


def _cell_styles(size: float) -> tuple[ParagraphStyle, ParagraphStyle, ParagraphStyle, ParagraphStyle]:
    text = ParagraphStyle("Cell", fontName=FONT, fontSize=size, leading=size * 1.2, textColor=INK, splitLongWords=1)
    number = ParagraphStyle("CellNumber", parent=text, alignment=TA_RIGHT)
    header = ParagraphStyle("CellHeader", parent=text, fontName=BOLD, textColor=colors.white, alignment=TA_LEFT)
    header_number = ParagraphStyle("CellHeaderNumber", parent=header, alignment=TA_RIGHT)
    return text, number, header, header_number


def _column_chunks(metrics: list[_ColumnMetrics]) -> list[list[int]]:
    """Column groups that each fit a landscape page, every group led by the first (identifying) column.

    A table fits whole unless even its narrowest readable layout is wider than the page; then its other
    columns are split into as few, evenly sized groups as fit, as listings do with a repeated key column.
    """
    orientation, size = TABLE_LAYOUTS[-1]
    available = _frame_width(orientation)
    floors = [column.floor(size) for column in metrics]
    if sum(floors) <= available or len(metrics) <= 2:
        return [list(range(len(metrics)))]
    rest = list(range(1, len(metrics)))
    for count in range(2, len(rest) + 1):
        groups = [rest[len(rest) * index // count : len(rest) * (index + 1) // count] for index in range(count)]
        if all(floors[0] + sum(floors[column] for column in group) <= available for group in groups):
            return [[0, *group] for group in groups]
    return [[0, column] for column in rest]


def _pdf_table(
    header: list[str], rows: list[list[str]], numeric: list[bool], metrics: list[_ColumnMetrics]
) -> tuple[str, PdfTable]:
    """A reportlab table for these columns and the orientation it was laid out for."""
    orientation, size, widths = _choose_layout(metrics)
    text, number_style, header_style, header_number = _cell_styles(size)

    def cell(value: str, column: int) -> str | Paragraph:
        # Plain strings are drawn as-is (no markup parsing, much faster); only text that must wrap
        # becomes an escaped Paragraph.
        inner = widths[column] - 2 * CELL_PAD_X
        if "\n" not in value and pdfmetrics.stringWidth(value, FONT, size) <= inner:
            return _CONTROL.sub("", value)
        return Paragraph(markup(value), number_style if numeric[column] else text)

    data: list[list[str | Paragraph]] = [
        [
            Paragraph(
                _header_markup(column, widths[index] - 2 * CELL_PAD_X, size),
                header_number if numeric[index] else header_style,
            )
            for index, column in enumerate(header)
        ]
    ]
    data += [[cell(value, index) for index, value in enumerate(row)] for row in rows]
    if not rows:
        data.append(["No rows."] + [""] * (len(header) - 1))
    style = [
        ("FONT", (0, 1), (-1, -1), FONT, size, size * 1.2),
        ("TEXTCOLOR", (0, 1), (-1, -1), INK),
        ("BACKGROUND", (0, 0), (-1, 0), HEADER_FILL),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, ZEBRA]),
        ("LINEBELOW", (0, -1), (-1, -1), 0.6, RULE),
        ("VALIGN", (0, 0), (-1, 0), "BOTTOM"),
        ("VALIGN", (0, 1), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), CELL_PAD_X),
        ("RIGHTPADDING", (0, 0), (-1, -1), CELL_PAD_X),
        ("TOPPADDING", (0, 0), (-1, -1), CELL_PAD_Y),
        ("BOTTOMPADDING", (0, 0), (-1, -1), CELL_PAD_Y),
    ]
    style += [("ALIGN", (index, 1), (index, -1), "RIGHT") for index, is_number in enumerate(numeric) if is_number]
    pdf_table = PdfTable(data, colWidths=widths, repeatRows=1, hAlign="LEFT", splitInRow=1)
    pdf_table.setStyle(PdfTableStyle(style))
    return orientation, pdf_table


def _table_flowables(table: Table, number: int, styles: _Styles) -> tuple[str, list[Flowable]]:
    """The caption, table (in column groups if it is very wide) and note, and the orientation they need."""
    frame = table_frame(table.frame)
    caption = _Entry(f"Table {number}. {table.title}", styles.caption, level=1, key=f"table-{number}")
    note = [Paragraph(markup(table.note), styles.note)] if table.note else []
    if frame.shape[1] == 0:
        return "portrait", [caption, Paragraph("No data.", styles.body), *note]
    header = list(frame.columns)
    rows = formatted_rows(frame)
    numeric = numeric_columns(frame)
    metrics = _metrics(header, rows, numeric)
    chunks = _column_chunks(metrics)
    flowables: list[Flowable] = [CondPageBreak(MIN_TABLE_START), caption]
    orientations = set()
    for index, columns in enumerate(chunks):
        if index:
            continued = f"Table {number} (continued): columns {columns[1] + 1}–{columns[-1] + 1} of {len(header)}"
            flowables += [CondPageBreak(MIN_TABLE_START), Paragraph(markup(continued), styles.caption)]
        orientation, pdf_table = _pdf_table(
            [header[column] for column in columns],
            [[row[column] for column in columns] for row in rows],
            [numeric[column] for column in columns],
            [metrics[column] for column in columns],
        )
        orientations.add(orientation)
        flowables += [pdf_table, Spacer(1, 6)]
    # A page holds one orientation: if any group needs landscape, all of them go there.
    orientation = "landscape" if "landscape" in orientations else "portrait"
    return orientation, [*flowables[:-1], Spacer(1, 3), *note, Spacer(1, 6)]


def _figure_flowables(figure: Figure, number: int, styles: _Styles) -> list[Flowable]:
    png = figure.png
    pixels_wide, pixels_high = ImageReader(io.BytesIO(png)).getSize()
    width = _frame_width("portrait")
    height = width * pixels_high / pixels_wide
    # Leave room for the caption and note on the same page as the image.
    limit = _frame_height("portrait") - 70
    if height > limit:
        width, height = width * limit / height, limit
    image = Image(io.BytesIO(png), width=width, height=height)
    caption = _Entry(f"Figure {number}. {figure.title}", styles.caption, level=1, key=f"figure-{number}")
    note = [Paragraph(markup(figure.note), styles.note)] if figure.note else []
    return [KeepTogether([caption, image, *note]), Spacer(1, 8)]


def _meta_table(rows: list[tuple[str, str]], styles: _Styles, key_width: float) -> PdfTable:
    data = [
        [Paragraph(markup(key), styles.meta_key), Paragraph(markup(value), styles.meta_value)] for key, value in rows
    ]
    width = _frame_width("portrait")
    table = PdfTable(data, colWidths=[key_width, width - key_width], hAlign="LEFT")
    table.setStyle(
        PdfTableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("ROWBACKGROUNDS", (0, 0), (-1, -1), [colors.white, ZEBRA]),
                ("LINEABOVE", (0, 0), (-1, 0), 0.6, RULE),
                ("LINEBELOW", (0, -1), (-1, -1), 0.6, RULE),
                ("TOPPADDING", (0, 0), (-1, -1), 3),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    return table


def _title_page(document: ReportDocument, styles: _Styles) -> list[Flowable]:
    colour = MARKING_COLOURS.get(document.marking.upper(), "#1a1a1a")
    marking = PdfTable(
        [[Paragraph(f'<font color="{colour}">{markup(document.marking)}</font>', styles.marking)]],
        colWidths=[60 * mm],
        hAlign="LEFT",
    )
    marking.setStyle(PdfTableStyle([("BOX", (0, 0), (-1, -1), 1.5, colors.HexColor(colour))]))
    details = [
        ("Trial", document.trial_code),
        ("Data cut-off", document.cutoff.isoformat()),
        ("Marking", document.marking),
        ("Generated", f"{utc(document.generated_at):%Y-%m-%d %H:%M:%S} UTC"),
        ("Confidentiality", document.confidentiality),
    ]
    story: list[Flowable] = [
        Spacer(1, 30 * mm),
        Paragraph(markup(document.title), styles.title),
        Spacer(1, 6 * mm),
        marking,
        Spacer(1, 4 * mm),
        Paragraph(markup(document.confidentiality), styles.body),
        Spacer(1, 8 * mm),
        _meta_table(details, styles, 40 * mm),
    ]
    if document.provenance:
        story += [
            Spacer(1, 8 * mm),
            Paragraph("Provenance", styles.subheading),
            _meta_table([(str(key), str(value)) for key, value in document.provenance.items()], styles, 50 * mm),
        ]
    return story


def _contents_page(styles: _Styles) -> list[Flowable]:
    toc = TableOfContents(levelStyles=list(styles.toc), dotsMinLevel=0)
    return [PageBreak(), Paragraph("Contents", styles.heading), Spacer(1, 4), toc, PageBreak()]


class _Story:
    """Collects flowables, switching page orientation only when the next item needs the other one."""

    def __init__(self, flowables: list[Flowable]) -> None:
        self.flowables = flowables
        self.orientation = "portrait"

    def add(self, flowables: list[Flowable], orientation: str = "portrait") -> None:
        if not flowables:
            return
        if orientation != self.orientation:
            self.flowables += [NextPageTemplate(orientation), PageBreak()]
            self.orientation = orientation
        self.flowables += flowables


def _add_section(story: _Story, section: Section, number: int, counters: dict[str, int], styles: _Styles) -> None:
    story.add(
        [CondPageBreak(MIN_SECTION_START), _Entry(section.title, styles.heading, level=0, key=f"section-{number}")]
    )
    story.add([Paragraph(markup(paragraph), styles.body) for paragraph in section.paragraphs])
    for table in section.tables:
        counters["table"] += 1
        orientation, flowables = _table_flowables(table, counters["table"], styles)
        story.add(flowables, orientation)
    for figure in section.figures:
        counters["figure"] += 1
        story.add(_figure_flowables(figure, counters["figure"], styles))


def render_pdf(document: ReportDocument, path: str | os.PathLike[str]) -> None:
    """Write ``document`` as a PDF to ``path``."""
    _register_fonts()
    styles = _Styles.build()
    story = _Story([*_title_page(document, styles), *_contents_page(styles)])
    counters = {"table": 0, "figure": 0}
    for number, section in enumerate(document.sections, start=1):
        _add_section(story, section, number, counters, styles)
    template = _ReportTemplate(os.fspath(path), document)
    template.multiBuild(story.flowables, canvasmaker=_numbered_canvas(document))
