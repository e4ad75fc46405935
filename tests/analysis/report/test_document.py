"""ReportDocument: each figure is drawn once, however many renderers embed it."""

import base64
import datetime as dt

import pandas as pd

from analysis.report import figures
from analysis.report.document import Figure, ReportDocument, Section, Table
from analysis.report.render_html import render_html
from analysis.report.render_pdf import render_pdf


def test_pdf_and_html_embed_one_drawing_of_each_figure(tmp_path):
    calls = []

    def draw():
        calls.append(1)
        looks = pd.DataFrame({"fraction": [0.5], "z_statistic": [2.1]})
        bounds = pd.DataFrame({"fraction": [0.5, 1.0], "efficacy_bound": [2.96, 1.97]})
        return figures.boundary_plot(looks, bounds, title="Boundary")

    figure = Figure("boundary", "Observed z against the boundary", draw)
    document = ReportDocument(
        title="T interim analysis 1 — DSMB closed report",
        trial_code="T",
        cutoff=dt.date(2026, 1, 1),
        marking="CLOSED",
        generated_at=dt.datetime(2026, 1, 2, 8, 0, tzinfo=dt.UTC),
        sections=(Section("Monitoring", tables=(Table("t", "A table", pd.DataFrame({"a": [1]})),), figures=(figure,)),),
    )
    render_pdf(document, tmp_path / "report.pdf")
    html = render_html(document)
    assert len(calls) == 1
    assert figure.png.startswith(b"\x89PNG")
    assert base64.b64encode(figure.png).decode("ascii") in html
