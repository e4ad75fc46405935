"""The analysis freeze read through PostgreSQL COPY."""

from __future__ import annotations

import datetime as dt

from analysis import extract


def test_the_freeze_works_with_the_debug_cursor(demo_trial, settings):
    """``make run`` runs with DEBUG=True, where Django wraps cursors in its query-logging debug wrapper."""
    cutoff = dt.date(2030, 1, 1)
    plain = extract.freeze(demo_trial, cutoff)
    settings.DEBUG = True
    debug = extract.freeze(demo_trial, cutoff)
    assert plain.keys() == debug.keys()
    for name, frame in plain.items():
        assert frame.equals(debug[name]), name
    assert len(plain["adeff"]) > 0
