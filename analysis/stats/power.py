"""Sample size per arm for two-arm comparisons, solved the way R's ``power.t.test``/``power.prop.test`` do."""

from __future__ import annotations

import math
from collections.abc import Callable

from scipy import optimize, stats

from ._validation import check_alpha, check_finite_number, check_positive, check_probability_open

_MAX_PER_ARM = 1e9


def _check_sides(sides: int) -> int:
    if sides not in (1, 2):
        raise ValueError(f"sides must be 1 or 2, got {sides!r}")
    return sides


def _check_error_rates(alpha: float, power: float, sides: int) -> tuple[float, float, int]:
    alpha_value = check_alpha(alpha, upper=1.0)
    target = check_probability_open(power, "power")
    tails = _check_sides(sides)
    if target <= alpha_value / tails:
        raise ValueError(f"power ({target}) must exceed the one-sided significance level ({alpha_value / tails})")
    return alpha_value, target, tails


def _solve_per_arm(power_at: Callable[[float], float], target: float) -> float:
    """Fractional n per arm at which ``power_at(n)`` reaches ``target`` (what R prints as ``n``)."""

    def shortfall(n: float) -> float:
        return power_at(n) - target

    if shortfall(_MAX_PER_ARM) < 0:
        raise ValueError("the requested power is not reachable with a realistic sample size (effect too small)")
    return float(optimize.brentq(shortfall, 2.0, _MAX_PER_ARM, xtol=1e-10, rtol=1e-14, maxiter=500))


def _round_up(exact: float) -> int:
    # Trials recruit whole participants; the guard keeps an exact integer from being bumped by float fuzz.
    return math.ceil(exact - 1e-9)


def _exact_n_means(delta: float, sd: float, alpha: float, power: float, sides: int) -> float:
    effect = abs(check_finite_number(delta, "delta"))
    if effect == 0.0:
        raise ValueError("delta must be non-zero")
    spread = check_positive(sd, "sd")
    alpha_value, target, tails = _check_error_rates(alpha, power, sides)

    def power_at(n: float) -> float:
        df = 2.0 * (n - 1.0)
        critical = stats.t.isf(alpha_value / tails, df)
        return float(stats.nct.sf(critical, df, effect * math.sqrt(n / 2.0) / spread))

    return _solve_per_arm(power_at, target)


def sample_size_means(delta: float, sd: float, alpha: float = 0.05, power: float = 0.8, sides: int = 2) -> int:
    """Participants per arm for a two-sample t-test of a mean difference ``delta`` with common ``sd``.

    Method: solves power(n) = P(T'(df = 2n - 2, ncp = |delta| sqrt(n/2) / sd) > t_{1 - alpha/sides, 2n - 2})
    exactly with the noncentral t distribution, as R ``power.t.test(type = "two.sample", strict = FALSE)``
    does, then rounds the fractional n up. ``alpha`` is the total significance level (two-sided when
    ``sides = 2``).

    Reference: R Core Team, ``stats::power.t.test``; Chow, Shao & Wang (2008), Sample Size Calculations in
    Clinical Research, section 3.2.
    """
    return _round_up(_exact_n_means(delta, sd, alpha, power, sides))


def _exact_n_proportions(p1: float, p2: float, alpha: float, power: float, sides: int) -> float:
    first = check_probability_open(p1, "p1")
    second = check_probability_open(p2, "p2")
    if first == second:
        raise ValueError("p1 and p2 must differ")
    alpha_value, target, tails = _check_error_rates(alpha, power, sides)
    q1, q2 = 1.0 - first, 1.0 - second
    critical = stats.norm.isf(alpha_value / tails)
    pooled = math.sqrt((first + second) * (q1 + q2) / 2.0)
    separate = math.sqrt(first * q1 + second * q2)

    def power_at(n: float) -> float:
        return float(stats.norm.cdf((math.sqrt(n) * abs(first - second) - critical * pooled) / separate))

    return _solve_per_arm(power_at, target)


def sample_size_proportions(p1: float, p2: float, alpha: float = 0.05, power: float = 0.8, sides: int = 2) -> int:
    """Participants per arm to detect proportions ``p1`` vs ``p2`` with a two-sample test of proportions.

    Method: normal approximation without continuity correction, solving the power equation of R
    ``power.prop.test(strict = FALSE)``

        power(n) = Phi((sqrt(n) |p1 - p2| - z_{1-alpha/sides} sqrt((p1 + p2)(q1 + q2) / 2))
                   / sqrt(p1 q1 + p2 q2))

    for n and rounding up.

    Reference: R Core Team, ``stats::power.prop.test``; Fleiss JL, Levin B, Paik MC (2003), Statistical
    Methods for Rates and Proportions, 3rd ed., section 4.2.
    """
    return _round_up(_exact_n_proportions(p1, p2, alpha, power, sides))
