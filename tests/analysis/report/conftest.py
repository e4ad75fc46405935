"""A sample ReportDocument exercising every renderer feature (no database, no Django)."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from analysis.report import figures
from analysis.report.document import Figure, ReportDocument, Section, Table

SCRIPT_TERM = "<script>alert('x')</script>"
FORMULA = "=cmd|'/C calc'!A0"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
GROUPS = ("Exosome 10⁹ particles", "Placebo")


def enrolment_frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    dates = pd.date_range("2024-01-08", periods=150, freq="D")
    rows = []
    for site in ("Berlin", "Lyon", "Madrid"):
        days = np.sort(rng.choice(dates, 40, replace=False))
        rows += [{"date": day, "site": site, "randomized": count} for count, day in enumerate(days, start=1)]
    return pd.DataFrame(rows)


def km_curves() -> dict[str, pd.DataFrame]:
    curves = {}
    for group, scale, at_risk in ((GROUPS[0], 0.012, 120), (GROUPS[1], 0.02, 120)):
        times = np.arange(2.0, 50.0, 4.0)
        survival = np.exp(-scale * times)
        curves[group] = pd.DataFrame(
            {
                "time": times,
                "survival": survival,
                "ci_lower": survival - 0.07,
                "ci_upper": np.minimum(survival + 0.07, 1.0),
                "at_risk": np.linspace(at_risk, 30, times.size).astype(int),
            }
        )
    return curves


CONSORT_COUNTS = {
    "assessed": 312,
    "excluded": {"Did not meet inclusion criteria": 40, "Declined to participate": 12},
    "randomized": 260,
    "allocated": {GROUPS[0]: 130, GROUPS[1]: 130},
    "received": {GROUPS[0]: 129, GROUPS[1]: 130},
    "lost_to_follow_up": {GROUPS[0]: 3, GROUPS[1]: 2},
    "discontinued": {GROUPS[0]: {"Adverse event": 2, "Withdrew consent": 1}, GROUPS[1]: {"Lack of efficacy": 4}},
    "analysed": {GROUPS[0]: 126, GROUPS[1]: 128},
}


def _efficacy_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "endpoint": ["WOMAC pain Δ week 12", "WOMAC function Δ week 12", SCRIPT_TERM, FORMULA],
            "n": [254, 254, 250, 249],
            "estimate": [-1.23456789, -0.5, 0.000012345, 2.0],
            "ci_lower": [-2.0, -1.25, -0.1, 1.1],
            "ci_upper": [-0.4, 0.25, 0.1, 2.9],
            "p_value": [0.0000004, 0.031274, 0.9, 0.0001],
        }
    )


def _ae_listing() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    terms = ["Arthralgia", "Injection-site pain ≤ 24 h", "Headache", "Joint effusion", "Nasopharyngitis"]
    return pd.DataFrame(
        {
            "participant": [f"EXO-{index:04d}" for index in range(90)],
            "term": rng.choice(terms, 90),
            "grade": rng.integers(1, 4, 90),
            "day": rng.integers(1, 200, 90),
            "related": rng.choice([True, False], 90),
        }
    )


def _wide_table() -> pd.DataFrame:
    columns = {"lot": ["LOT-2024-001", "LOT-2024-002", "LOT-2024-003"]}
    for index in range(1, 17):
        columns[f"particle_concentration_visit_{index:02d}"] = [1.234e9 * index, 2.5e9, 3.75e9]
    return pd.DataFrame(columns)


@pytest.fixture(scope="session")
def report_document() -> ReportDocument:
    enrolment = enrolment_frame()
    boundaries = pd.DataFrame(
        {"fraction": [0.33, 0.67, 1.0], "efficacy_bound": [3.71, 2.51, 1.99], "futility_bound": [-np.inf, 0.2, 1.99]}
    )
    looks = pd.DataFrame({"fraction": [0.33, 0.67], "z_statistic": [0.8, 1.9]})
    soc = pd.DataFrame(
        {
            "soc": ["Musculoskeletal and connective tissue disorders"] * 2 + ["Infections and infestations"] * 2,
            "group": [*GROUPS, *GROUPS],
            "participants": [12, 9, 5, 6],
        }
    )
    return ReportDocument(
        title="EXO-OA-201 interim analysis 1 — DSMB closed report",
        trial_code="EXO-OA-201",
        cutoff=dt.date(2025, 3, 1),
        marking="CLOSED",
        generated_at=dt.datetime(2025, 3, 4, 9, 30, tzinfo=dt.UTC),
        provenance={"code_version": "1.4.0+g1a2b3c4", "dataset_sha256": SHA, "plan": "SAP v2.0 (2024-11-02)"},
        sections=(
            Section(
                title="Trial status",
                paragraphs=(
                    "Enrolment is on track; doses were 10⁹ × 2 particles (≤ 5 µg protein), Δ −0.5 versus plan.",
                    f"A stored term such as {SCRIPT_TERM} must show literally & never become markup.",
                ),
                tables=(
                    Table(
                        key="enrolment_by_site",
                        title="Randomised participants by site",
                        frame=enrolment.groupby("site", as_index=False)["randomized"].max(),
                        note="Counts are cumulative at the data cut-off.",
                    ),
                ),
                figures=(
                    Figure(
                        key="enrolment",
                        title="Cumulative enrolment",
                        draw=lambda: figures.enrolment_plot(enrolment, target=240, title="Cumulative enrolment"),
                    ),
                    Figure(
                        key="consort",
                        title="CONSORT flow diagram",
                        draw=lambda: figures.consort_diagram(CONSORT_COUNTS, title="Participant flow"),
                        note="Per-arm counts: closed report only.",
                    ),
                ),
            ),
            Section(
                title="Primary efficacy",
                paragraphs=("Mixed model for repeated measures, estimand per SAP section 9.",),
                tables=(
                    Table(key="primary_efficacy", title="Primary and key secondary endpoints", frame=_efficacy_table()),
                ),
                figures=(
                    Figure(
                        key="km",
                        title="Time to rescue medication",
                        draw=lambda: figures.kaplan_meier_plot(
                            km_curves(),
                            title="Time to rescue medication",
                            time_label="Weeks",
                            at_risk_times=[0, 24, 48],
                        ),
                    ),
                ),
            ),
            Section(
                title="Safety",
                tables=(
                    Table(key="ae_listing", title="Adverse event listing", frame=_ae_listing()),
                    Table(key="lot_particles", title="Particle concentration by lot and visit", frame=_wide_table()),
                ),
                figures=(
                    Figure(
                        key="ae_soc",
                        title="Adverse events by system organ class",
                        draw=lambda: figures.bar_plot(
                            soc, x="soc", y="participants", hue="group", title="AEs by SOC", ylabel="Participants"
                        ),
                    ),
                ),
            ),
            Section(
                title="Sequential monitoring",
                paragraphs=("O'Brien-Fleming-type Lan-DeMets spending; one-sided α = 0.025.",),
                tables=(Table(key="boundaries", title="Stopping boundaries", frame=boundaries),),
                figures=(
                    Figure(
                        key="boundaries_plot",
                        title="Boundaries and observed z",
                        draw=lambda: figures.boundary_plot(looks, boundaries, title="Boundaries and observed z"),
                    ),
                ),
            ),
        ),
    )
