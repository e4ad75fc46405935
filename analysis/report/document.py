"""A report as data: sections of text, tables and figures, independent of the output format.

The analysis pipeline assembles a ``ReportDocument`` from the statistics results; the renderers in this
package turn the same document into PDF, XLSX, a CSV zip and HTML, so every format carries the same
numbers. Nothing here touches the database.

Size rule: a document's tables are summaries whose length is set by the design (arms, sites, visits,
subgroups, MedDRA terms), never by the number of participants, and its figures draw aggregates or step
arrays. Participant-level listings belong in the frozen datasets (CSV, downloaded beside the report): a
DSMB PDF with a 100 000-row listing is unreadable, and rendering would grow with the trial.
``tests/analysis/test_compute_scaling.py`` checks the rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd
from matplotlib.figure import Figure as MplFigure

from analysis.report.figures import render_png


@dataclass(frozen=True)
class Table:
    key: str  # sheet / CSV name: letters, digits and underscores, at most 31 characters (Excel's limit)
    title: str
    frame: pd.DataFrame  # numbers stay numbers: renderers format them, XLSX keeps them numeric
    note: str = ""


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    draw: Callable[[], MplFigure]  # builds a new matplotlib Figure each call (renderers close it)
    note: str = ""

    @cached_property
    def png(self) -> bytes:
        """The figure as PNG, drawn once per document: the PDF and HTML renderers embed the same bytes."""
        return render_png(self.draw)


@dataclass(frozen=True)
class Section:
    title: str
    paragraphs: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    figures: tuple[Figure, ...] = ()


@dataclass(frozen=True)
class ReportDocument:
    title: str  # e.g. "EXO-OA-201 interim analysis 1 — DSMB closed report"
    trial_code: str
    cutoff: dt.date
    marking: str  # "OPEN", "CLOSED" or "FINAL"
    generated_at: dt.datetime  # the run's start time: fixed per run so re-rendering is byte-identical
    provenance: dict[str, str] = field(default_factory=dict)  # code version, dataset SHA-256s, packages, plan
    sections: tuple[Section, ...] = ()
    confidentiality: str = "CONFIDENTIAL"

    def tables(self) -> list[Table]:
        return [table for section in self.sections for table in section.tables]

    def figures(self) -> list[Figure]:
        return [figure for section in self.sections for figure in section.figures]
