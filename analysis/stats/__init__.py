"""ExoTrial statistics library: pure functions over pandas/numpy (no Django, no I/O).

Modules
-------
sequential   group-sequential boundaries, alpha spending, conditional power, monitoring summaries
survival     Kaplan-Meier, log-rank, Cox hazard ratio
multiplicity Bonferroni / Holm / Hochberg / fixed-sequence adjusted p-values
power        sample size per arm for means and proportions
efficacy     ANCOVA, repeated-measures mixed model, risk difference, odds ratio, Fisher, CMH, rate ratios
safety       adverse-event incidence tables and exposure-adjusted rates
descriptive  baseline characteristics table and subgroup (forest plot) estimates
"""

from .descriptive import baseline_table, subgroup_estimates
from .efficacy import (
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
from .multiplicity import adjust_pvalues
from .power import sample_size_means, sample_size_proportions
from .safety import ae_by_max_grade, ae_incidence, ae_overview, exposure_adjusted_incidence
from .sequential import (
    conditional_power,
    crossing_probabilities,
    design_drift,
    efficacy_bounds,
    futility_by_conditional_power,
    monitoring_summary,
    recompute_bounds,
    spending,
)
from .survival import cox_hazard_ratio, kaplan_meier, logrank_test, median_survival

__all__ = [
    "adjust_pvalues",
    "ae_by_max_grade",
    "ae_incidence",
    "ae_overview",
    "ancova",
    "baseline_table",
    "cmh_test",
    "conditional_power",
    "cox_hazard_ratio",
    "crossing_probabilities",
    "design_drift",
    "efficacy_bounds",
    "exposure_adjusted_incidence",
    "fisher_exact_pvalue",
    "fisher_exact_test",
    "futility_by_conditional_power",
    "kaplan_meier",
    "logistic_odds_ratio",
    "logrank_test",
    "median_survival",
    "mixed_model_repeated_measures",
    "monitoring_summary",
    "random_intercept_reml",
    "rate_ratio",
    "recompute_bounds",
    "risk_difference",
    "sample_size_means",
    "sample_size_proportions",
    "spending",
    "stratified_tables",
    "subgroup_estimates",
    "wilson_interval",
]
