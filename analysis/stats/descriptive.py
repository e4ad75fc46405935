"""Descriptive tables: baseline characteristics ("Table 1") and subgroup estimates for forest plots."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ._validation import apply_missing_policy, check_level, require_columns
from .efficacy import risk_difference

OVERALL = "Overall"
MISSING_CATEGORY = "Missing"


def _continuous_rows(values: pd.Series) -> dict[str, float]:
    observed = values.dropna().astype(float)
    if observed.empty:
        return {"n": 0.0, "n_missing": float(values.isna().sum())}
    return {
        "n": float(observed.size),
        "n_missing": float(values.isna().sum()),
        "mean": float(observed.mean()),
        "sd": float(observed.std(ddof=1)) if observed.size > 1 else np.nan,
        "median": float(observed.median()),
        "q1": float(observed.quantile(0.25)),
        "q3": float(observed.quantile(0.75)),
        "min": float(observed.min()),
        "max": float(observed.max()),
    }


def _validate_baseline_inputs(
    data: pd.DataFrame, arm: str, continuous_columns: list[str], categorical_columns: list[str]
) -> None:
    if not continuous_columns and not categorical_columns:
        raise ValueError("give at least one variable in continuous or categorical")
    overlap = set(continuous_columns) & set(categorical_columns)
    if overlap:
        raise ValueError(f"variables listed as both continuous and categorical: {sorted(overlap)}")
    require_columns(data, [arm, *continuous_columns, *categorical_columns])
    if data.empty:
        raise ValueError("data is empty")
    if data[arm].isna().any():
        raise ValueError(f"column {arm!r} has missing arm assignments")
    for column in continuous_columns:
        if not pd.api.types.is_numeric_dtype(data[column]) or pd.api.types.is_bool_dtype(data[column]):
            raise ValueError(f"continuous variable {column!r} must be numeric, got dtype {data[column].dtype}")


def _categorical_rows(
    values: pd.Series, column: str, groups: list[tuple[str, pd.DataFrame]]
) -> list[dict[str, object]]:
    text = values.astype("string").fillna(MISSING_CATEGORY)
    categories = sorted(set(text) - {MISSING_CATEGORY})
    if (text == MISSING_CATEGORY).any():
        categories.append(MISSING_CATEGORY)
    rows: list[dict[str, object]] = []
    for label, subset in groups:
        counts = text.loc[subset.index].value_counts()
        total = len(subset)
        for category in categories:
            count = int(counts.get(category, 0))
            for statistic, value in (("n", float(count)), ("percent", 100.0 * count / total)):
                rows.append(
                    {"variable": column, "category": category, "statistic": statistic, "group": label, "value": value}
                )
    return rows


def baseline_table(
    data: pd.DataFrame,
    *,
    arm: str = "arm",
    continuous: Sequence[str] = (),
    categorical: Sequence[str] = (),
    overall: bool = True,
) -> pd.DataFrame:
    """Baseline characteristics by arm and overall, in long ("tidy") format.

    Parameters
    ----------
    data : DataFrame
        One row per participant with the ``arm`` column and the listed variables.
    continuous : sequence of str
        Numeric variables: n, n_missing, mean, sd, median, q1, q3 (quartiles by linear interpolation, as
        R's default ``quantile`` type 7), min, max.
    categorical : sequence of str
        Categorical variables: n and percent per category. Percentages use all participants of the arm as
        denominator; missing values form their own ``"Missing"`` category so that columns add up.

    Returns
    -------
    pandas.DataFrame
        Columns ``variable, category, statistic, group, value``; ``category`` is empty for continuous
        variables and ``group`` is an arm label or ``"Overall"``. Missing values are never dropped silently:
        they are counted in ``n_missing`` or in the ``"Missing"`` category. The standard deviation of a
        single observation is NaN (undefined).
    """
    continuous_columns = [continuous] if isinstance(continuous, str) else list(continuous)
    categorical_columns = [categorical] if isinstance(categorical, str) else list(categorical)
    _validate_baseline_inputs(data, arm, continuous_columns, categorical_columns)
    groups: list[tuple[str, pd.DataFrame]] = [(str(label), rows) for label, rows in data.groupby(data[arm].astype(str))]
    if overall:
        groups.append((OVERALL, data))
    rows = []
    for column in continuous_columns:
        for label, subset in groups:
            for statistic, value in _continuous_rows(subset[column]).items():
                rows.append(
                    {
                        "variable": column,
                        "category": "",
                        "statistic": statistic,
                        "group": label,
                        "value": value,
                    }
                )
    for column in categorical_columns:
        rows.extend(_categorical_rows(data[column], column, groups))
    return pd.DataFrame(rows, columns=["variable", "category", "statistic", "group", "value"])


def subgroup_estimates(
    data: pd.DataFrame,
    *,
    outcome: str,
    subgroups: Sequence[str],
    treatment: str,
    reference: str,
    arm: str = "arm",
    outcome_type: str = "continuous",
    level: float = 0.95,
    missing: str = "raise",
) -> pd.DataFrame:
    """Treatment effect within each level of each subgroup variable, for a forest plot.

    Parameters
    ----------
    outcome_type : {"continuous", "binary"}
        Continuous: difference in means (``treatment`` minus ``reference``) with a pooled-variance t
        interval. Binary (0/1 outcome): risk difference with the Newcombe hybrid score interval.

    Returns
    -------
    pandas.DataFrame
        Columns ``subgroup, level, n_treatment, n_reference, estimate, ci_lower, ci_upper, se,
        heterogeneity_pvalue``. The heterogeneity p-value (one per subgroup variable, repeated on its rows)
        is Cochran's Q test that the subgroup effects are equal, using the normal-approximation standard
        errors; it is the usual forest-plot interaction test and, like any subgroup test, has low power.
        Levels with fewer than two participants in an arm are reported with NaN estimates (not estimable).
    """
    level_value = check_level(level)
    if outcome_type not in ("continuous", "binary"):
        raise ValueError(f"outcome_type must be 'continuous' or 'binary', got {outcome_type!r}")
    subgroup_columns = [subgroups] if isinstance(subgroups, str) else list(subgroups)
    if not subgroup_columns:
        raise ValueError("subgroups must name at least one column")
    frame, n_excluded = apply_missing_policy(data, [outcome, arm, *subgroup_columns], missing)
    arm_text = frame[arm].astype(str)
    for label in (treatment, reference):
        if label not in set(arm_text):
            raise ValueError(f"arm {label!r} not found in column {arm!r}")
    frame = frame.loc[arm_text.isin([treatment, reference])]
    arm_text = arm_text.loc[frame.index]
    values = frame[outcome]
    if outcome_type == "binary" and not set(pd.unique(values).tolist()) <= {0, 1}:
        raise ValueError(f"column {outcome!r} must be coded 0/1 for a binary outcome")
    if not pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        raise ValueError(f"column {outcome!r} must be numeric")
    values = values.astype(float)
    rows: list[dict[str, object]] = []
    for column in subgroup_columns:
        block: list[dict[str, object]] = []
        for level_label, rows_in_level in frame.groupby(frame[column].astype(str), sort=True):
            treated = values.loc[rows_in_level.index][arm_text.loc[rows_in_level.index] == treatment]
            control = values.loc[rows_in_level.index][arm_text.loc[rows_in_level.index] == reference]
            estimate = lower = upper = se = np.nan
            if outcome_type == "continuous" and treated.size >= 2 and control.size >= 2:
                df = treated.size + control.size - 2
                pooled = ((treated.size - 1) * treated.var() + (control.size - 1) * control.var()) / df
                se = float(np.sqrt(pooled * (1.0 / treated.size + 1.0 / control.size)))
                estimate = float(treated.mean() - control.mean())
                quantile = float(stats.t.isf((1.0 - level_value) / 2.0, df))
                lower, upper = estimate - quantile * se, estimate + quantile * se
            elif outcome_type == "binary" and treated.size >= 1 and control.size >= 1:
                difference = risk_difference(
                    int(treated.sum()), treated.size, int(control.sum()), control.size, level=level_value
                )
                estimate, lower, upper = difference.estimate, difference.ci_lower, difference.ci_upper
                p1, p2 = difference.proportion1, difference.proportion2
                se = float(np.sqrt(p1 * (1 - p1) / treated.size + p2 * (1 - p2) / control.size))
            block.append(
                {
                    "subgroup": column,
                    "level": level_label,
                    "n_treatment": int(treated.size),
                    "n_reference": int(control.size),
                    "estimate": estimate,
                    "ci_lower": lower,
                    "ci_upper": upper,
                    "se": se,
                }
            )
        estimates = np.array([row["estimate"] for row in block], dtype=float)
        errors = np.array([row["se"] for row in block], dtype=float)
        usable = np.isfinite(estimates) & (errors > 0)
        heterogeneity = np.nan
        if usable.sum() >= 2:
            weights = 1.0 / errors[usable] ** 2
            pooled_estimate = float(np.sum(weights * estimates[usable]) / weights.sum())
            q_statistic = float(np.sum(weights * (estimates[usable] - pooled_estimate) ** 2))
            heterogeneity = float(stats.chi2.sf(q_statistic, int(usable.sum()) - 1))
        rows.extend({**row, "heterogeneity_pvalue": heterogeneity} for row in block)
    table = pd.DataFrame(rows)
    table.attrs["n_excluded"] = n_excluded
    return table
