"""Figures of the benchmark run: their goals, the printed table and ``bench.json`` (no Django here)."""

from __future__ import annotations

import datetime as dt
import json
import operator
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    "==": operator.eq,
}


@dataclass
class Figure:
    """One measured figure: ``value`` (a ratio platform ÷ baseline, or seconds, MB, a count), its goal and detail.

    ``baseline`` is what the ratio divides by (None when the figure is not a ratio); ``detail`` holds the raw
    timings and anything else a reader needs to trust the number.
    """

    key: str
    value: float
    goal_op: str
    goal: float
    unit: str = "ratio"
    platform: float | None = None
    baseline: float | None = None
    note: str = ""
    detail: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.goal_op not in _COMPARISONS:
            raise ValueError(f"Unknown goal comparison {self.goal_op!r}; use one of {', '.join(_COMPARISONS)}.")

    @property
    def met(self) -> bool:
        return _COMPARISONS[self.goal_op](self.value, self.goal)

    def as_dict(self) -> dict:
        return {
            "value": self.value,
            "unit": self.unit,
            "platform": self.platform,
            "baseline": self.baseline,
            "goal": f"{self.goal_op} {self.goal:g}",
            "met": self.met,
            "note": self.note,
            "detail": self.detail,
        }


def ratio(platform: float, baseline: float) -> float:
    if baseline <= 0:
        raise ValueError("The baseline took no measurable time: the ratio is undefined.")
    return platform / baseline


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"


def table(figures: list[Figure]) -> str:
    """A plain-text table: figure, value, platform, baseline, goal, met."""
    header = ("figure", "value", "unit", "platform", "baseline", "goal", "met")
    rows = [
        (
            f.key,
            _number(f.value),
            f.unit,
            _number(f.platform),
            _number(f.baseline),
            f"{f.goal_op} {f.goal:g}",
            "yes" if f.met else "NO",
        )
        for f in figures
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    notes = [f"  {f.key}: {f.note}" for f in figures if f.note]
    return "\n".join(lines + (["", "Notes:", *notes] if notes else []))


def write_json(path: Path, figures: list[Figure], *, machine: dict, settings: dict) -> Path:
    """``bench.json``: each figure's value under its key, the details under ``figures``, and the machine."""
    document = {
        **{f.key: f.value for f in figures},
        "figures": {f.key: f.as_dict() for f in figures},
        "machine": machine,
        "settings": settings,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def machine_description() -> dict:
    """What the figures were measured on: CPUs, platform, Python, PostgreSQL, the commit (and if it was dirty)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (pg_version,) = cursor.fetchone()
    base = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        completed = subprocess.run(["git", *args], cwd=base, capture_output=True, text=True, check=False)
        return completed.stdout.strip()

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "postgresql": pg_version,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "finished_at": dt.datetime.now(tz=dt.UTC).isoformat(timespec="seconds"),
    }
