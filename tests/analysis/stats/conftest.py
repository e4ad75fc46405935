"""Fixtures for the statistics tests: small seeded synthetic trials (no database, no Django)."""

import numpy as np
import pandas as pd
import pytest

TRUE_EFFECT_AT_WEEK_12 = 3.0  # mean difference (active - placebo) used to simulate the repeated-measures trial


@pytest.fixture(scope="session")
def repeated_measures_trial():
    """Two-arm trial, visits 4/8/12 weeks, random intercept, effect growing to TRUE_EFFECT_AT_WEEK_12."""
    rng = np.random.default_rng(2024)
    participants = 240
    arm = np.where(np.arange(participants) % 2 == 0, "active", "placebo")
    baseline = rng.normal(50.0, 8.0, participants)
    intercept = rng.normal(0.0, 4.0, participants)
    region = rng.choice(["EU", "US"], participants)
    rows = []
    for index in range(participants):
        for visit, effect in (("week 4", 1.0), ("week 8", 2.0), ("week 12", TRUE_EFFECT_AT_WEEK_12)):
            treated = arm[index] == "active"
            value = (
                0.6 * baseline[index]
                + intercept[index]
                + (2.0 if region[index] == "US" else 0.0)
                + (effect if treated else 0.0)
                + rng.normal(0.0, 3.0)
            )
            rows.append(
                {
                    "participant_id": f"P{index:03d}",
                    "visit": visit,
                    "arm": arm[index],
                    "value": value,
                    "baseline": baseline[index],
                    "region": region[index],
                }
            )
    data = pd.DataFrame(rows)
    data.attrs["true_effect_week_12"] = TRUE_EFFECT_AT_WEEK_12
    return data
