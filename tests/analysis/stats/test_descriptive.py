"""Baseline table and subgroup estimates."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.stats.descriptive import MISSING_CATEGORY, OVERALL, baseline_table, subgroup_estimates
from analysis.stats.efficacy import risk_difference

RESULTS = Path(__file__).parent / "results"


@pytest.fixture(scope="module")
def anorexia():
    return pd.read_csv(RESULTS / "anorexia.csv", comment="#")


def _value(table, **keys):
    mask = np.ones(len(table), dtype=bool)
    for column, value in keys.items():
        mask &= table[column] == value
    assert mask.sum() == 1, keys
    return table.loc[mask, "value"].iloc[0]


def test_baseline_table_continuous(anorexia):
    table = baseline_table(anorexia, arm="Treat", continuous=["Prewt"])
    cont = anorexia.loc[anorexia["Treat"] == "Cont", "Prewt"]
    assert _value(table, variable="Prewt", statistic="n", group="Cont") == 26
    assert _value(table, variable="Prewt", statistic="mean", group="Cont") == pytest.approx(cont.mean())
    assert _value(table, variable="Prewt", statistic="sd", group="Cont") == pytest.approx(cont.std(ddof=1))
    # R's default quantile (type 7) is numpy's linear interpolation.
    assert _value(table, variable="Prewt", statistic="q1", group="Cont") == pytest.approx(np.percentile(cont, 25))
    assert _value(table, variable="Prewt", statistic="n", group=OVERALL) == 72
    assert _value(table, variable="Prewt", statistic="max", group=OVERALL) == 94.9  # MASS::anorexia max Prewt


def test_baseline_table_categorical_keeps_missing_as_category():
    data = pd.DataFrame({"arm": ["a", "a", "a", "b"], "sex": ["F", "M", None, "F"], "age": [30.0, np.nan, 50.0, 41.0]})
    table = baseline_table(data, continuous=["age"], categorical=["sex"])
    assert _value(table, variable="sex", category=MISSING_CATEGORY, statistic="n", group="a") == 1
    shares = table[(table["variable"] == "sex") & (table["statistic"] == "percent") & (table["group"] == "a")]
    assert shares["value"].sum() == pytest.approx(100.0)
    assert _value(table, variable="age", statistic="n_missing", group="a") == 1
    assert _value(table, variable="age", statistic="n", group="a") == 2


def test_baseline_table_rejects_bad_input():
    data = pd.DataFrame({"arm": ["a", None], "age": [1.0, 2.0]})
    with pytest.raises(ValueError, match="missing arm"):
        baseline_table(data, continuous=["age"])
    with pytest.raises(ValueError, match="at least one variable"):
        baseline_table(data)
    with pytest.raises(ValueError, match="must be numeric"):
        baseline_table(pd.DataFrame({"arm": ["a"], "sex": ["F"]}), continuous=["sex"])


def test_subgroup_estimates_continuous(repeated_measures_trial):
    week12 = repeated_measures_trial[repeated_measures_trial["visit"] == "week 12"]
    table = subgroup_estimates(week12, outcome="value", subgroups=["region"], treatment="active", reference="placebo")
    eu = table[table["level"] == "EU"].iloc[0]
    rows = week12[week12["region"] == "EU"]
    treated = rows.loc[rows["arm"] == "active", "value"]
    control = rows.loc[rows["arm"] == "placebo", "value"]
    assert eu["estimate"] == pytest.approx(treated.mean() - control.mean())
    welch_free = stats.ttest_ind(treated, control, equal_var=True)
    assert eu["estimate"] / eu["se"] == pytest.approx(welch_free.statistic)
    assert 0 <= eu["heterogeneity_pvalue"] <= 1
    assert (table["heterogeneity_pvalue"] == table["heterogeneity_pvalue"].iloc[0]).all()


def test_subgroup_estimates_binary_and_identical_subgroups():
    data = pd.DataFrame(
        {
            "arm": ["t"] * 20 + ["c"] * 20 + ["t"] * 20 + ["c"] * 20,
            "response": ([1] * 12 + [0] * 8 + [1] * 6 + [0] * 14) * 2,
            "sex": ["F"] * 40 + ["M"] * 40,
        }
    )
    table = subgroup_estimates(
        data, outcome="response", subgroups="sex", treatment="t", reference="c", outcome_type="binary"
    )
    expected = risk_difference(12, 20, 6, 20)
    female = table[table["level"] == "F"].iloc[0]
    assert (female["estimate"], female["ci_lower"], female["ci_upper"]) == pytest.approx(
        (expected.estimate, expected.ci_lower, expected.ci_upper)
    )
    assert table["heterogeneity_pvalue"].iloc[0] == pytest.approx(1.0)  # identical subgroups: Q = 0


def test_subgroup_estimates_rejects_bad_input():
    data = pd.DataFrame({"arm": ["t", "c"], "y": [1.0, 2.0], "sex": ["F", "M"]})
    with pytest.raises(ValueError, match="arm 'x' not found"):
        subgroup_estimates(data, outcome="y", subgroups=["sex"], treatment="x", reference="c")
    with pytest.raises(ValueError, match="coded 0/1"):
        subgroup_estimates(data, outcome="y", subgroups=["sex"], treatment="t", reference="c", outcome_type="binary")
