"""The statistics engine recovers the demo trial's known true effect from the database."""

from __future__ import annotations

import pytest

from analysis import extract
from analysis.stats.efficacy import ancova, mixed_model_repeated_measures
from trials import demo

pytestmark = pytest.mark.django_db


def test_primary_ancova_recovers_the_true_week12_effects(demo_trial):
    # given the primary endpoint's change from baseline at week 12, with the stratification factors
    frame = extract.change_from_baseline(demo_trial, endpoint_code="WOMACP", visit_code="W12", with_arm=True)
    # when the planned ANCOVA (arm + baseline + site + baseline-pain stratum) is fitted
    result = ancova(
        frame,
        reference="PBO",
        outcome="change",
        arm="arm",
        baseline="baseline",
        strata=["site", "basepain"],
        missing="drop",
    )
    # then each true effect lies inside its 95% confidence interval and the high dose is significant
    for arm in ("LOW", "HIGH"):
        contrast = result.contrast(arm)
        assert contrast.ci_lower < demo.TRUE_EFFECT[arm] < contrast.ci_upper, (arm, contrast)
    assert result.contrast("HIGH").pvalue < 0.001
    assert result.n_excluded == frame["change"].isna().sum()  # missing week-12 values are counted, not hidden


def test_mixed_model_recovers_the_true_effect_using_every_participant(demo_trial):
    values = extract.endpoint_values(demo_trial, endpoint_code="WOMACP")
    subjects = extract.subjects(demo_trial, with_arm=True)
    baseline = values[values["visit"] == "BL"].set_index("participant_id")["value"]
    post = values[values["visit"] != "BL"].dropna(subset=["value"]).merge(subjects, on="participant_id")
    post["baseline"] = post["participant_id"].map(baseline)
    result = mixed_model_repeated_measures(
        post,
        reference="PBO",
        primary_visit="W12",
        participant="participant_id",
        visit="visit",
        arm="arm",
        value="value",
        baseline="baseline",
        strata=["site", "basepain"],
    )
    contrast = result.contrast("HIGH")
    # the model estimates the change contrast at week 12: baseline-adjusted value difference = effect
    assert contrast.ci_lower < demo.TRUE_EFFECT["HIGH"] < contrast.ci_upper
