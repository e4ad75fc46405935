"""A report as an HTML fragment for the web view, plus the number formatting the PDF shares.

The fragment is inserted into a Django template under a Content-Security-Policy that forbids inline
scripts and style attributes, so it carries structure and class names only; every text value is escaped
here because the template inserts the fragment as already-safe markup. Figures are inline PNG data URIs,
so the policy's ``img-src`` has to allow ``data:``.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
import numbers
import re

import numpy as np
import pandas as pd

from analysis.report.document import Figure, ReportDocument, Table
from analysis.report.render_csv import is_missing, table_frame, utc

MISSING = "—"
PVALUE_FLOOR = 1e-4
_WORD = re.compile(r"[A-Za-z]+")


def is_pvalue_column(name: object) -> bool:
    """``p``, ``p_value``, ``pvalue_interaction``, ``p-adj``, "P value" and the like hold p-values."""
    words = [word.lower() for word in _WORD.findall(str(name))]
    return bool(words) and (words[0] == "p" or "pvalue" in "".join(words))


def format_value(value: object, *, pvalue: bool = False) -> str:
    """Display text for a table cell: integers as integers, floats to at most 4 decimals.

    Values too small to show in 4 decimals keep 4 significant digits instead of rounding to 0, except
    p-values, which are reported as ``<0.0001`` below that floor and otherwise with 4 fixed decimals.
    """
    if is_missing(value):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "Yes" if value else "No"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return _format_float(float(value), pvalue=pvalue)
    if isinstance(value, pd.Timestamp | dt.datetime):
        stamp = pd.Timestamp(value)
        return stamp.date().isoformat() if stamp == stamp.normalize() else stamp.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _format_float(number: float, *, pvalue: bool) -> str:
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    if pvalue and 0 <= number < PVALUE_FLOOR:
        return f"<{PVALUE_FLOOR:.4f}"
    if pvalue:
        return f"{number:.4f}"
    if number != 0 and abs(number) < PVALUE_FLOOR:
        return f"{number:.4g}"
    text = f"{number:.4f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def formatted_rows(frame: pd.DataFrame) -> list[list[str]]:
    """Every cell of ``frame`` (already passed through ``table_frame``) as display text."""
    pvalues = [is_pvalue_column(column) for column in frame.columns]
    return [
        [format_value(value, pvalue=pvalue) for value, pvalue in zip(row, pvalues, strict=True)]
        for row in frame.itertuples(index=False, name=None)
    ]


def numeric_columns(frame: pd.DataFrame) -> list[bool]:
    return [
        pd.api.types.is_numeric_dtype(frame.iloc[:, index]) and not pd.api.types.is_bool_dtype(frame.iloc[:, index])
        for index in range(frame.shape[1])
    ]


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _paragraph(text: str) -> str:
    return "<p>" + "<br>".join(_text(line) for line in text.splitlines()) + "</p>"


def _anchor(kind: str, number: int) -> str:
    # Numbered rather than key-based anchors: unique by construction and free of characters to escape.
    return f"report-{kind}-{number}"


def _table_html(table: Table, number: int) -> str:
    frame = table_frame(table.frame)
    numeric = numeric_columns(frame)
    parts = [
        f'<div class="report-table-wrapper" id="{_anchor("table", number)}">',
        '<table class="report-table">',
        f"<caption>Table {number}. {_text(table.title)}</caption>",
        "<thead><tr>",
        *(
            (
                f'<th scope="col" class="num">{_text(column)}</th>'
                if is_number
                else f'<th scope="col">{_text(column)}</th>'
            )
            for column, is_number in zip(frame.columns, numeric, strict=True)
        ),
        "</tr></thead>",
        "<tbody>",
    ]
    for row in formatted_rows(frame):
        cells = (
            f'<td class="num">{_text(cell)}</td>' if is_number else f"<td>{_text(cell)}</td>"
            for cell, is_number in zip(row, numeric, strict=True)
        )
        parts.append("<tr>" + "".join(cells) + "</tr>")
    if frame.empty:
        parts.append(f'<tr><td class="report-empty" colspan="{max(frame.shape[1], 1)}">No rows.</td></tr>')
    parts += ["</tbody>", "</table>"]
    if table.note:
        parts.append(f'<p class="report-note">{_text(table.note)}</p>')
    parts.append("</div>")
    return "\n".join(parts)


def _figure_html(figure: Figure, number: int) -> str:
    encoded = base64.b64encode(figure.png).decode("ascii")
    alt = figure.title + (f". {figure.note}" if figure.note else "")
    caption = f"Figure {number}. {_text(figure.title)}"
    if figure.note:
        caption += f' <span class="report-note">{_text(figure.note)}</span>'
    return (
        f'<figure class="report-figure" id="{_anchor("figure", number)}">'
        f'<img src="data:image/png;base64,{encoded}" alt="{_text(alt)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _metadata(document: ReportDocument) -> str:
    items = [
        ("Trial", document.trial_code),
        ("Data cut-off", document.cutoff.isoformat()),
        ("Marking", document.marking),
        ("Generated", f"{utc(document.generated_at):%Y-%m-%d %H:%M:%S} UTC"),
        ("Confidentiality", document.confidentiality),
    ]
    rows = "".join(f"<dt>{_text(term)}</dt><dd>{_text(value)}</dd>" for term, value in items)
    parts = [f'<dl class="report-meta">{rows}</dl>']
    if document.provenance:
        provenance = "".join(
            f"<dt>{_text(key)}</dt><dd>{_text(value)}</dd>" for key, value in document.provenance.items()
        )
        parts.append(
            '<details class="report-provenance"><summary>Provenance</summary>'
            f'<dl class="report-meta">{provenance}</dl></details>'
        )
    return "\n".join(parts)


def render_html(document: ReportDocument) -> str:
    """The document as an HTML fragment: header, table of contents, then the sections in order."""
    toc: list[str] = []
    body: list[str] = []
    table_number = figure_number = 0
    for section_number, section in enumerate(document.sections, start=1):
        anchor = _anchor("section", section_number)
        entries: list[str] = []
        content = [f'<section class="report-section" id="{anchor}">', f"<h3>{_text(section.title)}</h3>"]
        content += [_paragraph(paragraph) for paragraph in section.paragraphs]
        for table in section.tables:
            table_number += 1
            content.append(_table_html(table, table_number))
            entries.append(
                f'<li><a href="#{_anchor("table", table_number)}">Table {table_number}. {_text(table.title)}</a></li>'
            )
        for figure in section.figures:
            figure_number += 1
            content.append(_figure_html(figure, figure_number))
            entries.append(
                f'<li><a href="#{_anchor("figure", figure_number)}">'
                f"Figure {figure_number}. {_text(figure.title)}</a></li>"
            )
        content.append("</section>")
        body.append("\n".join(content))
        nested = f"<ol>{''.join(entries)}</ol>" if entries else ""
        toc.append(f'<li><a href="#{anchor}">{_text(section.title)}</a>{nested}</li>')
    header = (
        f'<header class="report-header"><h2 class="report-title">{_text(document.title)}</h2>'
        f'<p class="report-marking">{_text(document.marking)} · {_text(document.confidentiality)}</p>'
        f"{_metadata(document)}</header>"
    )
    contents = f'<nav class="report-toc" aria-label="Contents"><h3>Contents</h3><ol>{"".join(toc)}</ol></nav>'
    return "\n".join(['<article class="report">', header, contents, *body, "</article>"]) + "\n"
