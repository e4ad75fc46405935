"""Report figures: each function returns a new matplotlib Figure drawn on an Agg canvas.

Figures are built with ``matplotlib.figure.Figure`` and ``FigureCanvasAgg`` rather than pyplot, so they do
not touch pyplot's global figure registry or the process-wide backend: the Celery worker and the web
process can render concurrently and nothing needs a display. The palette is Okabe & Ito's (2008)
colour-blind-safe set; series are also distinguished by marker or line style so they survive greyscale
printing.
"""

from __future__ import annotations

import io
import itertools
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import matplotlib as mpl
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

# Okabe-Ito, reordered so the first colours have the most contrast against white and each other.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")
FIGSIZE = (7.0, 4.0)
PNG_DPI = 150

_STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#d9d9d9",
    "grid.linewidth": 0.6,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
}


@contextmanager
def _style() -> Iterator[None]:
    # Font sizes and colours are read when artists are created, so the context only has to cover drawing.
    with mpl.rc_context(_STYLE):
        yield


def _new_figure(figsize: tuple[float, float] = FIGSIZE, *, layout: str | None = "constrained") -> Figure:
    figure = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _no_data(ax: Axes, message: str = "No data") -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color="#595959")


def render_png(draw: Callable[[], Figure], *, dpi: int = PNG_DPI) -> bytes:
    """Build a figure with ``draw``, return it as PNG bytes and release it.

    ``draw`` may use pyplot; such figures are also removed from pyplot's registry so a long-running worker
    does not accumulate them.
    """
    figure = draw()
    try:
        FigureCanvasAgg(figure)
        buffer = io.BytesIO()
        # Without the Software key the PNG carries no matplotlib version, so equal figures give equal bytes.
        figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None}, facecolor="white")
        return buffer.getvalue()
    finally:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close(figure)


def boundary_plot(looks: pd.DataFrame, bounds: pd.DataFrame, *, title: str) -> Figure:
    """Group-sequential stopping boundaries with the observed z-statistic path.

    ``looks``: columns ``fraction``, ``z_statistic`` (may be empty before the first look).
    ``bounds``: columns ``fraction``, ``efficacy_bound`` and optionally ``futility_bound``; non-finite
    bounds (no futility stopping at a look) are left out of the line.
    """
    with _style():
        figure = _new_figure()
        ax = figure.add_subplot()
        bounds = bounds.sort_values("fraction")
        efficacy = bounds[np.isfinite(bounds["efficacy_bound"].astype(float))]
        ax.plot(
            efficacy["fraction"],
            efficacy["efficacy_bound"],
            marker="o",
            color=_colour(0),
            label="Efficacy boundary",
        )
        if "futility_bound" in bounds.columns:
            futility = bounds[np.isfinite(bounds["futility_bound"].astype(float))]
            if not futility.empty:
                ax.plot(
                    futility["fraction"],
                    futility["futility_bound"],
                    marker="s",
                    linestyle="--",
                    color=_colour(1),
                    label="Futility boundary",
                )
        if not looks.empty:
            observed = looks.sort_values("fraction")
            ax.plot(
                observed["fraction"],
                observed["z_statistic"],
                marker="D",
                color="#000000",
                linewidth=1.8,
                label="Observed z",
            )
        ax.axhline(0.0, color="#7f7f7f", linewidth=0.8)
        # A little room past 1.0 so the final-analysis markers are not cut in half by the axes edge.
        ax.set_xlim(0.0, 1.03)
        ax.set_xticks(np.linspace(0.0, 1.0, 6))
        ax.set_xlabel("Information fraction")
        ax.set_ylabel("z statistic")
        ax.set_title(title)
        ax.legend(loc="best")
    return figure


def _at_risk(curve: pd.DataFrame, when: float) -> str:
    # The Kaplan-Meier table has a row per event time whose at_risk is the risk set just before it, so
    # the first row at or after ``when`` gives the number still at risk at ``when``. Past the last row
    # the number is unknown from the table alone and shown as a dash rather than guessed.
    later = curve[curve["time"] >= when]
    if later.empty:
        return "–"
    return str(int(later["at_risk"].iloc[0]))


def _km_steps(curve: pd.DataFrame) -> pd.DataFrame:
    curve = curve.sort_values("time")[["time", "survival", "ci_lower", "ci_upper"]].astype(float)
    if curve.empty or curve["time"].iloc[0] > 0:
        # Every curve starts at S(0) = 1, which the event-time table does not list.
        start = pd.DataFrame({"time": [0.0], "survival": [1.0], "ci_lower": [1.0], "ci_upper": [1.0]})
        curve = pd.concat([start, curve], ignore_index=True)
    return curve


def kaplan_meier_plot(
    curves: Mapping[str, pd.DataFrame], *, title: str, time_label: str, at_risk_times: list[float]
) -> Figure:
    """Kaplan-Meier step curves with shaded pointwise confidence bands and a numbers-at-risk table.

    Each frame in ``curves`` (label → frame) has columns ``time``, ``survival``, ``ci_lower``, ``ci_upper``
    and ``at_risk`` as returned by ``analysis.stats.survival.kaplan_meier``. The number at risk at each of
    ``at_risk_times`` is ``at_risk`` of the first row at or after that time (exact when the frame has a row
    at every censoring time, otherwise it can undercount); after the last row it is shown as "–".
    """
    with _style():
        rows = max(len(curves), 1)
        figure = _new_figure((FIGSIZE[0], FIGSIZE[1] + 0.25 * rows))
        grid = figure.add_gridspec(2, 1, height_ratios=[4.0, 0.45 + 0.3 * rows])
        ax = figure.add_subplot(grid[0])
        table_ax = figure.add_subplot(grid[1], sharex=ax)
        for index, (label, curve) in enumerate(curves.items()):
            steps = _km_steps(curve)
            colour = _colour(index)
            ax.step(
                steps["time"],
                steps["survival"],
                where="post",
                color=colour,
                linestyle=LINESTYLES[index % len(LINESTYLES)],
                label=label,
            )
            ax.fill_between(steps["time"], steps["ci_lower"], steps["ci_upper"], step="post", color=colour, alpha=0.18)
        if not curves:
            _no_data(ax)
        ax.set_ylim(0.0, 1.02)
        ax.set_ylabel("Survival probability")
        ax.set_title(title)
        if curves:
            ax.legend(loc="lower left")
        ax.tick_params(labelbottom=False)

        table_ax.set_ylim(-0.5, rows - 0.5)
        # First curve on the top row, as in the legend; each row label takes its curve's colour.
        table_ax.set_yticks(range(rows), list(curves)[::-1] or [""])
        if curves:
            for index, tick in enumerate(reversed(table_ax.get_yticklabels())):
                tick.set_color(_colour(index))
        for row, curve in enumerate(curves.values()):
            for when in at_risk_times:
                table_ax.text(when, rows - 1 - row, _at_risk(curve, when), ha="center", va="center", fontsize=8)
        table_ax.set_xticks(at_risk_times)
        table_ax.grid(False)
        table_ax.spines[["left", "top", "right"]].set_visible(False)
        table_ax.tick_params(axis="y", length=0)
        table_ax.set_xlabel(time_label)
        table_ax.set_title("Number at risk", loc="left", fontsize=8, fontweight="normal")
        right = max([*at_risk_times, ax.get_xlim()[1]])
        # Start slightly left of 0 so the at-risk counts at time 0 do not collide with the row labels.
        ax.set_xlim(-0.03 * right, right)
    return figure


def forest_plot(
    rows: pd.DataFrame,
    *,
    title: str,
    effect_label: str,
    reference_line: float = 0.0,
    logx: bool = False,
    row_label: str = "Subgroup",
) -> Figure:
    """Estimates with confidence intervals, one row per subgroup, first row at the top.

    ``rows``: columns ``label``, ``estimate``, ``ci_lower``, ``ci_upper``, ``n`` and optionally ``note``
    (e.g. the interaction p-value, shown on the right). ``logx`` puts ratio effects on a log axis (use
    ``reference_line=1.0`` with it); ``row_label`` names what the rows are.
    """
    with _style():
        count = len(rows)
        figure = _new_figure((FIGSIZE[0], max(FIGSIZE[1], 1.2 + 0.32 * count)))
        ax = figure.add_subplot()
        if rows.empty:
            _no_data(ax)
        positions = np.arange(count)[::-1]
        estimates = rows["estimate"].to_numpy(dtype=float)
        lower = rows["ci_lower"].to_numpy(dtype=float)
        upper = rows["ci_upper"].to_numpy(dtype=float)
        ax.errorbar(
            estimates,
            positions,
            xerr=np.vstack([estimates - lower, upper - estimates]),
            fmt="s",
            color=_colour(0),
            ecolor=_colour(0),
            markersize=5,
            capsize=3,
            linewidth=1.2,
        )
        ax.axvline(reference_line, color="#595959", linestyle="--", linewidth=0.9)
        if logx:
            ax.set_xscale("log")
        ax.set_yticks(positions)
        ax.set_yticklabels([f"{label} (n={_count(n)})" for label, n in zip(rows["label"], rows["n"], strict=True)])
        ax.set_ylim(-0.7, count - 0.3)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(effect_label)
        ax.set_ylabel(row_label)
        ax.set_title(title)
        right = ax.twinx()
        right.set_ylim(ax.get_ylim())
        right.set_yticks(positions)
        notes = rows["note"] if "note" in rows.columns else pd.Series([""] * count, index=rows.index)
        right.set_yticklabels(
            [
                f"{_short(est)} ({_short(lo)}, {_short(hi)})" + (f"  {note}" if isinstance(note, str) and note else "")
                for est, lo, hi, note in zip(estimates, lower, upper, notes, strict=True)
            ]
        )
        right.tick_params(axis="y", length=0)
        right.grid(False)
        right.spines[["top", "right"]].set_visible(False)
    return figure


def _count(value: float | None) -> str:
    if value is None or pd.isna(value):
        return "–"
    return str(int(value))


def _short(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.2f}"


def enrolment_plot(cumulative: pd.DataFrame, *, target: int, title: str) -> Figure:
    """Cumulative randomisations over time against the enrolment target.

    ``cumulative``: columns ``date`` and ``randomized`` (cumulative count). With a ``site`` column the
    counts are per site and are drawn stacked, with the trial total as a line on top.
    """
    with _style():
        figure = _new_figure()
        ax = figure.add_subplot()
        frame = cumulative.assign(date=pd.to_datetime(cumulative["date"])).sort_values("date")
        if frame.empty:
            _no_data(ax)
        elif "site" in frame.columns:
            # Each site's cumulative count holds its last value on days when only other sites randomised.
            wide = frame.pivot_table(index="date", columns="site", values="randomized", aggfunc="max", sort=False)
            wide = wide.sort_index().ffill().fillna(0.0)
            wide = wide[sorted(wide.columns, key=str)]  # a stable legend order, whichever site started first
            colours = [_colour(index) for index in range(wide.shape[1])]
            ax.stackplot(
                wide.index,
                wide.to_numpy(dtype=float).T,
                labels=[str(site) for site in wide.columns],
                colors=colours,
                alpha=0.75,
                step="post",
            )
            ax.step(wide.index, wide.sum(axis=1), where="post", color="#000000", linewidth=1.4, label="All sites")
        else:
            ax.step(
                frame["date"], frame["randomized"], where="post", color=_colour(0), linewidth=1.6, label="Randomised"
            )
        ax.axhline(target, color=_colour(3), linestyle="--", linewidth=1.2, label=f"Target ({target})")
        ax.set_ylim(0, max(target, float(frame["randomized"].max()) if not frame.empty else 0) * 1.08 + 1)
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_xlabel("Date")
        ax.set_ylabel("Participants randomised (cumulative)")
        ax.set_title(title)
        ax.legend(loc="upper left", ncols=2 if "site" in frame.columns else 1)
    return figure


def _wrap(label: object, width: int) -> str:
    return "\n".join(textwrap.wrap(str(label), width)) or str(label)


def bar_plot(
    frame: pd.DataFrame, *, x: str, y: str, hue: str | None = None, title: str, ylabel: str, xlabel: str | None = None
) -> Figure:
    """Grouped bar chart of ``y`` per ``x`` category, one bar per ``hue`` level within each category.

    Categories keep the frame's order. Long category names (system organ classes, say) switch the chart
    to horizontal bars so the names stay readable; ``ylabel`` always labels the value axis.
    """
    with _style():
        data = frame if hue is not None else frame.assign(_hue="")
        hue_column = hue or "_hue"
        categories = list(dict.fromkeys(data[x]))
        levels = list(dict.fromkeys(data[hue_column]))
        values = data.pivot_table(index=x, columns=hue_column, values=y, aggfunc="sum", sort=False)
        values = values.reindex(index=categories, columns=levels)
        horizontal = any(len(str(category)) > 14 for category in categories) or len(categories) > 10
        height = max(FIGSIZE[1], 1.0 + 0.28 * len(categories) * max(1, len(levels) / 2)) if horizontal else FIGSIZE[1]
        figure = _new_figure((FIGSIZE[0], min(height, 10.0)))
        ax = figure.add_subplot()
        if data.empty:
            _no_data(ax)
        width = 0.8 / max(len(levels), 1)
        positions = np.arange(len(categories))
        for index, level in enumerate(levels):
            offsets = positions - 0.4 + width * (index + 0.5)
            series = values[level].to_numpy(dtype=float)
            label = str(level) if hue is not None else None
            if horizontal:
                bars = ax.barh(offsets, series, height=width, color=_colour(index), label=label)
            else:
                bars = ax.bar(offsets, series, width=width, color=_colour(index), label=label)
            if len(categories) * len(levels) <= 24:
                ax.bar_label(bars, labels=[_bar_text(value) for value in series], fontsize=7, padding=2)
        wrapped = [_wrap(category, 28 if horizontal else 14) for category in categories]
        if horizontal:
            ax.set_yticks(positions, wrapped)
            ax.invert_yaxis()
            ax.set_xlabel(ylabel)
            ax.set_ylabel(xlabel if xlabel is not None else x)
            ax.grid(axis="y", visible=False)
            ax.margins(x=0.08)
        else:
            ax.set_xticks(positions, wrapped)
            ax.set_ylabel(ylabel)
            ax.set_xlabel(xlabel if xlabel is not None else x)
            ax.grid(axis="x", visible=False)
            ax.margins(y=0.1)
        ax.set_title(title)
        if hue is not None:
            ax.legend(title=hue, loc="best")
    return figure


def _bar_text(value: float) -> str:
    if not np.isfinite(value):
        return ""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"


def scatter_plot(
    frame: pd.DataFrame,
    *,
    x: str,
    y: str,
    hue: str | None = None,
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
) -> Figure:
    """Scatter of ``y`` against ``x``; each ``hue`` level (product lot, say) gets its own colour and marker.

    With ``logx`` points with ``x <= 0`` cannot be placed and are left out; the count is noted on the plot.
    """
    with _style():
        figure = _new_figure()
        ax = figure.add_subplot()
        data = frame
        dropped = 0
        if logx:
            positive = data[x].astype(float) > 0
            dropped = int((~positive).sum())
            data = data[positive]
            ax.set_xscale("log")
        if data.empty:
            _no_data(ax)
        groups = [(None, data)] if hue is None else list(data.groupby(hue, sort=False))
        for index, (level, group) in enumerate(groups):
            ax.scatter(
                group[x],
                group[y],
                color=_colour(index),
                marker=MARKERS[index % len(MARKERS)],
                s=28,
                alpha=0.85,
                edgecolors="white",
                linewidths=0.4,
                label=None if level is None else str(level),
            )
        if dropped:
            ax.text(
                0.99, 0.01, f"{dropped} point(s) with {x} ≤ 0 not shown", transform=ax.transAxes, ha="right", fontsize=7
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if hue is not None and groups:
            ax.legend(title=hue, loc="best", ncols=2 if len(groups) > 6 else 1)
    return figure


# CONSORT layout, in inches: the axes' data units are the figure's inches so text metrics map to box sizes.
_CONSORT_WIDTH = 7.0
_LINE = 0.16  # height of one 8-point text line with leading
_PAD = 0.09
_CHAR = 0.062  # mean width of an 8-point DejaVu Sans character
_STAGE_COLUMN = 0.55  # left strip holding the Enrolment / Allocation / Follow-up / Analysis labels
_GAP = 0.28  # vertical gap between boxes (room for the arrow)
_STAGE_LABEL_HEIGHT = 0.66  # "Allocation" set vertically in bold 8 point


class _Box:
    def __init__(self, lines: list[str], centre_x: float, width: float) -> None:
        wrap_at = max(int((width - 2 * _PAD) / _CHAR), 8)
        self.lines = [wrapped for line in lines for wrapped in textwrap.wrap(line, wrap_at, subsequent_indent="   ")]
        self.centre_x = centre_x
        self.width = width
        self.height = len(self.lines) * _LINE + 2 * _PAD
        self.top = 0.0

    @property
    def bottom(self) -> float:
        return self.top - self.height

    def draw(self, ax: Axes, *, align_left: bool = False) -> None:
        ax.add_patch(
            FancyBboxPatch(
                (self.centre_x - self.width / 2, self.bottom),
                self.width,
                self.height,
                boxstyle="round,pad=0,rounding_size=0.05",
                facecolor="white",
                edgecolor="#333333",
                linewidth=0.9,
            )
        )
        x = self.centre_x - self.width / 2 + _PAD if align_left else self.centre_x
        ax.text(
            x,
            self.top - self.height / 2,
            "\n".join(self.lines),
            ha="left" if align_left else "center",
            va="center",
            fontsize=8,
            linespacing=1.45,
        )


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float]) -> None:
    ax.add_patch(
        FancyArrowPatch(
            start, end, arrowstyle="-|>", mutation_scale=9, color="#333333", linewidth=0.9, shrinkA=0, shrinkB=0
        )
    )


def _reasons(reasons: Mapping[str, int]) -> list[str]:
    return [f"• {reason} (n={count})" for reason, count in reasons.items()]


def _group_value(counts: Mapping[str, object], key: str, group: str) -> object:
    per_group = counts.get(key) or {}
    return per_group.get(group) if isinstance(per_group, Mapping) else None


def _n(value: object) -> str:
    return "–" if value is None else str(value)


def _consort_group_boxes(counts: Mapping[str, object], group: str, centre: float, width: float) -> list[_Box]:
    received = _group_value(counts, "received", group)
    allocated = [f"Allocated to {group} (n={_n(_group_value(counts, 'allocated', group))})"]
    if "received" in counts:
        allocated.append(f"• Received allocated intervention (n={_n(received)})")
    follow_up = []
    if "lost_to_follow_up" in counts:
        follow_up.append(f"Lost to follow-up (n={_n(_group_value(counts, 'lost_to_follow_up', group))})")
    if "discontinued" in counts:
        reasons = _group_value(counts, "discontinued", group) or {}
        total = sum(reasons.values()) if isinstance(reasons, Mapping) else reasons
        follow_up.append(f"Discontinued intervention (n={total})")
        if isinstance(reasons, Mapping):
            follow_up.extend(_reasons(reasons))
    boxes = [_Box(allocated, centre, width), _Box(follow_up or ["Follow-up not yet reported"], centre, width)]
    analysed = [f"Analysed (n={_n(_group_value(counts, 'analysed', group))})"]
    excluded = _group_value(counts, "excluded_from_analysis", group)
    if excluded is not None:
        analysed.append(f"• Excluded from analysis (n={excluded})")
    boxes.append(_Box(analysed, centre, width))
    return boxes


def consort_diagram(counts: Mapping[str, object], *, title: str) -> Figure:
    """CONSORT 2010 participant flow chart.

    ``counts`` keys (only ``assessed``, ``randomized`` and ``allocated`` are required):

    - ``assessed``: int, participants assessed for eligibility.
    - ``excluded``: dict reason → n, participants not randomised (the box total is the sum).
    - ``randomized``: int.
    - ``allocated``: dict group → n. An OPEN report passes a single pooled group (e.g. ``{"All
      participants": 240}``) so no per-arm count is disclosed; a CLOSED report passes one entry per arm.
    - ``received``: dict group → n who received the allocated intervention.
    - ``lost_to_follow_up``: dict group → n.
    - ``discontinued``: dict group → (dict reason → n) of participants who discontinued the intervention.
    - ``analysed``: dict group → n included in the analysis.
    - ``excluded_from_analysis``: dict group → n.

    Per-group dicts are keyed by the same group names as ``allocated``; a missing group is shown as "–".
    """
    missing = [key for key in ("assessed", "randomized", "allocated") if key not in counts]
    if missing:
        raise ValueError(f"CONSORT counts lack {', '.join(missing)}")
    allocated = counts["allocated"]
    if not isinstance(allocated, Mapping) or not allocated:
        raise ValueError("counts['allocated'] must be a non-empty dict of group -> n")
    excluded = counts.get("excluded") or {}
    if not isinstance(excluded, Mapping):
        raise ValueError("counts['excluded'] must be a dict of reason -> n")
    groups = [str(group) for group in allocated]

    trunk_x = _STAGE_COLUMN + (_CONSORT_WIDTH - _STAGE_COLUMN) * 0.36
    top_boxes = [
        _Box([f"Assessed for eligibility (n={counts['assessed']})"], trunk_x, 2.3),
        _Box([f"Randomised (n={counts['randomized']})"], trunk_x, 2.3),
    ]
    excluded_box = _Box([f"Excluded (n={sum(excluded.values())})", *_reasons(excluded)], _CONSORT_WIDTH - 1.45, 2.75)
    column_width = (_CONSORT_WIDTH - _STAGE_COLUMN - 0.1) / len(groups)
    box_width = min(column_width - 0.15, 3.2)
    # A pooled (OPEN) chart is a single straight column under the randomisation box.
    centres = (
        [trunk_x]
        if len(groups) == 1
        else [_STAGE_COLUMN + column_width * (index + 0.5) for index in range(len(groups))]
    )
    columns = [
        _consort_group_boxes(counts, group, centre, box_width) for group, centre in zip(groups, centres, strict=True)
    ]

    # Lay out top-down: y is measured downwards from 0 and flipped when the axes limits are set.
    cursor = -0.1
    top_boxes[0].top = cursor
    cursor = top_boxes[0].bottom - _GAP
    excluded_box.top = cursor
    cursor = excluded_box.bottom - _GAP
    top_boxes[1].top = cursor
    cursor = top_boxes[1].bottom - _GAP - 0.12
    stage_tops = []
    for stage in range(3):
        stage_tops.append(cursor)
        # Boxes of one stage share a height so the arms line up, and are tall enough for the stage label.
        height = max(_STAGE_LABEL_HEIGHT, *(boxes[stage].height for boxes in columns))
        for boxes in columns:
            boxes[stage].top = cursor
            boxes[stage].height = height
        cursor -= height + _GAP
    total_height = -cursor

    with _style():
        figure_height = total_height + 0.45
        figure = _new_figure((_CONSORT_WIDTH, figure_height), layout=None)
        # A fixed axes rectangle keeps one data unit equal to one inch, which the box sizing relies on.
        ax = figure.add_axes((0.0, 0.0, 1.0, total_height / figure_height))
        ax.set_xlim(0.0, _CONSORT_WIDTH)
        ax.set_ylim(-total_height, 0.0)
        ax.set_axis_off()
        ax.set_title(title)

        for box in (*top_boxes, excluded_box):
            box.draw(ax, align_left=box is excluded_box)
        _arrow(ax, (trunk_x, top_boxes[0].bottom), (trunk_x, top_boxes[1].top))
        excluded_y = excluded_box.top - excluded_box.height / 2
        _arrow(ax, (trunk_x, excluded_y), (excluded_box.centre_x - excluded_box.width / 2, excluded_y))

        # Randomised → each allocation box through a horizontal bus, as in the CONSORT template.
        bus_y = top_boxes[1].bottom - (_GAP + 0.12) / 2
        ax.plot([trunk_x, trunk_x], [top_boxes[1].bottom, bus_y], color="#333333", linewidth=0.9)
        centres = [boxes[0].centre_x for boxes in columns]
        ax.plot([min([*centres, trunk_x]), max([*centres, trunk_x])], [bus_y, bus_y], color="#333333", linewidth=0.9)
        for boxes in columns:
            _arrow(ax, (boxes[0].centre_x, bus_y), (boxes[0].centre_x, boxes[0].top))
            for upper, lower in itertools.pairwise(boxes):
                _arrow(ax, (upper.centre_x, upper.bottom), (lower.centre_x, lower.top))
            for stage, box in enumerate(boxes):
                box.draw(ax, align_left=stage > 0)

        stages = [
            ("Enrolment", top_boxes[0].top, top_boxes[1].bottom),
            *(
                (name, stage_tops[index], stage_tops[index] - max(boxes[index].height for boxes in columns))
                for index, name in enumerate(("Allocation", "Follow-up", "Analysis"))
            ),
        ]
        for name, top, bottom in stages:
            ax.add_patch(
                FancyBboxPatch(
                    (0.05, bottom),
                    0.32,
                    top - bottom,
                    boxstyle="round,pad=0,rounding_size=0.05",
                    facecolor="#d6e9f5",
                    edgecolor="#0072B2",
                    linewidth=0.8,
                )
            )
            ax.text(0.21, (top + bottom) / 2, name, rotation=90, ha="center", va="center", fontsize=8, weight="bold")
    return figure
