"""Adverse-event tables on a small hand-countable data set."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.stats.efficacy import risk_difference
from analysis.stats.safety import ANY, ae_by_max_grade, ae_incidence, ae_overview, exposure_adjusted_incidence


@pytest.fixture
def participants():
    return pd.DataFrame(
        {
            "participant_id": [f"A{i}" for i in range(1, 11)] + [f"P{i}" for i in range(1, 11)],
            "arm": ["active"] * 10 + ["placebo"] * 10,
            "exposure_years": [0.5] * 10 + [1.0] * 10,
        }
    )


@pytest.fixture
def adverse_events():
    rows = [
        # participant, soc, term, grade, serious, related, discontinued, fatal
        ("A1", "Gastrointestinal disorders", "Nausea", 1, 0, 1, 0, 0),
        ("A1", "Gastrointestinal disorders", "Nausea", 2, 0, 1, 0, 0),  # same participant again: counted once
        ("A1", "Nervous system disorders", "Headache", 1, 0, 0, 0, 0),
        ("A2", "Gastrointestinal disorders", "Vomiting", 3, 1, 1, 1, 0),
        ("A3", "Nervous system disorders", "Headache", 2, 0, 0, 0, 0),
        ("A4", "Cardiac disorders", "Myocardial infarction", 5, 1, 0, 1, 1),
        ("P1", "Nervous system disorders", "Headache", 1, 0, 0, 0, 0),
        ("P2", "Gastrointestinal disorders", "Nausea", 4, 1, 0, 0, 0),
    ]
    columns = ["participant_id", "soc", "term", "grade", "serious", "related", "discontinued", "fatal"]
    return pd.DataFrame(rows, columns=columns)


def _row(table, **keys):
    mask = np.ones(len(table), dtype=bool)
    for column, value in keys.items():
        mask &= table[column] == value
    assert mask.sum() == 1, keys
    return table.loc[mask].iloc[0]


def test_incidence_counts_participants_once(adverse_events, participants):
    table = ae_incidence(adverse_events, participants)
    assert _row(table, soc=ANY, term=ANY, arm="active")[["n", "N"]].tolist() == [4, 10]
    assert _row(table, soc=ANY, term=ANY, arm="placebo")[["n", "N"]].tolist() == [2, 10]
    gi_active = _row(table, soc="Gastrointestinal disorders", term=ANY, arm="active")
    assert gi_active["n"] == 2  # A1 (twice nausea) and A2
    assert _row(table, soc="Gastrointestinal disorders", term="Nausea", arm="active")["n"] == 1
    # Arms without the event are listed with n = 0, so the table is complete.
    cardiac_placebo = _row(table, soc="Cardiac disorders", term="Myocardial infarction", arm="placebo")
    assert cardiac_placebo["n"] == 0
    assert cardiac_placebo["percent"] == 0
    # Clopper-Pearson for 0/10: upper = 1 - 0.025^(1/10) = 0.3085
    assert cardiac_placebo["ci_upper"] == pytest.approx(1 - 0.025 ** (1 / 10), rel=1e-9)
    assert cardiac_placebo["ci_lower"] == 0


@pytest.mark.parametrize(
    ("n_events", "n_total", "expected"),
    [
        (15, 148, (0.0578, 0.1617)),  # Newcombe (1998b) exact (Clopper-Pearson) examples, ratesci test3.R
        (0, 20, (0.0, 0.1684)),
        (1, 29, (0.0009, 0.1776)),
    ],
)
def test_clopper_pearson_interval_matches_published_values(n_events, n_total, expected):
    participants = pd.DataFrame({"participant_id": range(n_total), "arm": "x"})
    events = pd.DataFrame({"participant_id": range(n_events), "soc": "s", "term": "t"})
    row = _row(ae_incidence(events, participants), soc=ANY, term=ANY, arm="x")
    assert (row["ci_lower"], row["ci_upper"]) == pytest.approx(expected, abs=5e-5)


def test_max_grade_partitions_each_arm(adverse_events, participants):
    table = ae_by_max_grade(adverse_events, participants)
    active = table[table["arm"] == "active"].set_index("max_grade")["n"]
    assert active.to_dict() == {0: 6, 1: 0, 2: 2, 3: 1, 4: 0, 5: 1}  # A1 max 2, A3 2, A2 3, A4 5
    placebo = table[table["arm"] == "placebo"].set_index("max_grade")["n"]
    assert placebo.to_dict() == {0: 8, 1: 1, 2: 0, 3: 0, 4: 1, 5: 0}
    assert table.groupby("arm")["n"].sum().tolist() == [10, 10]


def test_overview_categories_and_risk_differences(adverse_events, participants):
    table = ae_overview(adverse_events, participants, reference="placebo")
    counts = table.set_index(["category", "arm"])["n"]
    assert counts[("any adverse event", "active")] == 4
    assert counts[("grade >= 3", "active")] == 2
    assert counts[("grade >= 3", "placebo")] == 1
    assert counts[("serious", "active")] == 2
    assert counts[("related", "active")] == 2
    assert counts[("leading to discontinuation", "active")] == 2
    assert counts[("fatal", "active")] == 1
    assert counts[("fatal", "placebo")] == 0
    serious = _row(table, category="serious", arm="active")
    expected = risk_difference(2, 10, 1, 10)
    assert (serious["risk_difference"], serious["rd_ci_lower"], serious["rd_ci_upper"]) == pytest.approx(
        (expected.estimate, expected.ci_lower, expected.ci_upper)
    )
    assert np.isnan(_row(table, category="serious", arm="placebo")["risk_difference"])


def test_exposure_adjusted_incidence(adverse_events, participants):
    table = exposure_adjusted_incidence(adverse_events, participants)
    active = _row(table, arm="active")
    assert active["n"] == 4
    assert active["exposure"] == 5.0
    assert active["rate"] == pytest.approx(80.0)  # 4 participants / 5 participant-years * 100
    # Exact Poisson limits for 4 events: chi2(0.025, 8)/2 = 1.0899, chi2(0.975, 10)/2 = 10.2416
    assert active["ci_lower"] == pytest.approx(100 * 1.0899 / 5, abs=1e-2)
    assert active["ci_upper"] == pytest.approx(100 * 10.2416 / 5, abs=1e-2)
    assert active["ci_lower"] == pytest.approx(100 * stats.chi2.ppf(0.025, 8) / 2 / 5)
    by_term = exposure_adjusted_incidence(adverse_events, participants, by=["term"])
    assert _row(by_term, term="Headache", arm="placebo")["n"] == 1
    assert _row(by_term, term="Headache", arm="placebo")["rate"] == pytest.approx(10.0)


def test_invalid_input(adverse_events, participants):
    stranger = pd.concat([adverse_events, adverse_events.iloc[:1].assign(participant_id="X9")])
    with pytest.raises(ValueError, match="not in participants"):
        ae_incidence(stranger, participants)
    with pytest.raises(ValueError, match="more than once"):
        ae_incidence(adverse_events, pd.concat([participants, participants.iloc[:1]]))
    with pytest.raises(ValueError, match="grades 1-5"):
        ae_by_max_grade(adverse_events.assign(grade=6), participants)
    with pytest.raises(ValueError, match="0/1 or boolean"):
        ae_overview(adverse_events.assign(serious="yes"), participants)
    with pytest.raises(ValueError, match="must be positive"):
        exposure_adjusted_incidence(adverse_events, participants.assign(exposure_years=0.0))
    with pytest.raises(ValueError, match="reference arm"):
        ae_overview(adverse_events, participants, reference="control")


def test_missing_terms_raise_or_are_counted(adverse_events, participants):
    events = adverse_events.copy()
    events.loc[0, "term"] = None
    with pytest.raises(ValueError, match="missing values"):
        ae_incidence(events, participants)
    table = ae_incidence(events, participants, missing="drop")
    assert table.attrs["n_excluded"] == 1
    assert _row(table, soc=ANY, term=ANY, arm="active")["n"] == 4  # A1 still has other events
