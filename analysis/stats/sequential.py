"""Group-sequential monitoring: alpha spending, efficacy boundaries, conditional power and futility.

The boundary computation is written here by hand because no well-kept Python library provides it
(the reference implementations are the R packages gsDesign and rpact). It follows the numerical
integration of Armitage, McPherson & Rowe (1969) in the form given by Jennison & Turnbull (2000),
*Group Sequential Methods with Applications to Clinical Trials*, chapter 19: the sub-density of the
z-statistic among trials still running is carried from look to look on the grid of section 19.2.1
(``r`` grid points per unit, refined by Simpson's rule) and the probability of crossing the next
boundary is integrated against the exact normal tail. With the default ``r = 32`` the boundaries
agree with gsDesign/rpact to better than 1e-6 on the z scale (see ``tests/analysis/stats``).

Conventions: ``fractions`` are information fractions t_k = I_k / I_max; ``alpha`` is one-sided; a
two-sided symmetric design at level 2*alpha uses the same boundaries with ``alpha`` per side. The
canonical joint distribution is Z_k ~ N(drift * sqrt(t_k), 1) with Cov(Z_j, Z_k) = sqrt(t_j / t_k),
where ``drift`` is E[Z(1)], the expected z-statistic at full information.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from ._validation import check_alpha, check_finite_number, check_probability_open

SpendingName = Literal["obf", "pocock", "hsd"]

MAX_LOOKS = 10
# Jennison & Turnbull recommend r = 16 for about six-figure accuracy of probabilities; 32 costs a few
# milliseconds more and keeps boundary errors far below the 1e-4 requirement even for ten looks.
GRID_R = 32

RECOMMEND_CONTINUE = "continue"
RECOMMEND_EFFICACY = "stop for efficacy"
RECOMMEND_FUTILITY = "consider stopping for futility"
RECOMMEND_FINAL_NOT_CROSSED = "final analysis: efficacy bound not crossed"


# ----------------------------------------------------------------------------------------------
# Spending functions
# ----------------------------------------------------------------------------------------------


def _check_spending_name(name: str, gamma: float | None) -> float | None:
    if name not in ("obf", "pocock", "hsd"):
        raise ValueError(f"spending must be one of 'obf', 'pocock', 'hsd', got {name!r}")
    if name == "hsd":
        if gamma is None:
            raise ValueError("gamma is required for Hwang-Shih-DeCani ('hsd') spending")
        value = check_finite_number(gamma, "gamma")
        # Same admissible range as gsDesign::sfHSD; beyond it exp() makes the function numerically flat.
        if not -40.0 <= value <= 40.0:
            raise ValueError(f"gamma must lie in [-40, 40], got {value}")
        return value
    if gamma is not None:
        raise ValueError(f"gamma applies only to 'hsd' spending, not to {name!r}")
    return None


def _spend(name: str, t: np.ndarray, alpha: float, gamma: float | None) -> np.ndarray:
    if name == "obf":
        # Lan & DeMets (1983) O'Brien-Fleming type: 2 - 2 Phi(z_{1-alpha/2} / sqrt(t)).
        with np.errstate(divide="ignore"):
            scaled = stats.norm.isf(alpha / 2.0) / np.sqrt(t)
        return 2.0 * special.ndtr(-scaled)
    if name == "pocock":
        # Lan & DeMets (1983) Pocock type: alpha * log(1 + (e - 1) t).
        return alpha * np.log1p((math.e - 1.0) * t)
    if gamma is None:
        raise ValueError("gamma is required for Hwang-Shih-DeCani ('hsd') spending")
    if gamma == 0.0:
        return alpha * t
    # Hwang, Shih & DeCani (1990): alpha (1 - exp(-gamma t)) / (1 - exp(-gamma)).
    return alpha * np.expm1(-gamma * t) / np.expm1(-gamma)


@overload
def spending(name: str, t: float, alpha: float, gamma: float | None = None) -> float: ...
@overload
def spending(name: str, t: Sequence[float] | np.ndarray, alpha: float, gamma: float | None = None) -> np.ndarray: ...
def spending(
    name: str, t: float | Sequence[float] | np.ndarray, alpha: float, gamma: float | None = None
) -> float | np.ndarray:
    """Cumulative one-sided alpha spent at information fraction(s) ``t``.

    Parameters
    ----------
    name : {"obf", "pocock", "hsd"}
        Lan-DeMets O'Brien-Fleming-type, Lan-DeMets Pocock-type, or Hwang-Shih-DeCani spending.
    t : float or array of float
        Information fraction(s) in [0, 1].
    alpha : float
        Total one-sided alpha in (0, 0.5).
    gamma : float, optional
        HSD parameter in [-40, 40]; required for ``"hsd"`` and not allowed otherwise
        (gamma = -4 resembles O'Brien-Fleming, gamma = 1 resembles Pocock, gamma = 0 is linear).

    Returns
    -------
    float or numpy.ndarray
        Alpha spent by fraction ``t`` (a float for scalar ``t``); 0 at t = 0 and ``alpha`` at t = 1.

    References
    ----------
    Lan KKG, DeMets DL (1983). Discrete sequential boundaries for clinical trials. Biometrika 70:659-663.
    Hwang IK, Shih WJ, DeCani JS (1990). Group sequential designs using a family of type I error
    probability spending functions. Statistics in Medicine 9:1439-1445.
    """
    gamma_value = _check_spending_name(name, gamma)
    alpha_value = check_alpha(alpha)
    scalar = np.ndim(t) == 0
    try:
        fractions = np.atleast_1d(np.asarray(t, dtype=float))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"t must be numeric: {exc}") from exc
    if fractions.ndim != 1:
        raise ValueError(f"t must be a scalar or one-dimensional, got shape {fractions.shape}")
    if not np.isfinite(fractions).all():
        raise ValueError("t must be finite")
    if ((fractions < 0) | (fractions > 1)).any():
        raise ValueError(f"t must lie in [0, 1], got {fractions.tolist()}")
    spent = _spend(name, fractions, alpha_value, gamma_value)
    spent = np.where(fractions >= 1.0, alpha_value, np.clip(spent, 0.0, alpha_value))
    return float(spent[0]) if scalar else spent


# ----------------------------------------------------------------------------------------------
# Recursive numerical integration (Jennison & Turnbull 2000, section 19.2)
# ----------------------------------------------------------------------------------------------


def _grid(mean: float, upper: float, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Simpson nodes and weights for one look: the J&T grid around ``mean`` truncated above at ``upper``."""
    i = np.arange(1, 6 * r, dtype=float)
    points = np.where(
        i < r,
        mean - 3.0 - 4.0 * np.log(r / i),
        np.where(
            i <= 5 * r,
            mean - 3.0 + 3.0 * (i - r) / (2.0 * r),
            mean + 3.0 + 4.0 * np.log(r / np.maximum(6.0 * r - i, 1.0)),
        ),
    )
    if math.isfinite(upper):
        points = np.append(points[points < upper], upper)
    if points.size == 1:
        # The boundary lies ~18 sd below the mean: the continuation region carries no probability.
        return points, np.zeros(1)
    nodes = np.empty(2 * points.size - 1)
    nodes[0::2] = points
    nodes[1::2] = 0.5 * (points[:-1] + points[1:])
    spans = np.diff(points)
    weights = np.zeros_like(nodes)
    weights[0:-1:2] += spans / 6.0
    weights[1::2] = 4.0 * spans / 6.0
    weights[2::2] += spans / 6.0
    return nodes, weights


class _Recursion:
    """Sub-density of Z_k on the continuation region, carried forward one look at a time."""

    def __init__(self, drift: float, r: int = GRID_R) -> None:
        self.drift = drift
        self.r = r
        self.info = 0.0
        self.nodes: np.ndarray | None = None
        self.mass: np.ndarray | None = None  # Simpson weight times sub-density at each node
        # While every earlier bound is +inf nobody can have stopped, Z_k is plainly normal and its tail is
        # computed exactly rather than from a grid that is truncated about 15 sd out.
        self.unrestricted = True

    def upper_tail(self, bound: float, info: float) -> float:
        """P(Z_k >= bound and no earlier crossing)."""
        if not math.isfinite(bound):
            return 0.0
        if self.unrestricted or self.nodes is None or self.mass is None:
            return float(special.ndtr(-(bound - self.drift * math.sqrt(info))))
        step = info - self.info
        shortfall = bound * math.sqrt(info) - self.nodes * math.sqrt(self.info) - self.drift * step
        excess = shortfall / math.sqrt(step)
        return float(np.dot(self.mass, special.ndtr(-excess)))

    def continuing_mass(self) -> float:
        return 1.0 if self.mass is None else float(self.mass.sum())

    def advance(self, bound: float, info: float) -> None:
        nodes, weights = _grid(self.drift * math.sqrt(info), bound, self.r)
        if self.nodes is None or self.mass is None:
            density = stats.norm.pdf(nodes - self.drift * math.sqrt(info))
        else:
            step = info - self.info
            scale = math.sqrt(info / step)
            arguments = (
                nodes[:, None] * math.sqrt(info) - self.nodes[None, :] * math.sqrt(self.info) - self.drift * step
            ) / math.sqrt(step)
            density = scale * (stats.norm.pdf(arguments) @ self.mass)
        self.nodes, self.mass, self.info = nodes, weights * density, info
        self.unrestricted = self.unrestricted and not math.isfinite(bound)


def _solve_bound(recursion: _Recursion, info: float, target: float) -> float:
    """Boundary at this look whose exclusive crossing probability equals ``target``."""
    if target <= 0.0:
        return math.inf
    if recursion.unrestricted:
        return float(stats.norm.isf(target)) + recursion.drift * math.sqrt(info)
    if target >= recursion.continuing_mass():
        raise ValueError("the alpha to spend at this look exceeds the probability of reaching it")

    def excess(bound: float) -> float:
        return recursion.upper_tail(bound, info) - target

    low, high = -10.0, 10.0
    while excess(high) > 0.0:
        high *= 2.0
    while excess(low) < 0.0:
        low *= 2.0
    return float(optimize.brentq(excess, low, high, xtol=1e-13, rtol=4 * np.finfo(float).eps, maxiter=200))


def _run_design(
    fractions: np.ndarray,
    cumulative_targets: np.ndarray,
    fixed_bounds: Sequence[float] = (),
    r: int = GRID_R,
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds (fixed ones kept, the rest solved under H0) and the cumulative alpha actually spent."""
    recursion = _Recursion(drift=0.0, r=r)
    bounds = np.empty(fractions.size)
    spent = np.empty(fractions.size)
    total = 0.0
    for k, info in enumerate(fractions):
        if k < len(fixed_bounds):
            bounds[k] = fixed_bounds[k]
        else:
            bounds[k] = _solve_bound(recursion, info, cumulative_targets[k] - total)
        total += recursion.upper_tail(bounds[k], info)
        spent[k] = total
        if k + 1 < fractions.size:
            recursion.advance(bounds[k], info)
    return bounds, spent


def _crossing_by_look(fractions: np.ndarray, bounds: np.ndarray, drift: float, r: int = GRID_R) -> np.ndarray:
    recursion = _Recursion(drift=drift, r=r)
    crossing = np.empty(fractions.size)
    for k, info in enumerate(fractions):
        crossing[k] = recursion.upper_tail(bounds[k], info)
        if k + 1 < fractions.size:
            recursion.advance(bounds[k], info)
    return crossing


# ----------------------------------------------------------------------------------------------
# Designs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupSequentialBounds:
    """One-sided upper efficacy boundaries of a group-sequential design.

    Attributes
    ----------
    fractions : list of float
        Information fraction of each look.
    z : list of float
        Efficacy boundary on the z scale (``inf`` where a look spends no alpha).
    nominal_p : list of float
        One-sided nominal p-value that crosses the boundary, 1 - Phi(z).
    cumulative_alpha : list of float
        Probability under H0 of crossing at or before each look, from the numerical integration.
    alpha, spending, gamma :
        The design parameters the boundaries were computed from.
    """

    fractions: list[float]
    z: list[float]
    nominal_p: list[float]
    cumulative_alpha: list[float]
    alpha: float
    spending: str
    gamma: float | None = None

    @property
    def looks(self) -> int:
        return len(self.fractions)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "look": np.arange(1, self.looks + 1),
                "fraction": self.fractions,
                "z": self.z,
                "nominal_p": self.nominal_p,
                "cumulative_alpha": self.cumulative_alpha,
            }
        )


def _check_fractions(fractions: object, name: str = "fractions", allow_overrun: bool = False) -> np.ndarray:
    try:
        values = np.atleast_1d(np.asarray(fractions, dtype=float))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{name} must be a non-empty list of information fractions")
    if values.size > MAX_LOOKS:
        raise ValueError(f"{name} has {values.size} looks; at most {MAX_LOOKS} are supported")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} must be finite, got {values.tolist()}")
    if (values <= 0).any():
        raise ValueError(f"{name} must be positive, got {values.tolist()}")
    if (np.diff(values) <= 0).any():
        raise ValueError(f"{name} must be strictly increasing, got {values.tolist()}")
    if not allow_overrun and values[-1] > 1.0:
        raise ValueError(f"{name} must not exceed 1, got {values.tolist()}")
    if allow_overrun and (values[:-1] >= 1.0).any():
        raise ValueError(f"only the last look in {name} may reach or exceed full information, got {values.tolist()}")
    return values


def _make_bounds(
    fractions: np.ndarray, bounds: np.ndarray, spent: np.ndarray, alpha: float, name: str, gamma: float | None
) -> GroupSequentialBounds:
    return GroupSequentialBounds(
        fractions=[float(value) for value in fractions],
        z=[float(value) for value in bounds],
        nominal_p=[float(special.ndtr(-value)) for value in bounds],
        cumulative_alpha=[float(value) for value in spent],
        alpha=alpha,
        spending=name,
        gamma=gamma,
    )


def efficacy_bounds(
    fractions: Sequence[float] | np.ndarray,
    alpha: float = 0.025,
    spending: str = "obf",
    gamma: float | None = None,
) -> GroupSequentialBounds:
    """One-sided efficacy boundaries for looks at the given information fractions.

    Parameters
    ----------
    fractions : sequence of float
        1 to 10 strictly increasing information fractions, the last equal to 1.0; any spacing.
    alpha : float
        One-sided type I error in (0, 0.5). A two-sided symmetric design at level 0.05 uses 0.025.
    spending : {"obf", "pocock", "hsd"}
        Alpha-spending function, see :func:`spending`.
    gamma : float, optional
        Hwang-Shih-DeCani parameter (``spending="hsd"`` only).

    Returns
    -------
    GroupSequentialBounds
        ``z``, ``nominal_p`` and ``cumulative_alpha`` per look (lists in look order).

    Method
    ------
    At look k the boundary b_k solves P_0(Z_1 < b_1, ..., Z_{k-1} < b_{k-1}, Z_k >= b_k) = f(t_k) - f(t_{k-1})
    for the spending function f, with the probability computed by the recursive numerical integration of
    Armitage, McPherson & Rowe (1969) on the grid of Jennison & Turnbull (2000, section 19.2) and b_k found
    by Brent's method. The bounds are efficacy-only (futility, if any, is non-binding).

    References
    ----------
    Jennison C, Turnbull BW (2000). Group Sequential Methods with Applications to Clinical Trials,
    chapters 7 and 19.
    Armitage P, McPherson CK, Rowe BC (1969). Repeated significance tests on accumulating data.
    JRSS A 132:235-244.
    """
    gamma_value = _check_spending_name(spending, gamma)
    alpha_value = check_alpha(alpha)
    values = _check_fractions(fractions, allow_overrun=True)
    if not math.isclose(values[-1], 1.0, rel_tol=0.0, abs_tol=1e-12):
        raise ValueError(f"the last of fractions must be 1.0 (full information), got {values[-1]}")
    values[-1] = 1.0
    targets = _spend(spending, values, alpha_value, gamma_value)
    targets[-1] = alpha_value
    bounds, spent = _run_design(values, targets)
    return _make_bounds(values, bounds, spent, alpha_value, spending, gamma_value)


def recompute_bounds(
    design: GroupSequentialBounds,
    actual_fractions: Sequence[float] | np.ndarray,
    *,
    used_bounds: Sequence[float] | None = None,
    final: bool | None = None,
) -> GroupSequentialBounds:
    """Boundaries for looks that fell at other information fractions than planned.

    The spending function of ``design`` is evaluated at the actual fractions (Lan & DeMets 1983), so
    the design adapts to the number and timing of looks without inflating the type I error.

    Parameters
    ----------
    design : GroupSequentialBounds
        The planned design (supplies alpha, spending function and gamma).
    actual_fractions : sequence of float
        Information fractions of the looks done so far, relative to the planned maximum information;
        strictly increasing. Only the last may reach or exceed 1 (over-running final analysis).
    used_bounds : sequence of float, optional
        Boundaries already applied at the first ``len(used_bounds)`` looks. They stay fixed, and the alpha
        they actually spent (computed by integration) is deducted before later looks are solved.
    final : bool, optional
        Whether the last look is the final analysis, which spends all remaining alpha. Defaults to
        ``actual_fractions[-1] >= 1``.

    Returns
    -------
    GroupSequentialBounds
        Boundaries at the actual looks; ``cumulative_alpha`` is what the boundaries actually spend.
    """
    if not isinstance(design, GroupSequentialBounds):
        raise ValueError("design must be a GroupSequentialBounds from efficacy_bounds()")
    values = _check_fractions(actual_fractions, "actual_fractions", allow_overrun=True)
    fixed: list[float] = []
    if used_bounds is not None:
        fixed = [check_finite_number(value, "used_bounds") for value in used_bounds]
        if len(fixed) > values.size:
            raise ValueError(
                f"used_bounds has {len(fixed)} entries but only {values.size} looks are in actual_fractions"
            )
    is_final = bool(values[-1] >= 1.0) if final is None else bool(final)
    if not is_final and values[-1] >= 1.0:
        raise ValueError("a look at or beyond full information must be the final analysis (final=True)")
    # Information beyond the planned maximum would otherwise give t > 1 and information times that are not
    # fractions; the spending function is read at min(t, 1) and the final look spends what is left.
    targets = _spend(design.spending, np.minimum(values, 1.0), design.alpha, design.gamma)
    if is_final:
        targets[-1] = design.alpha
    bounds, spent = _run_design(values, targets, fixed_bounds=fixed)
    return _make_bounds(values, bounds, spent, design.alpha, design.spending, design.gamma)


def crossing_probabilities(design: GroupSequentialBounds, drift: float = 0.0) -> list[float]:
    """Probability of first crossing the efficacy boundary at each look when E[Z(1)] = ``drift``.

    Their sum is the power of the design (its type I error when ``drift = 0``). Computed with the same
    recursive integration as :func:`efficacy_bounds`.
    """
    if not isinstance(design, GroupSequentialBounds):
        raise ValueError("design must be a GroupSequentialBounds from efficacy_bounds()")
    drift_value = check_finite_number(drift, "drift")
    crossing = _crossing_by_look(np.asarray(design.fractions), np.asarray(design.z), drift_value)
    return [float(value) for value in crossing]


def design_drift(design: GroupSequentialBounds, power: float = 0.9) -> float:
    """Drift E[Z(1)] at which the design has the requested overall power.

    Multiply the fixed-sample requirement (z_{1-alpha} + z_{1-beta})^2 by
    ``(design_drift / (z_{1-alpha} + z_{1-beta}))^2`` to get the group-sequential inflation factor.
    """
    if not isinstance(design, GroupSequentialBounds):
        raise ValueError("design must be a GroupSequentialBounds from efficacy_bounds()")
    power_value = check_probability_open(power, "power")
    if power_value <= design.alpha:
        raise ValueError(f"power must exceed the design alpha {design.alpha}, got {power_value}")
    fractions, bounds = np.asarray(design.fractions), np.asarray(design.z)

    def shortfall(drift: float) -> float:
        return float(_crossing_by_look(fractions, bounds, drift).sum()) - power_value

    return float(optimize.brentq(shortfall, 0.0, 40.0, xtol=1e-10))


# ----------------------------------------------------------------------------------------------
# Conditional power and futility
# ----------------------------------------------------------------------------------------------


def _check_interim(z: float, fraction: float, final_z: float) -> tuple[float, float, float]:
    z_value = check_finite_number(z, "z")
    fraction_value = check_finite_number(fraction, "fraction")
    if not 0.0 < fraction_value < 1.0:
        raise ValueError(f"fraction must lie strictly between 0 and 1 for an interim look, got {fraction_value}")
    final_value = check_finite_number(final_z, "final_z")
    return z_value, fraction_value, final_value


def conditional_power(z: float, fraction: float, final_z: float, drift: float | None = None) -> float:
    """Probability that the final z-statistic exceeds ``final_z`` given the interim ``z`` at ``fraction``.

    Uses the B-value (Brownian motion) form of Lan & Wittes (1988):
    CP = 1 - Phi((final_z - z sqrt(t) - drift (1 - t)) / sqrt(1 - t)),
    where ``drift`` = E[Z(1)]; ``None`` means the current trend, drift = z / sqrt(t).
    Intermediate looks are ignored (the usual convention for conditional power).

    Reference: Lan KKG, Wittes J (1988). The B-value: a tool for monitoring data. Biometrics 44:579-585.
    """
    z_value, t, final_value = _check_interim(z, fraction, final_z)
    drift_value = z_value / math.sqrt(t) if drift is None else check_finite_number(drift, "drift")
    b_value = z_value * math.sqrt(t)
    return float(special.ndtr(-(final_value - b_value - drift_value * (1.0 - t)) / math.sqrt(1.0 - t)))


@dataclass(frozen=True)
class FutilityAssessment:
    """Outcome of the non-binding conditional-power futility rule at one interim look."""

    z: float
    fraction: float
    final_z: float
    drift: float
    conditional_power: float
    threshold: float
    futility_met: bool


def futility_by_conditional_power(
    z: float, fraction: float, final_z: float, threshold: float = 0.10, drift: float | None = None
) -> FutilityAssessment:
    """Non-binding futility rule: futility is met when conditional power falls below ``threshold``.

    The rule is non-binding: the efficacy boundaries are computed as if the trial always continued, so
    the type I error is controlled whether or not the data monitoring committee acts on it. By default
    the conditional power is evaluated under the current trend (``drift=None``); pass the design drift
    for the more conservative "conditional power under the planned effect" rule.
    """
    z_value, t, final_value = _check_interim(z, fraction, final_z)
    threshold_value = check_probability_open(threshold, "threshold")
    drift_value = z_value / math.sqrt(t) if drift is None else check_finite_number(drift, "drift")
    power = conditional_power(z_value, t, final_value, drift=drift_value)
    return FutilityAssessment(
        z=z_value,
        fraction=t,
        final_z=final_value,
        drift=drift_value,
        conditional_power=power,
        threshold=threshold_value,
        futility_met=power < threshold_value,
    )


def monitoring_summary(
    design: GroupSequentialBounds,
    z_statistics: Sequence[float] | np.ndarray,
    fractions: Sequence[float] | np.ndarray,
    *,
    design_drift: float,
    futility_threshold: float = 0.10,
    final: bool | None = None,
) -> pd.DataFrame:
    """Per-look monitoring report for the looks done so far.

    Parameters
    ----------
    design : GroupSequentialBounds
        The planned design from :func:`efficacy_bounds`.
    z_statistics : sequence of float
        Observed z-statistic at each look done so far (positive favours the experimental arm).
    fractions : sequence of float
        Actual information fraction of each of those looks (relative to the planned maximum).
    design_drift : float
        E[Z(1)] under the effect the trial was powered for, e.g. from :func:`design_drift`.
    futility_threshold : float
        Conditional power (current trend) below which futility is flagged; non-binding.
    final : bool, optional
        Whether the last look is the final analysis (default: its fraction is >= 1).

    Returns
    -------
    pandas.DataFrame
        One row per look with columns ``look, fraction, z_statistic, p_value, efficacy_bound, nominal_p,
        cumulative_alpha, final_bound, conditional_power_trend, conditional_power_design,
        recommendation``. Bounds are recomputed for the actual fractions with earlier bounds kept fixed
        (:func:`recompute_bounds`). ``final_bound`` is the final-analysis boundary implied by the actual
        looks so far plus the planned looks still to come; conditional power is computed against it and is
        NaN at the final analysis, where it is not defined. ``recommendation`` is "stop for efficacy" when
        the bound is crossed, otherwise "consider stopping for futility" when conditional power under the
        current trend is below the threshold, otherwise "continue"; at the final analysis an uncrossed bound
        gives "final analysis: efficacy bound not crossed".
    """
    if not isinstance(design, GroupSequentialBounds):
        raise ValueError("design must be a GroupSequentialBounds from efficacy_bounds()")
    try:
        observed = np.atleast_1d(np.asarray(z_statistics, dtype=float))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"z_statistics must be numeric: {exc}") from exc
    if not np.isfinite(observed).all():
        raise ValueError("z_statistics must be finite (no missing looks)")
    looks = _check_fractions(fractions, "fractions", allow_overrun=True)
    if observed.shape != looks.shape:
        raise ValueError(
            f"z_statistics and fractions must have one entry per look, got {observed.size} and {looks.size}"
        )
    drift_value = check_finite_number(design_drift, "design_drift")
    threshold = check_probability_open(futility_threshold, "futility_threshold")
    is_final = bool(looks[-1] >= 1.0) if final is None else bool(final)

    actual = recompute_bounds(design, looks, final=is_final)
    rows = []
    for k in range(looks.size):
        t = float(looks[k])
        last_look_is_final = is_final and k == looks.size - 1
        bound = actual.z[k]
        crossed = observed[k] >= bound
        if last_look_is_final:
            final_bound = bound
            cp_trend = cp_design = math.nan
            recommendation = RECOMMEND_EFFICACY if crossed else RECOMMEND_FINAL_NOT_CROSSED
        else:
            remaining = [value for value in design.fractions if value > t]
            projected = recompute_bounds(design, [*looks[: k + 1].tolist(), *remaining], used_bounds=actual.z[: k + 1])
            final_bound = projected.z[-1]
            cp_trend = conditional_power(observed[k], t, final_bound)
            cp_design = conditional_power(observed[k], t, final_bound, drift=drift_value)
            if crossed:
                recommendation = RECOMMEND_EFFICACY
            elif cp_trend < threshold:
                recommendation = RECOMMEND_FUTILITY
            else:
                recommendation = RECOMMEND_CONTINUE
        rows.append(
            {
                "look": k + 1,
                "fraction": t,
                "z_statistic": float(observed[k]),
                "p_value": float(special.ndtr(-observed[k])),
                "efficacy_bound": bound,
                "nominal_p": actual.nominal_p[k],
                "cumulative_alpha": actual.cumulative_alpha[k],
                "final_bound": final_bound,
                "conditional_power_trend": cp_trend,
                "conditional_power_design": cp_design,
                "recommendation": recommendation,
            }
        )
    return pd.DataFrame(rows)
