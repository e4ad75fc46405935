"""Timing of one action: a warm-up, then the median of several measured runs (no Django here)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Seconds of each measured run (warm-up runs excluded) and their median.

    ``single_long_run``: the first run took so long that it was measured once, without warm-up (see ``measure``).
    """

    runs: tuple[float, ...]
    warmup: int
    single_long_run: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def as_dict(self) -> dict:
        return {
            "median_s": round(self.median, 4),
            "runs_s": [round(run, 4) for run in self.runs],
            "warmup": self.warmup,
            "single_long_run": self.single_long_run,
        }


def measure(
    action: Callable[[], object],
    *,
    repeats: int = 3,
    warmup: int = 1,
    long_run_s: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Run ``action`` ``warmup`` times untimed, then ``repeats`` times timed; the median is the figure.

    With ``long_run_s``, a first run that takes at least that long is the only one: what a warm-up saves (imports,
    cold caches, query plans) is lost in the noise of a run that long, and repeating it would cost the minutes a
    whole benchmark suite is allowed.
    """
    if repeats < 1:
        raise ValueError("At least one measured run is needed.")
    if warmup < 0:
        raise ValueError("The number of warm-up runs cannot be negative.")
    runs: list[float] = []
    for index in range(warmup + repeats):
        started = clock()
        action()
        elapsed = clock() - started
        if index == 0 and long_run_s is not None and elapsed >= long_run_s:
            return Timing((elapsed,), 0, single_long_run=True)
        if index >= warmup:
            runs.append(elapsed)
    return Timing(tuple(runs), warmup)
