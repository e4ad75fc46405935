"""Efficacy analyses against textbook / R-documented values and exact identities."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.regression.linear_model import OLS
from statsmodels.regression.mixed_linear_model import MixedLM

from analysis.stats.efficacy import (
    ancova,
    cmh_test,
    fisher_exact_pvalue,
    fisher_exact_test,
    logistic_odds_ratio,
    mixed_model_repeated_measures,
    random_intercept_reml,
    rate_ratio,
    risk_difference,
    stratified_tables,
    wilson_interval,
)

RESULTS = Path(__file__).parent / "results"


@pytest.fixture(scope="module")
def anorexia():
    data = pd.read_csv(RESULTS / "anorexia.csv", comment="#")
    return data.assign(change=data["Postwt"] - data["Prewt"])


# ------------------------------------------------------------------------------------------ ANCOVA


def test_ancova_matches_mass_anorexia_analysis(anorexia):
    result = ancova(anorexia, reference="CBT", arm="Treat", outcome="change", baseline="Prewt")
    # Venables & Ripley (2002), Modern Applied Statistics with S, 4th ed., example `anorex.1`:
    # glm(Postwt ~ Prewt + Treat + offset(Prewt), family = gaussian, data = anorexia) with CBT as baseline:
    # TreatCont -4.097 (SE 1.893, p 0.034), TreatFT 4.563 (SE 2.133, p 0.036), Prewt -0.5655.
    cont = result.contrast("Cont")
    family = result.contrast("FT")
    assert cont.estimate == pytest.approx(-4.097, abs=5e-4)
    assert cont.se == pytest.approx(1.893, abs=5e-4)
    assert cont.pvalue == pytest.approx(0.034, abs=5e-4)
    assert family.estimate == pytest.approx(4.563, abs=5e-4)
    assert family.se == pytest.approx(2.133, abs=5e-4)
    assert family.pvalue == pytest.approx(0.036, abs=5e-4)
    assert result.details["baseline_coefficient"] == pytest.approx(-0.5655, abs=5e-5)
    assert (cont.n, cont.n_reference, family.n) == (26, 29, 17)  # group sizes of MASS::anorexia
    assert result.details["residual_df"] == 68
    quantile = stats.t.isf(0.025, 68)
    assert cont.ci_lower == pytest.approx(cont.estimate - quantile * cont.se)


def test_ancova_change_and_post_value_give_the_same_arm_effect(anorexia):
    on_change = ancova(anorexia, reference="Cont", arm="Treat", outcome="change", baseline="Prewt")
    on_post = ancova(anorexia, reference="Cont", arm="Treat", outcome="Postwt", baseline="Prewt")
    for arm in ("CBT", "FT"):
        assert on_change.contrast(arm).estimate == pytest.approx(on_post.contrast(arm).estimate, rel=1e-10)
        assert on_change.contrast(arm).se == pytest.approx(on_post.contrast(arm).se, rel=1e-10)
    assert on_change.to_frame()["arm"].tolist() == ["CBT", "FT"]


def test_ancova_strata_missing_values_and_collinearity(anorexia):
    data = anorexia.assign(site=np.where(np.arange(len(anorexia)) % 3 == 0, "A", "B"))
    adjusted = ancova(data, reference="Cont", arm="Treat", baseline="Prewt", strata=["site"])
    assert adjusted.n_used == 72
    data.loc[5, "Prewt"] = np.nan
    with pytest.raises(ValueError, match="missing values in \\['Prewt'\\]"):
        ancova(data, reference="Cont", arm="Treat", baseline="Prewt")
    dropped = ancova(data, reference="Cont", arm="Treat", baseline="Prewt", missing="drop")
    assert (dropped.n_used, dropped.n_excluded) == (71, 1)
    with pytest.raises(ValueError, match="not estimable"):
        ancova(
            anorexia.assign(copy=anorexia["Treat"]),
            reference="Cont",
            arm="Treat",
            baseline="Prewt",
            strata="copy",
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(reference="Placebo"), "reference arm 'Placebo' not found"),
        (dict(reference="Cont", outcome="nope"), "missing required column"),
        (dict(reference="Cont", baseline="Treat"), "must be numeric"),
    ],
)
def test_ancova_rejects_bad_input(anorexia, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ancova(anorexia, **{"arm": "Treat", "baseline": "Prewt", **kwargs})


def test_ancova_single_arm_is_rejected(anorexia):
    with pytest.raises(ValueError, match="single arm"):
        ancova(anorexia[anorexia["Treat"] == "Cont"], reference="Cont", arm="Treat", baseline="Prewt")


# ------------------------------------------------------------------------------------------ MMRM


def test_mixed_model_equals_per_visit_ancova_on_complete_data(repeated_measures_trial):
    # With complete, balanced data and the same regressors at every visit, GLS equals per-visit OLS (Zellner's
    # seemingly-unrelated-regressions identity), so the arm effect at the primary visit is exactly the ANCOVA
    # estimate at that visit, whatever the fitted covariance.
    mixed = mixed_model_repeated_measures(repeated_measures_trial, reference="placebo", primary_visit="week 12")
    week12 = repeated_measures_trial[repeated_measures_trial["visit"] == "week 12"]
    per_visit = ancova(week12, reference="placebo", outcome="value")
    assert mixed.contrast("active").estimate == pytest.approx(per_visit.contrast("active").estimate, abs=1e-6)


def test_mixed_model_recovers_true_effect_with_missed_visits(repeated_measures_trial):
    rng = np.random.default_rng(5)
    data = repeated_measures_trial.copy()
    later_visit = data["visit"] != "week 4"
    data.loc[later_visit & (rng.uniform(size=len(data)) < 0.25), "value"] = np.nan
    result = mixed_model_repeated_measures(data, reference="placebo", primary_visit="week 12", strata=["region"])
    effect = result.contrast("active")
    true_effect = repeated_measures_trial.attrs["true_effect_week_12"]
    assert effect.ci_lower < true_effect < effect.ci_upper
    assert effect.se < 1.0
    assert result.details["n_missed_visits"] == data["value"].isna().sum()
    # Participants with missed visits stay in the model: everybody still has the week-4 value.
    assert result.details["n_participants"] == data["participant_id"].nunique()
    assert effect.n + effect.n_reference == data.loc[data["visit"] == "week 12", "value"].notna().sum()
    # Week-4 contrast from the same model structure is near the simulated 1.0.
    week4 = mixed_model_repeated_measures(data, reference="placebo", primary_visit="week 4")
    assert week4.contrast("active").ci_lower < 1.0 < week4.contrast("active").ci_upper


def test_mixed_model_rejects_bad_input(repeated_measures_trial):
    with pytest.raises(ValueError, match="primary_visit"):
        mixed_model_repeated_measures(repeated_measures_trial, reference="placebo", primary_visit="week 52")
    duplicated = pd.concat([repeated_measures_trial, repeated_measures_trial.iloc[:1]])
    with pytest.raises(ValueError, match="more than one row"):
        mixed_model_repeated_measures(duplicated, reference="placebo", primary_visit="week 12")
    broken = repeated_measures_trial.copy()
    broken.loc[0, "baseline"] = np.nan
    with pytest.raises(ValueError, match="missing values"):
        mixed_model_repeated_measures(broken, reference="placebo", primary_visit="week 12")


def _missed_visits_design(trial: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(5)
    data = trial.copy()
    data.loc[(data["visit"] != "week 4") & (rng.uniform(size=len(data)) < 0.25), "value"] = np.nan
    data = data.dropna(subset=["value"])
    design = pd.get_dummies(data[["visit", "arm", "region"]], drop_first=True, dtype=float)
    design.insert(0, "const", 1.0)
    design["baseline"] = data["baseline"]
    design["arm:week 4"] = design["visit_week 4"] * design["arm_placebo"]
    design["arm:week 8"] = design["visit_week 8"] * design["arm_placebo"]
    return data, design


def test_random_intercept_reml_matches_statsmodels_mixedlm(repeated_measures_trial):
    data, design = _missed_visits_design(repeated_measures_trial)
    reference = MixedLM(data["value"], design, groups=data["participant_id"]).fit(reml=True)
    fit = random_intercept_reml(data["value"].to_numpy(), design.to_numpy(), data["participant_id"].to_numpy())
    assert fit.n_groups == data["participant_id"].nunique()
    np.testing.assert_allclose(fit.coefficients, reference.fe_params.to_numpy(), atol=1e-5)
    assert fit.random_intercept_variance == pytest.approx(float(reference.cov_re.iloc[0, 0]), rel=1e-4)
    assert fit.residual_variance == pytest.approx(reference.scale, rel=1e-4)
    # Model-based GLS standard errors at MixedLM's own variance estimates, written out group by group.
    gamma = float(reference.cov_re.iloc[0, 0]) / reference.scale
    information = np.zeros((design.shape[1], design.shape[1]))
    for _, rows in design.groupby(data["participant_id"]):
        block = rows.to_numpy()
        inverse_v = np.eye(len(block)) - gamma / (1.0 + len(block) * gamma)
        information += block.T @ inverse_v @ block
    gls_se = np.sqrt(np.diag(reference.scale * np.linalg.inv(information)))
    np.testing.assert_allclose(fit.standard_errors, gls_se, rtol=1e-4)
    # MixedLM's observed information also carries fixed-by-variance cross terms: same to 3 digits.
    np.testing.assert_allclose(fit.standard_errors, reference.bse_fe.to_numpy(), rtol=2e-3)


def test_random_intercept_reml_on_the_boundary_is_ordinary_least_squares():
    # Each participant's values are centred on their own mean plus the covariate effect, so the
    # within-participant correlation is negative and the REML variance of the intercept sits at zero.
    rng = np.random.default_rng(11)
    participants = np.repeat(np.arange(60), 3)
    x = rng.normal(size=len(participants))
    noise = rng.normal(size=len(participants))
    noise -= pd.Series(noise).groupby(participants).transform("mean").to_numpy()
    y = 2.0 + 0.5 * x + noise
    design = np.column_stack([np.ones_like(x), x])
    fit = random_intercept_reml(y, design, participants)
    ols = OLS(y, design).fit()
    assert fit.random_intercept_variance == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(fit.coefficients, ols.params, atol=1e-6)
    np.testing.assert_allclose(fit.standard_errors, ols.bse, rtol=1e-4)


def test_random_intercept_reml_rejects_collinear_or_too_small_designs():
    participants = np.repeat(np.arange(10), 2)
    x = np.arange(20, dtype=float)
    with pytest.raises(ValueError, match="not estimable"):
        random_intercept_reml(x, np.column_stack([np.ones(20), x, 2 * x]), participants)
    with pytest.raises(ValueError, match="not estimable"):
        random_intercept_reml(x, np.column_stack([np.ones(20), np.zeros(20)]), participants)
    with pytest.raises(ValueError, match="too few observations"):
        random_intercept_reml(x[:2], np.column_stack([np.ones(2), x[:2]]), participants[:2])
    with pytest.raises(ValueError, match="one row each"):
        random_intercept_reml(x[:-1], np.column_stack([np.ones(20), x]), participants)
    with pytest.raises(ValueError, match="finite"):
        random_intercept_reml(np.where(x == 3, np.nan, x), np.column_stack([np.ones(20), x]), participants)


# ------------------------------------------------------------------------------------------ binary


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ((56, 70, 48, 80), (0.0524, 0.3339)),  # Newcombe (1998) Table II example (a), method 10
        ((9, 10, 3, 10), (0.1705, 0.8090)),  # Newcombe (1998) Table II example (b), method 10
        ((5, 56, 0, 29), (-0.0381, 0.1926)),  # example (d); also petelaud/ratesci tests/testthat/test3.R
        ((0, 10, 0, 20), (-0.1611, 0.2775)),  # Newcombe (1998) Table II example (e), method 10
        ((0, 10, 0, 10), (-0.2775, 0.2775)),  # Newcombe (1998) Table II example (f), method 10
        ((10, 10, 0, 20), (0.6791, 1.0000)),  # Newcombe (1998) Table II example (g), method 10
        ((10, 10, 0, 10), (0.6075, 1.0000)),  # Newcombe (1998) Table II example (h), method 10
    ],
)
def test_newcombe_hybrid_score_interval(counts, expected):
    result = risk_difference(*counts)
    assert result.estimate == pytest.approx(counts[0] / counts[1] - counts[2] / counts[3])
    assert (result.ci_lower, result.ci_upper) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize(
    ("x", "n", "expected"),
    [
        (15, 148, (0.0624, 0.1605)),  # Newcombe (1998b) single-proportion examples, via ratesci test3.R
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
    ],
)
def test_wilson_interval_from_statsmodels_matches_newcombe(x, n, expected):
    assert wilson_interval(x, n) == pytest.approx(expected, abs=5e-5)


def test_wald_risk_difference():
    result = risk_difference(56, 70, 48, 80, method="wald")
    half = stats.norm.isf(0.025) * math.sqrt(0.8 * 0.2 / 70 + 0.6 * 0.4 / 80)
    assert (result.ci_lower, result.ci_upper) == pytest.approx((0.2 - half, 0.2 + half))
    # Newcombe (1998) Table II example (a), method 1 (Wald): 0.0575 to 0.3425
    assert (result.ci_lower, result.ci_upper) == pytest.approx((0.0575, 0.3425), abs=5e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((11, 10, 3, 10), "cannot exceed"),
        ((1, 0, 3, 10), "n1 must be at least 1"),
        ((1.5, 10, 3, 10), "whole number"),
        ((1, 10, 3, 10, "exact"), "method must be"),
    ],
)
def test_risk_difference_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        risk_difference(*args)


def test_fisher_exact_tea_tasting():
    # R ?fisher.test, TeaTasting (3 of 4 milk-first cups identified): two-sided p-value = 0.4857,
    # conditional MLE odds ratio 6.408309; alternative = "greater": p-value = 0.2429, 95% CI 0.3135693 to Inf.
    two_sided = fisher_exact_test(3, 4, 1, 4)
    assert two_sided.pvalue == pytest.approx(0.4857, abs=5e-5)
    assert two_sided.odds_ratio == pytest.approx(6.408309, rel=1e-4)
    greater = fisher_exact_test(3, 4, 1, 4, alternative="greater")
    assert greater.pvalue == pytest.approx(0.2429, abs=5e-5)
    assert greater.ci_lower == pytest.approx(0.3135693, rel=1e-4)
    assert math.isinf(greater.ci_upper)


def test_fisher_exact_pvalue_alone_is_the_tests_pvalue():
    # R: fisher.test(matrix(c(3, 1, 1, 3), 2))$p.value = 0.4857; alternative = "greater": 0.2429.
    assert fisher_exact_pvalue(3, 4, 1, 4) == pytest.approx(0.4857, abs=5e-5)
    assert (
        fisher_exact_pvalue(3, 4, 1, 4, alternative="greater")
        == fisher_exact_test(3, 4, 1, 4, alternative="greater").pvalue
    )
    # Thousands per arm (a 10 000-participant trial) stay fast and agree with the full test.
    assert fisher_exact_pvalue(1400, 3300, 1100, 3350) == fisher_exact_test(1400, 3300, 1100, 3350).pvalue
    with pytest.raises(ValueError, match="alternative"):
        fisher_exact_pvalue(3, 4, 1, 4, alternative="both")
    with pytest.raises(ValueError, match="x1"):
        fisher_exact_pvalue(5, 4, 1, 4)


RABBITS = np.array(  # R ?mantelhaen.test, Rabbits: rows Delay (None, 1.5h), columns Response (Cured, Died)
    [
        [[0, 6], [0, 5]],  # penicillin level 1/8
        [[3, 3], [0, 6]],  # 1/4
        [[6, 0], [2, 4]],  # 1/2
        [[5, 1], [6, 0]],  # 1
        [[2, 0], [5, 0]],  # 4
    ]
)


def test_cmh_matches_r_mantelhaen_rabbits():
    result = cmh_test(RABBITS, correction=True)
    # R ?mantelhaen.test: Mantel-Haenszel X-squared = 3.9286, df = 1, p-value = 0.04747;
    # common odds ratio 7, 95 percent CI 1.026713 47.725133.
    assert result.statistic == pytest.approx(3.9286, abs=5e-5)
    assert result.pvalue == pytest.approx(0.04747, abs=5e-6)
    assert result.common_odds_ratio == pytest.approx(7.0)
    assert (result.ci_lower, result.ci_upper) == pytest.approx((1.026713, 47.725133), abs=5e-6)
    assert result.breslow_day_pvalue is None  # empty cells: Breslow-Day undefined, reported as None
    uncorrected = cmh_test(RABBITS)
    assert uncorrected.statistic > result.statistic


def test_stratified_tables_from_participant_rows():
    rows = []
    for stratum, table in enumerate(RABBITS):
        for row_index, delay in enumerate(("None", "1.5h")):
            cured, died = table[row_index]
            rows += [{"level": stratum, "delay": delay, "cured": 1}] * int(cured)
            rows += [{"level": stratum, "delay": delay, "cured": 0}] * int(died)
    tables, n_excluded = stratified_tables(
        pd.DataFrame(rows), outcome="cured", arm="delay", stratum="level", treatment="None", reference="1.5h"
    )
    assert n_excluded == 0
    assert np.array_equal(tables, RABBITS)


def test_cmh_rejects_bad_tables():
    with pytest.raises(ValueError, match="shape"):
        cmh_test(np.ones((2, 3, 2)))
    with pytest.raises(ValueError, match="non-negative whole counts"):
        cmh_test(-RABBITS)


def test_logistic_odds_ratio_without_strata_equals_sample_odds_ratio():
    # Unadjusted logistic regression reproduces the 2x2 odds ratio ad/bc and Woolf's SE sqrt(1/a+1/b+1/c+1/d).
    a, b, c, d = 30, 20, 18, 32
    data = pd.DataFrame(
        {
            "arm": ["active"] * (a + b) + ["placebo"] * (c + d),
            "response": [1] * a + [0] * b + [1] * c + [0] * d,
        }
    )
    result = logistic_odds_ratio(data, outcome="response", reference="placebo").contrast("active")
    assert result.ratio == pytest.approx(a * d / (b * c), rel=1e-8)
    assert result.se == pytest.approx(math.sqrt(1 / a + 1 / b + 1 / c + 1 / d), rel=1e-6)
    stratified = logistic_odds_ratio(
        data.assign(site=np.arange(len(data)) % 2), outcome="response", reference="placebo", strata=["site"]
    )
    assert stratified.n_used == 100
    with pytest.raises(ValueError, match="0/1"):
        logistic_odds_ratio(data.assign(response=data["response"] * 2), outcome="response", reference="placebo")


def test_poisson_rate_ratio_equals_ratio_of_rates():
    data = pd.DataFrame(
        {
            "arm": ["active"] * 3 + ["placebo"] * 3,
            "events": [2, 0, 5, 6, 4, 7],
            "exposure": [1.0, 0.5, 2.0, 1.5, 1.0, 2.0],
        }
    )
    result = rate_ratio(data, reference="placebo").contrast("active")
    assert result.ratio == pytest.approx((7 / 3.5) / (17 / 4.5), rel=1e-8)
    assert result.se == pytest.approx(math.sqrt(1 / 7 + 1 / 17), rel=1e-6)


def test_negative_binomial_rate_ratio():
    rng = np.random.default_rng(11)
    n = 400
    arm = np.where(np.arange(n) < n // 2, "active", "placebo")
    exposure = np.full(n, 1.0)
    mean = np.where(arm == "active", 0.6, 1.0) * exposure * 2.0
    dispersion = 0.8
    counts = rng.negative_binomial(1 / dispersion, 1 / (1 + dispersion * mean))
    data = pd.DataFrame({"arm": arm, "events": counts, "exposure": exposure})
    result = rate_ratio(data, reference="placebo", model="negative_binomial")
    contrast = result.contrast("active")
    # With one exposure per participant the NB2 MLE of each arm mean is the sample mean, so the rate
    # ratio equals the ratio of observed rates exactly.
    observed = counts[arm == "active"].mean() / counts[arm == "placebo"].mean()
    assert contrast.ratio == pytest.approx(observed, rel=1e-5)
    assert contrast.ci_lower < 0.6 < contrast.ci_upper  # true rate ratio used in the simulation
    assert 0.5 < result.details["dispersion"] < 1.2
    poisson = rate_ratio(data, reference="placebo").contrast("active")
    assert contrast.se > poisson.se  # over-dispersion widens the interval


def test_rate_ratio_rejects_bad_input():
    data = pd.DataFrame({"arm": ["a", "b"], "events": [1, 2], "exposure": [1.0, 0.0]})
    with pytest.raises(ValueError, match="must be positive"):
        rate_ratio(data, reference="b")
    with pytest.raises(ValueError, match="whole counts"):
        rate_ratio(data.assign(events=[1.5, 2], exposure=1.0), reference="b")
    with pytest.raises(ValueError, match="model must be"):
        rate_ratio(data, reference="b", model="zip")
