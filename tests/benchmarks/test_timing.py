"""The benchmark timer: warm-up runs are not counted, the figure is the median, a long first run is the only one."""

from __future__ import annotations

import itertools

import pytest

from benchmarks.timing import measure


def _clock(durations):
    """A fake clock whose successive runs last ``durations`` seconds (two readings per run)."""
    now = 0.0
    readings = []
    for duration in durations:
        readings += [now, now + duration]
        now += duration
    return iter(readings).__next__


def test_warm_up_runs_are_excluded_and_the_median_is_the_figure():
    calls = itertools.count()

    timing = measure(lambda: next(calls), repeats=3, warmup=1, clock=_clock([9.0, 2.0, 5.0, 3.0]))

    assert next(calls) == 4
    assert timing.runs == (2.0, 5.0, 3.0)
    assert timing.median == 3.0
    assert timing.as_dict()["warmup"] == 1
    assert not timing.single_long_run


def test_a_first_run_longer_than_the_limit_is_measured_once_without_warm_up():
    calls = itertools.count()

    timing = measure(lambda: next(calls), repeats=3, warmup=1, long_run_s=100, clock=_clock([150.0]))

    assert next(calls) == 1
    assert timing.runs == (150.0,)
    assert timing.single_long_run
    assert timing.warmup == 0


def test_short_runs_are_repeated_even_with_a_long_run_limit():
    timing = measure(lambda: None, repeats=2, warmup=1, long_run_s=100, clock=_clock([99.0, 1.0, 2.0]))

    assert timing.runs == (1.0, 2.0)


@pytest.mark.parametrize(("repeats", "warmup"), [(0, 1), (1, -1)])
def test_impossible_run_counts_are_refused(repeats, warmup):
    with pytest.raises(ValueError, match=r"measured run|negative"):
        measure(lambda: None, repeats=repeats, warmup=warmup)
