"""Kaplan-Meier, log-rank and Cox on the Freireich/Gehan 6-MP remission data (results/gehan_6mp.csv)."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.stats.survival import cox_hazard_ratio, kaplan_meier, logrank_test, median_survival

RESULTS = Path(__file__).parent / "results"


@pytest.fixture(scope="module")
def gehan():
    return pd.read_csv(RESULTS / "gehan_6mp.csv", comment="#")


def test_kaplan_meier_6mp_matches_textbook_table(gehan):
    six_mp = gehan[gehan["group"] == "6-MP"]
    table = kaplan_meier(six_mp["weeks"], six_mp["relapse"])
    # Kleinbaum & Klein (2012), Survival Analysis: A Self-Learning Text, 3rd ed., ch. 2, KM table for the
    # 6-MP group: t(j) = 6, 7, 10, 13, 16, 22, 23; n(j) = 21, 17, 15, 12, 11, 7, 6;
    # m(j) = 3, 1, 1, 1, 1, 1, 1; S(t(j)) = .8571, .8067, .7529, .6902, .6275, .5378, .4482.
    assert table["time"].tolist() == [6, 7, 10, 13, 16, 22, 23]
    assert table["at_risk"].tolist() == [21, 17, 15, 12, 11, 7, 6]
    assert table["events"].tolist() == [3, 1, 1, 1, 1, 1, 1]
    assert np.allclose(table["survival"], [0.8571, 0.8067, 0.7529, 0.6902, 0.6275, 0.5378, 0.4482], atol=5e-5)
    assert table.attrs["n_excluded"] == 0


def test_kaplan_meier_greenwood_and_log_log_limits_match_stata(gehan):
    placebo = gehan[gehan["group"] == "placebo"]
    table = kaplan_meier(placebo["weeks"], placebo["relapse"]).iloc[:2]
    # G. Rodriguez, "Kaplan-Meier survival" (Princeton, data.princeton.edu/eco572/KaplanMeier.html), Stata
    # `sts list, by(group)` for the control group (Greenwood SE, log-log 95% CI, Stata's default):
    #   time 1: 21 at risk, 2 fail, S 0.9048, SE 0.0641, CI 0.6700 0.9753
    #   time 2: 19 at risk, 2 fail, S 0.8095, SE 0.0857, CI 0.5689 0.9239
    assert table["at_risk"].tolist() == [21, 19]
    assert np.allclose(table["survival"], [0.9048, 0.8095], atol=5e-5)
    assert np.allclose(table["std_error"], [0.0641, 0.0857], atol=5e-5)
    assert np.allclose(table["ci_lower"], [0.6700, 0.5689], atol=5e-5)
    assert np.allclose(table["ci_upper"], [0.9753, 0.9239], atol=5e-5)


def test_median_survival(gehan):
    six_mp = gehan[gehan["group"] == "6-MP"]
    placebo = gehan[gehan["group"] == "placebo"]
    # Kleinbaum & Klein (2012) ch. 2: median remission 23 weeks (6-MP) and 8 weeks (placebo).
    assert median_survival(six_mp["weeks"], six_mp["relapse"]) == 23
    assert median_survival(placebo["weeks"], placebo["relapse"]) == 8
    # S drops to exactly 0.5 at t=2 and stays until t=3: R's survfit reports the midpoint 2.5.
    assert median_survival([1, 2, 3, 4], [1, 1, 1, 1]) == 2.5
    # Not reached: 1 event in 5 leaves S = 0.8; NaN is the documented answer.
    assert math.isnan(median_survival([1, 2, 3, 4, 5], [1, 0, 0, 0, 0]))


def test_logrank_remission_data(gehan):
    result = logrank_test(gehan["weeks"], gehan["relapse"], gehan["group"])
    # Kleinbaum & Klein (2012) ch. 2: log-rank chi-square = 16.79 (1 df) for the remission data;
    # R survdiff(Surv(time, cens) ~ treat, data = MASS::gehan) prints Chisq = 16.8 on 1 df, p = 4e-05.
    assert result.statistic == pytest.approx(16.79, abs=0.005)
    assert result.df == 1
    assert result.pvalue == pytest.approx(4.17e-5, rel=0.01)
    assert (result.n, result.events) == (42, 30)


def test_stratified_logrank_with_one_stratum_equals_unstratified(gehan):
    plain = logrank_test(gehan["weeks"], gehan["relapse"], gehan["group"])
    one_stratum = logrank_test(gehan["weeks"], gehan["relapse"], gehan["group"], strata=["all"] * len(gehan))
    assert one_stratum.statistic == pytest.approx(plain.statistic, rel=1e-12)


def test_stratified_logrank_adds_stratum_contributions(gehan):
    # Stratify by an arbitrary split: the statistic must be (sum O-E)^2 / sum V over the strata.
    strata = np.where(np.arange(len(gehan)) % 2 == 0, "a", "b")
    stratified = logrank_test(gehan["weeks"], gehan["relapse"], gehan["group"], strata=strata)
    observed_minus_expected, variance = 0.0, 0.0
    for label in ("a", "b"):
        part = gehan[strata == label]
        for time in np.unique(part.loc[part["relapse"] == 1, "weeks"]):
            at_risk = part[part["weeks"] >= time]
            deaths = at_risk[(at_risk["weeks"] == time) & (at_risk["relapse"] == 1)]
            n, d = len(at_risk), len(deaths)
            n1 = (at_risk["group"] == "6-MP").sum()
            d1 = (deaths["group"] == "6-MP").sum()
            observed_minus_expected += d1 - d * n1 / n
            if n > 1:
                variance += d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1)
    assert stratified.statistic == pytest.approx(observed_minus_expected**2 / variance, rel=1e-10)


def test_cox_breslow_matches_stata(gehan):
    result = cox_hazard_ratio(gehan["weeks"], gehan["relapse"], gehan["group"], ties="breslow", reference="placebo")
    # G. Rodriguez, "Cox regression analysis of the Gehan data" (Princeton WWS 509), Stata `stcox treated`
    # (Breslow ties): Haz. Ratio .2210887, 95% CI .0990706 to .4933877; i.e. placebo vs 6-MP 4.523.
    assert result.group == "6-MP"
    assert result.hazard_ratio == pytest.approx(0.2210887, abs=5e-7)
    assert result.ci_lower == pytest.approx(0.0990706, abs=5e-7)
    assert result.ci_upper == pytest.approx(0.4933877, abs=5e-7)


def test_cox_efron_matches_r_coxph(gehan):
    result = cox_hazard_ratio(gehan["weeks"], gehan["relapse"], gehan["group"], reference="6-MP")
    # Venables & Ripley (2002), MASS 4th ed., section 13.3: coxph(Surv(time, cens) ~ treat, data = gehan)
    # (Efron ties): coef 1.57, exp(coef) 4.82, se(coef) 0.412, z 3.81, p 0.00014 for control vs 6-MP.
    assert result.group == "placebo"
    assert result.hazard_ratio == pytest.approx(4.82, abs=0.005)
    assert result.log_hazard_ratio == pytest.approx(1.572, abs=5e-4)
    assert result.se == pytest.approx(0.412, abs=5e-4)
    assert result.pvalue == pytest.approx(0.00014, abs=5e-6)
    assert result.ties == "efron"


def test_missing_values_raise_or_are_counted(gehan):
    times = gehan["weeks"].astype(float).copy()
    times.iloc[0] = np.nan
    with pytest.raises(ValueError, match="missing"):
        kaplan_meier(times, gehan["relapse"])
    dropped = logrank_test(times, gehan["relapse"], gehan["group"], missing="drop")
    assert dropped.n_excluded == 1
    assert dropped.n == 41
    table = kaplan_meier(times, gehan["relapse"], missing="drop")
    assert table.attrs["n_excluded"] == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: kaplan_meier([1, -2, 3], [1, 0, 1]), "non-negative"),
        (lambda: kaplan_meier([1, 2, 3], [1, 2, 1]), "0/1"),
        (lambda: kaplan_meier([1, 2], [1, 0, 1]), "same length"),
        (lambda: kaplan_meier([], []), "empty"),
        (lambda: logrank_test([1, 2, 3], [1, 1, 0], ["a", "a", "a"]), "at least two"),
        (lambda: logrank_test([1, 2, 3], [0, 0, 0], ["a", "b", "a"]), "no observed events"),
        (lambda: cox_hazard_ratio([1, 2, 3], [1, 1, 0], ["a", "b", "c"]), "exactly two"),
        (lambda: cox_hazard_ratio([1, 2, 3], [1, 1, 0], ["a", "b", "a"], ties="exact"), "ties"),
        (lambda: cox_hazard_ratio([1, 2, 3], [1, 1, 0], ["a", "b", "a"], reference="z"), "reference"),
        (lambda: kaplan_meier([1, 2, 3], [1, 0, 1], missing="ignore"), "missing must be"),
    ],
)
def test_invalid_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    data=st.lists(
        st.tuples(st.integers(0, 50), st.integers(0, 1)),
        min_size=1,
        max_size=80,
    )
)
def test_kaplan_meier_is_a_non_increasing_probability(data):
    times = [time for time, _ in data]
    events = [event for _, event in data]
    table = kaplan_meier(times, events)
    survival = table["survival"].to_numpy()
    assert ((survival >= 0) & (survival <= 1)).all()
    assert (np.diff(survival) <= 1e-15).all()
    assert (table["ci_lower"] <= survival + 1e-12).all()
    assert (table["ci_upper"] >= survival - 1e-12).all()
    assert ((table["ci_lower"] >= 0) & (table["ci_upper"] <= 1)).all()
    assert table["events"].sum() == sum(events)
