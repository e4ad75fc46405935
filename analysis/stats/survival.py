"""Time-to-event analyses on top of statsmodels' SurvfuncRight, survdiff and PHReg.

Inputs are parallel vectors (``time``, ``event`` and, where needed, ``group``/``strata``): ``time`` is the
non-negative follow-up time, ``event`` is 1 for an observed event and 0 for a right-censored time. Rows with
a missing value raise unless ``missing="drop"``, in which case the number dropped is reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.duration.hazard_regression import PHReg
from statsmodels.duration.survfunc import SurvfuncRight, survdiff

from ._validation import (
    as_float_array,
    check_event_indicator,
    check_level,
    check_nonnegative_times,
    complete_cases,
)

ArrayLike: TypeAlias = Sequence[float] | np.ndarray | pd.Series


def _time_event(
    time: ArrayLike, event: ArrayLike, missing: str, extra: dict[str, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], int]:
    arrays: dict[str, np.ndarray] = {
        "time": as_float_array(time, "time"),
        "event": as_float_array(event, "event"),
    }
    if extra:
        arrays.update(extra)
    clean, n_excluded = complete_cases(arrays, missing)
    times = check_nonnegative_times(clean.pop("time"))
    events = check_event_indicator(clean.pop("event"))
    if times.size == 0:
        raise ValueError("time is empty (after excluding missing values)")
    return times, events, clean, n_excluded


def _as_object_array(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=object)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def kaplan_meier(time: ArrayLike, event: ArrayLike, *, level: float = 0.95, missing: str = "raise") -> pd.DataFrame:
    """Kaplan-Meier estimate with Greenwood variance and log-log transformed pointwise confidence limits.

    Parameters
    ----------
    time : array of float
        Follow-up times, >= 0.
    event : array of {0, 1}
        1 = event observed, 0 = censored.
    level : float
        Confidence level of the pointwise interval.
    missing : {"raise", "drop"}
        Missing-data policy; the number of rows dropped is in ``result.attrs["n_excluded"]``.

    Returns
    -------
    pandas.DataFrame
        One row per distinct event time with columns ``time, at_risk, events, survival, ci_lower,
        ci_upper, std_error`` (Greenwood standard error of the survival estimate). The interval is
        S(t)^exp(+-z se / (S log S)) (Kalbfleisch & Prentice 1980), the default of Stata's ``sts list`` and
        of R ``survfit(conf.type = "log-log")``; where S(t) = 1 or 0 the transform is undefined and the
        limits equal the estimate.

    References
    ----------
    Kaplan EL, Meier P (1958). JASA 53:457-481. Greenwood M (1926). Reports on Public Health 33.
    """
    level_value = check_level(level)
    times, events, _, n_excluded = _time_event(time, event, missing)
    if events.sum() == 0:
        table = pd.DataFrame(columns=["time", "at_risk", "events", "survival", "ci_lower", "ci_upper", "std_error"])
        table.attrs["n_excluded"] = n_excluded
        return table
    fit = SurvfuncRight(times, events)
    survival = np.asarray(fit.surv_prob, dtype=float)
    std_error = np.asarray(fit.surv_prob_se, dtype=float)
    z = stats.norm.isf((1.0 - level_value) / 2.0)
    lower = survival.copy()
    upper = survival.copy()
    interior = (survival > 0.0) & (survival < 1.0)
    log_survival = np.log(survival[interior])
    # Delta method: se of log(-log S) is se(S) / |S log S|.
    spread = z * std_error[interior] / np.abs(survival[interior] * log_survival)
    lower[interior] = np.exp(-np.exp(np.log(-log_survival) + spread))
    upper[interior] = np.exp(-np.exp(np.log(-log_survival) - spread))
    table = pd.DataFrame(
        {
            "time": np.asarray(fit.surv_times, dtype=float),
            "at_risk": np.asarray(fit.n_risk, dtype=int),
            "events": np.asarray(fit.n_events, dtype=int),
            "survival": survival,
            "ci_lower": lower,
            "ci_upper": upper,
            "std_error": std_error,
        }
    )
    table.attrs["n_excluded"] = n_excluded
    return table


def median_survival(time: ArrayLike, event: ArrayLike, *, missing: str = "raise") -> float:
    """Median survival time: the first time at which the Kaplan-Meier estimate is <= 0.5.

    Returns ``nan`` when the estimate never falls to 0.5 (median not reached); that ``nan`` is the
    documented answer, not a failure. When S(t) equals 0.5 exactly from an event time t_j up to the next
    event time t_(j+1), the midpoint (t_j + t_(j+1)) / 2 is returned, as R's ``survfit`` does.
    """
    times, events, _, _ = _time_event(time, event, missing)
    if events.sum() == 0:
        return math.nan
    fit = SurvfuncRight(times, events)
    survival = np.asarray(fit.surv_prob, dtype=float)
    event_times = np.asarray(fit.surv_times, dtype=float)
    # A tolerance, because a product of fractions that is exactly 1/2 in theory is not always so in floats.
    below = np.flatnonzero(survival <= 0.5 + 1e-12)
    if below.size == 0:
        return math.nan
    first = below[0]
    if abs(survival[first] - 0.5) <= 1e-12 and first + 1 < event_times.size:
        return float((event_times[first] + event_times[first + 1]) / 2.0)
    return float(event_times[first])


@dataclass(frozen=True)
class LogrankResult:
    """Log-rank (Mantel-Haenszel) test of equal survival across groups."""

    statistic: float
    df: int
    pvalue: float
    n: int
    events: int
    n_excluded: int


def logrank_test(
    time: ArrayLike,
    event: ArrayLike,
    group: ArrayLike,
    strata: ArrayLike | None = None,
    *,
    missing: str = "raise",
) -> LogrankResult:
    """Log-rank test (chi-square, groups - 1 df), optionally stratified.

    ``group`` may hold any labels (at least two distinct values). With ``strata`` the observed-minus-
    expected sums and their variances are added over strata before forming the chi-square.

    Reference: Peto R, Peto J (1972). JRSS A 135:185-207; statsmodels ``survdiff``.
    """
    extra = {"group": _as_object_array(group, "group")}
    if strata is not None:
        extra["strata"] = _as_object_array(strata, "strata")
    times, events, clean, n_excluded = _time_event(time, event, missing, extra)
    groups = clean["group"]
    labels = pd.unique(groups)
    if labels.size < 2:
        raise ValueError(f"group must contain at least two distinct groups, got {labels.tolist()}")
    if events.sum() == 0:
        raise ValueError("event has no observed events; the log-rank test is undefined")
    codes = pd.factorize(groups)[0]
    strata_codes = pd.factorize(clean["strata"])[0] if "strata" in clean else None
    statistic, pvalue = survdiff(times, events, codes, strata=strata_codes)
    return LogrankResult(
        statistic=float(statistic),
        df=int(labels.size - 1),
        pvalue=float(pvalue),
        n=int(times.size),
        events=int(events.sum()),
        n_excluded=n_excluded,
    )


@dataclass(frozen=True)
class HazardRatio:
    """Cox proportional-hazards estimate for ``group`` vs ``reference``."""

    group: object
    reference: object
    hazard_ratio: float
    ci_lower: float
    ci_upper: float
    pvalue: float
    log_hazard_ratio: float
    se: float
    ties: str
    level: float
    n: int
    events: int
    n_excluded: int


def cox_hazard_ratio(
    time: ArrayLike,
    event: ArrayLike,
    group: ArrayLike,
    ties: str = "efron",
    reference: object = None,
    *,
    strata: ArrayLike | None = None,
    level: float = 0.95,
    missing: str = "raise",
) -> HazardRatio:
    """Hazard ratio of the non-reference group vs ``reference`` from a Cox model (statsmodels PHReg).

    Parameters
    ----------
    group : array
        Exactly two distinct labels.
    ties : {"efron", "breslow"}
        Handling of tied event times (R ``coxph`` uses Efron, SAS and Stata default to Breslow).
    reference : label, optional
        Reference group; by default the first label in sorted order.
    strata : array, optional
        Stratification variable (separate baseline hazards).

    Returns
    -------
    HazardRatio
        Wald confidence interval and Wald p-value for the log hazard ratio.

    Reference: Cox DR (1972). Regression models and life-tables. JRSS B 34:187-220.
    """
    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    level_value = check_level(level)
    extra = {"group": _as_object_array(group, "group")}
    if strata is not None:
        extra["strata"] = _as_object_array(strata, "strata")
    times, events, clean, n_excluded = _time_event(time, event, missing, extra)
    groups = clean["group"]
    labels = sorted(pd.unique(groups).tolist(), key=str)
    if len(labels) != 2:
        raise ValueError(f"group must contain exactly two groups for a hazard ratio, got {labels}")
    reference_label = labels[0] if reference is None else reference
    if reference_label not in labels:
        raise ValueError(f"reference {reference!r} is not one of the groups {labels}")
    other = labels[1] if reference_label == labels[0] else labels[0]
    if events.sum() == 0:
        raise ValueError("event has no observed events; the hazard ratio is not estimable")
    indicator = (groups == other).astype(float)[:, None]
    strata_codes = pd.factorize(clean["strata"])[0] if "strata" in clean else None
    fit = PHReg(times, indicator, status=events, ties=ties, strata=strata_codes).fit()
    log_hr = float(fit.params[0])
    se = float(fit.bse[0])
    if not (math.isfinite(log_hr) and math.isfinite(se)):
        raise ValueError("the Cox model did not converge (e.g. no events in one group)")
    z = stats.norm.isf((1.0 - level_value) / 2.0)
    return HazardRatio(
        group=other,
        reference=reference_label,
        hazard_ratio=math.exp(log_hr),
        ci_lower=math.exp(log_hr - z * se),
        ci_upper=math.exp(log_hr + z * se),
        pvalue=float(2.0 * stats.norm.sf(abs(log_hr / se))),
        log_hazard_ratio=log_hr,
        se=se,
        ties=ties,
        level=level_value,
        n=int(times.size),
        events=int(events.sum()),
        n_excluded=n_excluded,
    )
