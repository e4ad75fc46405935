"""Sample sizes against R's power.t.test / power.prop.test."""

import math

import pytest
from scipy import stats

from analysis.stats import power
from analysis.stats.power import sample_size_means, sample_size_proportions


def test_means_matches_r_power_t_test():
    # R ?power.t.test example: power.t.test(power = .90, delta = 1) gives n = 22.02110 per group.
    assert power._exact_n_means(1.0, 1.0, 0.05, 0.9, 2) == pytest.approx(22.02110, abs=5e-6)
    assert sample_size_means(1.0, 1.0, power=0.9) == 23
    # Scale invariance and sign: only |delta| / sd matters.
    assert sample_size_means(-5.0, 5.0, power=0.9) == 23


def test_means_one_sided_uses_alpha_once():
    exact = power._exact_n_means(0.5, 1.0, 0.025, 0.8, 1)
    two_sided = power._exact_n_means(0.5, 1.0, 0.05, 0.8, 2)
    # The strict=FALSE two-sided test at 0.05 and the one-sided test at 0.025 solve the same equation.
    assert exact == pytest.approx(two_sided, rel=1e-9)
    # Normal-approximation check: n ~ 2 (z_a + z_b)^2 / d^2 = 62.8; the t correction adds about one.
    approx = 2 * (stats.norm.isf(0.025) + stats.norm.isf(0.2)) ** 2 / 0.25
    assert approx < exact < approx + 1.5


def test_proportions_matches_power_prop_test_equation():
    # R ?power.prop.test example: power.prop.test(p1 = .50, p2 = .75, power = .90).
    # Its equation (strict = FALSE) has the closed-form solution of Fleiss, Levin & Paik (2003, eq. 4.14)
    # without continuity correction: n = [(z_a sqrt(2 pbar qbar) + z_b sqrt(p1 q1 + p2 q2)) / |p1 - p2|]^2
    # = 76.7069; the issue brief quoted 76.65294, which this equation does not give.
    z_alpha, z_beta = stats.norm.isf(0.025), stats.norm.isf(0.1)
    closed_form = ((z_alpha * math.sqrt(2 * 0.625 * 0.375) + z_beta * math.sqrt(0.25 + 0.1875)) / 0.25) ** 2
    assert closed_form == pytest.approx(76.7069, abs=5e-5)
    assert power._exact_n_proportions(0.5, 0.75, 0.05, 0.9, 2) == pytest.approx(closed_form, rel=1e-9)
    assert sample_size_proportions(0.5, 0.75, power=0.9) == 77
    assert sample_size_proportions(0.75, 0.5, power=0.9) == 77


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sample_size_means(0.0, 1.0), "delta must be non-zero"),
        (lambda: sample_size_means(1.0, -1.0), "sd must be positive"),
        (lambda: sample_size_means(1.0, 1.0, alpha=1.5), "alpha"),
        (lambda: sample_size_means(1.0, 1.0, power=1.0), "power"),
        (lambda: sample_size_means(1.0, 1.0, sides=3), "sides"),
        (lambda: sample_size_proportions(0.5, 0.5), "differ"),
        (lambda: sample_size_proportions(0.0, 0.5), "p1"),
        (lambda: sample_size_means(1e-9, 1.0), "not reachable"),
    ],
)
def test_invalid_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()
