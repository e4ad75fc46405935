"""Report figures: each builds a titled, labelled matplotlib Figure that renders to PNG."""

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis.report import figures

from .conftest import CONSORT_COUNTS, GROUPS, enrolment_frame, km_curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

BOUNDS = pd.DataFrame(
    {"fraction": [0.33, 0.67, 1.0], "efficacy_bound": [3.71, 2.51, 1.99], "futility_bound": [-np.inf, 0.2, 1.99]}
)
LOOKS = pd.DataFrame({"fraction": [0.33, 0.67], "z_statistic": [0.8, 1.9]})
FOREST = pd.DataFrame(
    {
        "label": ["All", "Age < 65", "Age ≥ 65"],
        "estimate": [2.1, 2.5, 1.4],
        "ci_lower": [0.9, 0.8, -0.6],
        "ci_upper": [3.3, 4.2, 3.4],
        "n": [240, 150, 90],
        "note": ["", "interaction p = 0.42", ""],
    }
)
SOC = pd.DataFrame(
    {
        "soc": ["Musculoskeletal and connective tissue disorders"] * 2 + ["Infections and infestations"] * 2,
        "group": [*GROUPS, *GROUPS],
        "participants": [12, 9, 5, 6],
    }
)
LOTS = pd.DataFrame(
    {
        "dose": [1e8, 5e8, 2e9, 0.0, 3e9, 8e9],
        "response": [0.5, 1.2, 2.0, 0.1, 2.4, 3.1],
        "lot": ["A", "A", "A", "B", "B", "B"],
    }
)

BUILDERS = {
    "boundary": lambda: figures.boundary_plot(LOOKS, BOUNDS, title="Boundaries"),
    "boundary_without_looks": lambda: figures.boundary_plot(
        LOOKS.iloc[0:0], BOUNDS.drop(columns="futility_bound"), title="Boundaries"
    ),
    "kaplan_meier": lambda: figures.kaplan_meier_plot(
        km_curves(), title="Time to rescue", time_label="Weeks", at_risk_times=[0, 24, 48]
    ),
    "forest": lambda: figures.forest_plot(FOREST, title="Subgroups", effect_label="Difference (points)"),
    "forest_log": lambda: figures.forest_plot(
        FOREST.assign(estimate=[0.8, 0.7, 1.1], ci_lower=[0.6, 0.5, 0.7], ci_upper=[1.05, 0.98, 1.7]),
        title="Hazard ratios",
        effect_label="Hazard ratio",
        reference_line=1.0,
        logx=True,
    ),
    "enrolment": lambda: figures.enrolment_plot(
        enrolment_frame()
        .groupby("date", as_index=False)["randomized"]
        .count()
        .assign(randomized=lambda f: f["randomized"].cumsum()),
        target=240,
        title="Enrolment",
    ),
    "enrolment_by_site": lambda: figures.enrolment_plot(enrolment_frame(), target=240, title="Enrolment by site"),
    "bar": lambda: figures.bar_plot(SOC, x="soc", y="participants", hue="group", title="AEs", ylabel="Participants"),
    "bar_without_hue": lambda: figures.bar_plot(
        pd.DataFrame({"form": ["Baseline", "Week 4"], "complete": [98.5, 91.0]}),
        x="form",
        y="complete",
        title="Completeness",
        ylabel="Complete (%)",
    ),
    "scatter": lambda: figures.scatter_plot(
        LOTS, x="dose", y="response", hue="lot", title="Dose", xlabel="Particles", ylabel="Response", logx=True
    ),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_figure_has_title_labelled_axes_and_renders_to_png(name):
    figure = BUILDERS[name]()
    assert isinstance(figure, Figure)
    main = figure.axes[0]
    assert main.get_title()
    # The Kaplan-Meier time label sits under the numbers-at-risk table that shares the main axes' x.
    assert main.get_xlabel() or figure.axes[1].get_xlabel()
    assert main.get_ylabel()
    width, height = figure.get_size_inches()
    assert 6.5 <= width <= 7.5
    assert 3.5 <= height <= 10
    png = figures.render_png(lambda: figure)
    assert png.startswith(PNG_SIGNATURE)


def test_render_png_is_deterministic():
    assert figures.render_png(BUILDERS["forest"]) == figures.render_png(BUILDERS["forest"])


def test_render_png_releases_pyplot_figures():
    pyplot = pytest.importorskip("matplotlib.pyplot")
    assert mpl.get_backend().lower() == "agg"

    def draw():
        figure = pyplot.figure()
        figure.add_subplot().set_title("pyplot-made")
        return figure

    before = set(pyplot.get_fignums())
    assert figures.render_png(draw).startswith(PNG_SIGNATURE)
    assert set(pyplot.get_fignums()) == before


def test_boundary_plot_leaves_out_non_finite_bounds_and_spans_information_fraction():
    axes = BUILDERS["boundary"]().axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert list(lines["Futility boundary"].get_xdata()) == [0.67, 1.0]
    assert list(lines["Observed z"].get_ydata()) == [0.8, 1.9]
    low, high = axes.get_xlim()
    assert low == 0.0
    assert 1.0 <= high < 1.1


def test_boundary_plot_without_looks_draws_only_the_bounds():
    labels = [line.get_label() for line in BUILDERS["boundary_without_looks"]().axes[0].get_lines()]
    assert "Efficacy boundary" in labels
    assert "Observed z" not in labels
    assert "Futility boundary" not in labels


def test_kaplan_meier_numbers_at_risk_come_from_the_risk_set_at_each_time():
    curves = km_curves()
    table = BUILDERS["kaplan_meier"]().axes[1]
    texts = [(text.get_position(), text.get_text()) for text in table.texts]
    first_row = sorted((position[0], value) for position, value in texts if position[1] == 1)
    # Row at the top is the first curve; at t=24 the risk set is the first row at or after 24 (t=26).
    at_26 = str(int(curves[GROUPS[0]].loc[curves[GROUPS[0]]["time"] >= 24, "at_risk"].iloc[0]))
    assert first_row == [(0, "120"), (24, at_26), (48, "–")]
    assert [label.get_text() for label in table.get_yticklabels()] == [GROUPS[1], GROUPS[0]]


def test_forest_plot_labels_rows_with_n_and_notes():
    figure = BUILDERS["forest"]()
    left, right = figure.axes
    assert [label.get_text() for label in left.get_yticklabels()] == [
        "All (n=240)",
        "Age < 65 (n=150)",
        "Age ≥ 65 (n=90)",
    ]
    assert [label.get_text() for label in right.get_yticklabels()][1] == "2.50 (0.80, 4.20)  interaction p = 0.42"
    assert left.get_xscale() == "linear"
    assert BUILDERS["forest_log"]().axes[0].get_xscale() == "log"


def test_enrolment_by_site_stacks_sites_and_marks_the_target():
    axes = BUILDERS["enrolment_by_site"]().axes[0]
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert labels[:3] == ["Berlin", "Lyon", "Madrid"]
    assert "Target (240)" in labels
    total = next(line for line in axes.get_lines() if line.get_label() == "All sites")
    assert max(total.get_ydata()) == 120  # 3 sites x 40


def test_bar_plot_switches_to_horizontal_for_long_category_names():
    axes = BUILDERS["bar"]().axes[0]
    assert axes.get_xlabel() == "Participants"
    bars = axes.patches
    assert len(bars) == 4
    assert sorted(bar.get_width() for bar in bars) == [5, 6, 9, 12]
    short = BUILDERS["bar_without_hue"]().axes[0]
    assert short.get_ylabel() == "Complete (%)"
    assert sorted(bar.get_height() for bar in short.patches) == [91.0, 98.5]


def test_scatter_plot_on_log_axis_notes_points_it_cannot_place():
    axes = BUILDERS["scatter"]().axes[0]
    assert axes.get_xscale() == "log"
    assert sum(len(collection.get_offsets()) for collection in axes.collections) == 5
    assert any("1 point(s) with dose ≤ 0 not shown" in text.get_text() for text in axes.texts)
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["A", "B"]


def _consort_text(figure):
    return [text.get_text() for text in figure.axes[0].texts]


def test_consort_per_arm_shows_each_group_and_reasons():
    figure = figures.consort_diagram(CONSORT_COUNTS, title="Participant flow")
    assert figure.axes[0].get_title() == "Participant flow"
    text = "\n".join(_consort_text(figure))
    assert text.count("Allocated to") == 2
    for expected in (
        "Assessed for eligibility (n=312)",
        "Excluded (n=52)",
        "• Did not meet inclusion criteria (n=40)",
        "Randomised (n=260)",
        f"Allocated to {GROUPS[0]} (n=130)",
        "Allocated to Placebo (n=130)",
        "• Adverse event (n=2)",
        "Discontinued intervention (n=4)",
        "Analysed (n=128)",
    ):
        assert expected in text
    assert figures.render_png(lambda: figure).startswith(PNG_SIGNATURE)


@pytest.mark.req("R20")
def test_consort_pooled_discloses_no_arm():
    pooled = {
        "assessed": 312,
        "excluded": {"Not eligible": 52},
        "randomized": 260,
        "allocated": {"All participants": 260},
        "lost_to_follow_up": {"All participants": 5},
        "analysed": {"All participants": 254},
    }
    text = "\n".join(_consort_text(figures.consort_diagram(pooled, title="Participant flow")))
    assert text.count("Allocated to") == 1
    assert "Allocated to All participants (n=260)" in text
    assert "Placebo" not in text
    assert "Analysed (n=254)" in text


def test_consort_requires_the_enrolment_counts():
    with pytest.raises(ValueError, match="randomized"):
        figures.consort_diagram({"assessed": 10, "allocated": {"All": 8}}, title="x")
