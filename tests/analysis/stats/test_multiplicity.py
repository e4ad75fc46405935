"""Multiplicity adjustments against R p.adjust / multtest values and hand-checkable definitions."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.stats.multiplicity import adjust_pvalues

# Ten raw p-values with R results (multtest::mt.rawp2adjp, identical to p.adjust) recorded in statsmodels'
# test suite: statsmodels/stats/tests/test_multi.py, array res_multtest3.
RAW = [0.001, 0.002, 0.003, 0.004, 0.005, 0.05, 0.06, 0.07, 0.08, 0.09]


def test_bonferroni_matches_r():
    adjusted = adjust_pvalues(RAW, "bonferroni").adjusted
    # res_multtest3 Bonferroni column: 0.01 0.02 0.03 0.04 0.05 0.5 0.6 0.7 0.8 0.9
    assert np.allclose(adjusted, [0.01, 0.02, 0.03, 0.04, 0.05, 0.5, 0.6, 0.7, 0.8, 0.9])


def test_holm_matches_r():
    adjusted = adjust_pvalues(RAW, "holm").adjusted
    # res_multtest3 Holm column: 0.01 0.018 0.024 0.028 0.03 then 0.25 x 5
    assert np.allclose(adjusted, [0.01, 0.018, 0.024, 0.028, 0.03, 0.25, 0.25, 0.25, 0.25, 0.25])


def test_hochberg_matches_r():
    adjusted = adjust_pvalues(RAW, "hochberg").adjusted
    # res_multtest3 Hochberg column: 0.01 0.018 0.024 0.028 0.03 then 0.09 x 5
    assert np.allclose(adjusted, [0.01, 0.018, 0.024, 0.028, 0.03, 0.09, 0.09, 0.09, 0.09, 0.09])


def test_holm_and_hochberg_on_unsorted_input_keep_input_order():
    # Hochberg (1988) illustration: p = (0.01, 0.02, 0.03, 0.04, 0.05) -- Hochberg rejects all five at 0.05
    # (adjusted p all 0.05) while Holm's step-down stops after the first (adjusted 0.05, 0.08, 0.09, ...).
    raw = [0.04, 0.01, 0.05, 0.03, 0.02]
    hochberg = adjust_pvalues(raw, "hochberg")
    assert np.allclose(hochberg.adjusted, [0.05] * 5)
    assert all(hochberg.rejected)
    holm = adjust_pvalues(raw, "holm")
    assert np.allclose(holm.adjusted, [0.09, 0.05, 0.09, 0.09, 0.08])
    assert holm.rejected == (False, True, False, False, False)


def test_fixed_sequence_stops_at_first_non_significant_hypothesis():
    result = adjust_pvalues([0.01, 0.04, 0.20, 0.001], "fixed_sequence", alpha=0.05)
    # Hierarchical testing: H4 (p = 0.001) is not rejected because H3 before it failed.
    assert result.adjusted == (0.01, 0.04, 0.20, 0.20)
    assert result.rejected == (True, True, False, False)


@pytest.mark.parametrize(
    ("pvalues", "method", "message"),
    [
        ([0.01, 1.2], "holm", r"\[0, 1\]"),
        ([0.01, float("nan")], "holm", "missing"),
        ([], "holm", "non-empty"),
        ([0.01], "bh", "method must be one of"),
    ],
)
def test_invalid_input_raises(pvalues, method, message):
    with pytest.raises(ValueError, match=message):
        adjust_pvalues(pvalues, method)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    pvalues=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30),
    method=st.sampled_from(["bonferroni", "holm", "hochberg", "fixed_sequence"]),
)
def test_adjusted_pvalues_are_valid_and_monotone(pvalues, method):
    result = adjust_pvalues(pvalues, method)
    raw = np.array(result.raw)
    adjusted = np.array(result.adjusted)
    assert (adjusted >= raw - 1e-15).all()
    assert (adjusted <= 1.0).all()
    if method == "fixed_sequence":
        assert (np.diff(adjusted) >= 0).all()
    else:
        # Ordering of the raw p-values is preserved by the adjusted ones.
        order = np.argsort(raw, kind="stable")
        assert (np.diff(adjusted[order]) >= -1e-15).all()
    if method == "hochberg":
        assert (adjusted <= np.array(adjust_pvalues(pvalues, "holm").adjusted) + 1e-15).all()
