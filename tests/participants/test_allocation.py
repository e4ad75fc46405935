"""Permuted blocks, Pocock–Simon minimization and the pre-go-live simulation (pure: no database)."""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from participants.allocation import (
    SimulationResult,
    minimization_assign,
    permuted_block_sequence,
    simulate_scheme,
)

THREE_ARMS = [("PBO", 1), ("LOW", 1), ("HIGH", 1)]
# EXO-OA-201's mix: 4 sites × baseline pain = 8 strata.
DEMO_MIX = {
    "site": {"S01": 0.3, "S02": 0.25, "S03": 0.25, "S04": 0.2},
    "basepain": {"<=60": 0.5, ">60": 0.5},
}
# Many small strata: 12 sites × 2 levels = 24 strata for 60 participants, about 2.5 per stratum.
MANY_SMALL_STRATA = {
    "site": {f"S{i:02d}": 1 / 12 for i in range(1, 13)},
    "basepain": {"<=60": 0.5, ">60": 0.5},
}
ONE_STRATUM = {"all": {"all": 1.0}}


def binomial_tolerance(n: int, p: float, sds: float = 4.5) -> float:
    """Half-width, as a proportion, that a correct implementation exceeds with probability < 1e-5."""
    return sds * math.sqrt(p * (1 - p) / n)


def reference_g(arm_weights, factor_levels, counts, arm):
    """Pocock–Simon G with exact fractions, written independently of the module's integer scaling."""
    total = Fraction(0)
    for factor, level in factor_levels.items():
        weighted = [
            Fraction(counts.get((factor, level, code), 0) + (code == arm), weight) for code, weight in arm_weights
        ]
        total += max(weighted) - min(weighted)
    return total


def draw_many(n, *, seed, **kwargs):
    rng = np.random.default_rng(seed)
    return Counter(minimization_assign(rng=rng, **kwargs) for _ in range(n))


# --- permuted blocks ---------------------------------------------------------------------------------------


def block_ends(sequence, arm_weights, block_multiples):
    """Every position reachable by cutting ``sequence`` into balanced blocks of permitted sizes."""
    total_weight = sum(weight for _, weight in arm_weights)
    reachable = {0}
    for start in range(len(sequence)):
        if start not in reachable:
            continue
        for multiple in set(block_multiples):
            block = sequence[start : start + total_weight * multiple]
            counts = Counter(block)
            if len(block) == total_weight * multiple and all(
                counts[code] == weight * multiple for code, weight in arm_weights
            ):
                reachable.add(start + len(block))
    return reachable


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.integers(1, 3), min_size=2, max_size=4),
    block_multiples=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    length=st.integers(1, 60),
    seed=st.integers(0, 2**32 - 1),
)
def test_permuted_blocks_are_balanced_at_every_block_end(weights, block_multiples, length, seed):
    # given
    arm_weights = [(f"A{i}", weight) for i, weight in enumerate(weights)]
    # when
    sequence = permuted_block_sequence(
        arm_weights, block_multiples=block_multiples, length=length, rng=np.random.default_rng(seed)
    )
    # then: the whole list cuts into complete blocks, each holding every arm weight × multiple times
    largest_block = sum(weights) * max(block_multiples)
    assert length <= len(sequence) < length + largest_block
    assert len(sequence) in block_ends(sequence, arm_weights, block_multiples)


def test_block_end_check_rejects_an_unbalanced_list():
    # given: the checker above must be able to fail, or the property test proves nothing
    arm_weights = [("A", 1), ("B", 1)]
    # when
    ends = block_ends(["A", "B", "A", "A"], arm_weights, (1,))
    # then
    assert 4 not in ends
    assert 2 in ends


# --- minimization: worked examples -------------------------------------------------------------------------


def test_minimization_matches_the_textbook_two_arm_example():
    # given: Lim & In, "Randomization in clinical studies", Korean J Anesthesiol 2019;72:221–232, Table 4.
    # 14 patients so far, 7 control (C) / 7 treatment (T). The 15th is site 2, female, aged 74 (≥65).
    #   site 2: C 3, T 5    female: C 3, T 3    ≥65: C 3, T 3
    # To C: ranges |4−5| + |4−3| + |4−3| = 3.  To T: |3−6| + |3−4| + |3−4| = 5.  So C.
    counts = {
        ("site", "1", "C"): 4, ("site", "1", "T"): 2, ("site", "2", "C"): 3, ("site", "2", "T"): 5,
        ("sex", "M", "C"): 4, ("sex", "M", "T"): 4, ("sex", "F", "C"): 3, ("sex", "F", "T"): 3,
        ("age", "<20", "C"): 2, ("age", "<20", "T"): 2, ("age", "20-64", "C"): 2, ("age", "20-64", "T"): 2,
        ("age", ">=65", "C"): 3, ("age", ">=65", "T"): 3,
    }  # fmt: skip
    patient = {"site": "2", "sex": "F", "age": ">=65"}
    arm_weights = [("C", 1), ("T", 1)]
    # when
    assigned = {
        minimization_assign(
            arm_weights=arm_weights,
            factor_levels=patient,
            counts=counts,
            probability=1.0,
            rng=np.random.default_rng(seed),
        )
        for seed in range(30)
    }
    # then
    assert assigned == {"C"}
    assert reference_g(arm_weights, patient, counts, "C") == 3
    assert reference_g(arm_weights, patient, counts, "T") == 5


def test_minimization_compares_counts_divided_by_weight():
    # given: arms A:B:C = 2:1:1; the new participant is female and ≥65. Counts at her levels:
    #   sex=F: A 4, B 2, C 3  → weighted 2, 2, 3        age=≥65: A 2, B 2, C 1 → weighted 1, 2, 1
    # Weighted G:  to A: sex (2.5, 2, 3) range 1   + age (1.5, 2, 1) range 1 = 2   ← minimum
    #              to B: sex (2, 3, 3)   range 1   + age (1, 3, 1)   range 2 = 3
    #              to C: sex (2, 2, 4)   range 2   + age (1, 2, 2)   range 1 = 3
    # Raw counts would instead pick C (to A: 3 + 2 = 5, to B: 1 + 2 = 3, to C: 2 + 0 = 2), so this
    # example tells the weighted method from the unweighted one. Other levels (sex=M) must not matter.
    arm_weights = [("A", 2), ("B", 1), ("C", 1)]
    counts = {
        ("sex", "F", "A"): 4, ("sex", "F", "B"): 2, ("sex", "F", "C"): 3,
        ("sex", "M", "A"): 0, ("sex", "M", "B"): 9, ("sex", "M", "C"): 9,
        ("age", ">=65", "A"): 2, ("age", ">=65", "B"): 2, ("age", ">=65", "C"): 1,
    }  # fmt: skip
    participant = {"sex": "F", "age": ">=65"}
    # when
    assigned = {
        minimization_assign(
            arm_weights=arm_weights,
            factor_levels=participant,
            counts=counts,
            probability=1.0,
            rng=np.random.default_rng(seed),
        )
        for seed in range(30)
    }
    # then
    assert assigned == {"A"}
    assert [reference_g(arm_weights, participant, counts, arm) for arm in "ABC"] == [2, 3, 3]


# --- minimization: properties ------------------------------------------------------------------------------


@st.composite
def minimization_states(draw):
    n_arms = draw(st.integers(2, 4))
    arm_weights = [(f"A{i}", draw(st.integers(1, 3))) for i in range(n_arms)]
    n_factors = draw(st.integers(1, 3))
    levels = {f"F{f}": [f"L{level}" for level in range(draw(st.integers(2, 3)))] for f in range(n_factors)}
    participant = {factor: draw(st.sampled_from(names)) for factor, names in levels.items()}
    counts = {
        (factor, level, code): draw(st.integers(0, 8))
        for factor, names in levels.items()
        for level in names
        for code, _ in arm_weights
    }
    return arm_weights, participant, counts


@settings(max_examples=150, deadline=None)
@given(state=minimization_states(), seed=st.integers(0, 2**32 - 1))
def test_deterministic_minimization_never_chooses_a_more_imbalanced_arm(state, seed):
    # given
    arm_weights, participant, counts = state
    g = {code: reference_g(arm_weights, participant, counts, code) for code, _ in arm_weights}
    # when
    assigned = minimization_assign(
        arm_weights=arm_weights,
        factor_levels=participant,
        counts=counts,
        probability=1.0,
        rng=np.random.default_rng(seed),
    )
    # then
    assert g[assigned] == min(g.values())


@settings(max_examples=60, deadline=None)
@given(state=minimization_states())
def test_deterministic_minimization_is_seed_independent_without_ties(state):
    # given
    arm_weights, participant, counts = state
    g = {code: reference_g(arm_weights, participant, counts, code) for code, _ in arm_weights}
    best = min(g, key=g.get)
    tie_free = sorted(g.values())[0] < sorted(g.values())[1]
    # when
    assigned = {
        minimization_assign(
            arm_weights=arm_weights,
            factor_levels=participant,
            counts=counts,
            probability=1.0,
            rng=np.random.default_rng(seed),
        )
        for seed in range(8)
    }
    # then
    if tie_free:
        assert assigned == {best}
    else:
        assert assigned <= {code for code, value in g.items() if value == g[best]}


def test_missing_count_keys_mean_zero():
    # given: the same state spelled with and without explicit zeros
    arm_weights = [("A", 1), ("B", 1), ("C", 1)]
    sparse = {("site", "S1", "A"): 2, ("site", "S1", "B"): 1}
    dense = {**sparse, ("site", "S1", "C"): 0, ("site", "S2", "A"): 0}
    # when
    draws = [
        minimization_assign(
            arm_weights=arm_weights,
            factor_levels={"site": "S1"},
            counts=counts,
            probability=0.8,
            rng=np.random.default_rng(11),
        )
        for counts in (sparse, dense)
    ]
    # then
    assert draws[0] == draws[1]


def test_random_element_takes_the_other_arms_about_one_minus_p_of_the_time_in_proportion_to_weight():
    # given: the weighted example above, where A is the unique minimiser; B and C have equal weight
    arm_weights = [("A", 2), ("B", 1), ("C", 1)]
    counts = {
        ("sex", "F", "A"): 4, ("sex", "F", "B"): 2, ("sex", "F", "C"): 3,
        ("age", ">=65", "A"): 2, ("age", ">=65", "B"): 2, ("age", ">=65", "C"): 1,
    }  # fmt: skip
    n, p = 6000, 0.8
    # when
    drawn = draw_many(
        n,
        seed=2024,
        arm_weights=arm_weights,
        factor_levels={"sex": "F", "age": ">=65"},
        counts=counts,
        probability=p,
    )
    # then
    assert abs(drawn["A"] / n - p) < binomial_tolerance(n, p)
    for arm in "BC":
        assert abs(drawn[arm] / n - (1 - p) / 2) < binomial_tolerance(n, (1 - p) / 2)


def test_ties_are_broken_in_proportion_to_weight_and_the_rest_share_one_minus_p():
    # given: A:B:C = 2:1:1 with one B already at this level (weighted 0, 1, 0).
    #   to A: (0.5, 1, 0) range 1;  to B: (0, 2, 0) range 2;  to C: (0, 1, 1) range 1  → A and C tie.
    # With p = 0.9: A gets 0.9 × 2/3 = 0.6, C 0.9 × 1/3 = 0.3, B the remaining 0.1.
    arm_weights = [("A", 2), ("B", 1), ("C", 1)]
    counts = {("site", "S1", "B"): 1}
    n = 6000
    expected = {"A": 0.6, "B": 0.1, "C": 0.3}
    # when
    drawn = draw_many(n, seed=7, arm_weights=arm_weights, factor_levels={"site": "S1"}, counts=counts, probability=0.9)
    # then
    for arm, share in expected.items():
        assert abs(drawn[arm] / n - share) < binomial_tolerance(n, share)


def test_the_random_element_shares_one_minus_p_among_the_other_arms_in_proportion_to_weight():
    # given: A:B:C = 2:1:1 with A 2, B 0, C 1 at this level (weighted 1, 0, 1).
    #   to A: (1.5, 0, 1) range 1.5;  to B: (1, 1, 1) range 0;  to C: (1, 0, 2) range 2  → B alone.
    # With p = 0.7 the others share 0.3 as 2:1: A 0.2, C 0.1.
    arm_weights = [("A", 2), ("B", 1), ("C", 1)]
    counts = {("site", "S1", "A"): 2, ("site", "S1", "C"): 1}
    n = 6000
    expected = {"A": 0.2, "B": 0.7, "C": 0.1}
    # when
    drawn = draw_many(n, seed=99, arm_weights=arm_weights, factor_levels={"site": "S1"}, counts=counts, probability=0.7)
    # then
    for arm, share in expected.items():
        assert abs(drawn[arm] / n - share) < binomial_tolerance(n, share)


def test_unequal_two_to_one_weights_give_about_two_to_one_allocation():
    # given: 600 participants entering one at a time, site and baseline pain drawn at random
    rng = np.random.default_rng(31)
    counts: Counter = Counter()
    assigned = []
    # when
    for _ in range(600):
        participant = {"site": f"S{rng.integers(4)}", "basepain": str(rng.choice(["<=60", ">60"]))}
        arm = minimization_assign(
            arm_weights=[("ACTIVE", 2), ("PBO", 1)],
            factor_levels=participant,
            counts=counts,
            probability=0.8,
            rng=rng,
        )
        assigned.append(arm)
        counts.update((factor, level, arm) for factor, level in participant.items())
    # then: within 2 % of 2/3 — complete randomization would have an SD of 1.9 %, minimization is far tighter
    assert abs(assigned.count("ACTIVE") / 600 - 2 / 3) < 0.02
    assert abs(assigned[:300].count("ACTIVE") / 300 - 2 / 3) < 0.03


VALID = {
    "arm_weights": THREE_ARMS,
    "factor_levels": {"site": "S01", "basepain": ">60"},
    "counts": {("site", "S01", "PBO"): 1},
    "probability": 0.8,
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arm_weights": [("PBO", 1)]}, "at least two arms"),
        ({"arm_weights": []}, "at least two arms"),
        ({"arm_weights": [("PBO", 1), ("LOW", 0)]}, "at least 1"),
        ({"arm_weights": [("PBO", 1), ("LOW", 1.5)]}, "integer"),
        ({"arm_weights": [("PBO", 1), ("PBO", 2)]}, "unique"),
        ({"probability": 0.5}, r"\(0.5, 1\]"),
        ({"probability": 1.01}, r"\(0.5, 1\]"),
        ({"probability": float("nan")}, r"\(0.5, 1\]"),
        ({"factor_levels": {}}, "at least one factor"),
        ({"counts": {("sex", "F", "PBO"): 1}}, "unknown factor 'sex'"),
        ({"counts": {("site", "S01", "XYZ"): 1}}, "unknown arm 'XYZ'"),
        ({"counts": {("site", "S01", "PBO"): -1}}, "non-negative"),
        ({"counts": {("site", "PBO"): 1}}, "keys must be"),
    ],
)
def test_minimization_refuses_invalid_input(change, message):
    # given
    arguments = {**VALID, **change}
    # when / then
    with pytest.raises(ValueError, match=message):
        minimization_assign(**arguments, rng=np.random.default_rng(0))


def test_minimization_needs_a_numpy_generator():
    # given: a bare seed would silently give the same draw on every call
    # when / then
    with pytest.raises(TypeError, match="Generator"):
        minimization_assign(**VALID, rng=1)


# --- simulation --------------------------------------------------------------------------------------------


def simulate(scheme, **overrides):
    arguments = {
        "scheme": scheme,
        "arm_weights": THREE_ARMS,
        "strata_mix": DEMO_MIX,
        "n_participants": 240,
        "n_trials": 200,
        "seed": 20251,
    }
    return simulate_scheme(**{**arguments, **overrides})


@pytest.mark.parametrize("scheme", ["permuted_blocks", "minimization"])
def test_simulation_is_reproducible_with_the_same_seed_and_differs_with_another(scheme):
    # given / when
    first, again, other = simulate(scheme, seed=5), simulate(scheme, seed=5), simulate(scheme, seed=6)
    # then
    assert isinstance(first, SimulationResult)
    assert first == again
    assert first.stratum_imbalance.equals(again.stratum_imbalance)
    assert first != other
    assert not first.stratum_imbalance.equals(other.stratum_imbalance)
    assert (first.scheme, first.n_participants, first.n_trials, first.seed) == (scheme, 240, 200, 5)


def test_simulation_tables_have_one_row_per_stratum_and_per_factor_level():
    # given / when
    result = simulate("permuted_blocks", n_trials=50)
    # then
    strata = result.stratum_imbalance
    assert len(strata) == 8
    assert strata.index[0] == "site=S01|basepain=<=60"
    assert strata.loc["site=S04|basepain=>60", "expected_n"] == pytest.approx(240 * 0.2 * 0.5)
    assert strata["expected_n"].sum() == pytest.approx(240)
    assert list(strata.columns) == ["expected_n", "mean_imbalance", "p95_imbalance"]
    levels = result.factor_imbalance
    assert list(levels.index) == ["site=S01", "site=S02", "site=S03", "site=S04", "basepain=<=60", "basepain=>60"]
    assert levels.loc["site=S02", "expected_n"] == pytest.approx(60)
    assert (strata["p95_imbalance"] >= strata["mean_imbalance"]).all()
    summary = result.overall_imbalance
    assert summary.median <= summary.p95 <= summary.max


@pytest.mark.parametrize(
    ("scheme", "options"),
    [("permuted_blocks", {"block_multiples": (1,)}), ("minimization", {"probability": 1.0})],
)
def test_one_stratum_with_blocks_of_three_is_guessed_as_blackwell_and_hodges_predict(scheme, options):
    # given: one stratum and 1:1:1; blocks of 3, or deterministic minimization, which cycles the same way.
    # Convergence guessing is right with probability 1/3, then 1/2, then 1 in each cycle of three: 11/18.
    # when
    result = simulate(scheme, strata_mix=ONE_STRATUM, n_trials=20, **options)
    # then
    assert result.predictability == pytest.approx(11 / 18)
    assert result.predictability_by_chance == pytest.approx(1 / 3)
    assert result.overall_imbalance.max == 0  # 240 is a whole number of cycles


def test_by_chance_predictability_is_the_largest_weight_share():
    # given / when
    result = simulate("minimization", arm_weights=[("A", 2), ("B", 1), ("C", 1)], n_trials=10)
    # then
    assert result.predictability_by_chance == pytest.approx(0.5)


def test_two_to_one_simulated_trials_stay_close_to_two_to_one():
    # given: under complete randomization |n_active − 160| of 240 would average √(2/π)·√(240·2/9) ≈ 5.8
    complete_randomization_mean = math.sqrt(2 / math.pi) * math.sqrt(240 * 2 / 9)
    arm_weights = [("ACTIVE", 2), ("PBO", 1)]
    # when
    results = [simulate(scheme, arm_weights=arm_weights) for scheme in ("permuted_blocks", "minimization")]
    # then
    for result in results:
        assert result.overall_imbalance.mean < complete_randomization_mean / 2


def test_minimization_balances_factor_levels_better_than_blocks_in_many_small_strata():
    # given: 24 strata for 60 participants, so most stratum blocks are left incomplete
    common = {"strata_mix": MANY_SMALL_STRATA, "n_participants": 60, "n_trials": 400}
    # when
    blocks = simulate("permuted_blocks", **common)
    minimization = simulate("minimization", **common)
    # then: marginal balance over all levels, and clearly so for the large (≈30-participant) pain levels;
    # single sites hold only ≈5 participants each, where neither scheme can do much better than 2/3
    assert minimization.factor_imbalance["mean_imbalance"].mean() < blocks.factor_imbalance["mean_imbalance"].mean()
    pain = [label for label in blocks.factor_imbalance.index if label.startswith("basepain=")]
    assert (
        minimization.factor_imbalance.loc[pain, "mean_imbalance"]
        < 0.75 * blocks.factor_imbalance.loc[pain, "mean_imbalance"]
    ).all()
    assert minimization.overall_imbalance.mean < 0.75 * blocks.overall_imbalance.mean


def test_blocks_are_less_predictable_than_deterministic_minimization():
    # given / when
    blocks = simulate("permuted_blocks")
    minimization = simulate("minimization", probability=1.0)
    # then
    assert blocks.predictability_by_chance < blocks.predictability < minimization.predictability - 0.1


def test_mixing_block_sizes_three_and_six_lowers_predictability():
    # given / when
    threes = simulate("permuted_blocks", block_multiples=(1,))
    threes_and_sixes = simulate("permuted_blocks", block_multiples=(1, 2))
    # then
    assert threes_and_sixes.predictability < threes.predictability - 0.01


def test_random_element_lowers_predictability_of_minimization():
    # given / when
    deterministic = simulate("minimization", probability=1.0)
    with_random_element = simulate("minimization", probability=0.7)
    # then
    assert with_random_element.predictability < deterministic.predictability - 0.05


def test_two_arm_minimization_on_one_stratum_is_guessed_as_efrons_biased_coin():
    # given: two equal arms, one stratum and p = 2/3 make minimization Efron's biased coin (Biometrika
    # 1971;58:403–417). With d = |n_A − n_B|, d = 0 is a tie (guess right 1/2), otherwise the trailing arm is
    # guessed and comes with probability p. The chain on d has stationary P(d = 0) = (2p − 1) / 2p = 1/4,
    # so the long-run share of correct guesses is 1/4 · 1/2 + 3/4 · 2/3 = 5/8.
    p = 2 / 3
    at_balance = (2 * p - 1) / (2 * p)
    expected = at_balance / 2 + (1 - at_balance) * p
    # when
    result = simulate(
        "minimization", arm_weights=[("A", 1), ("B", 1)], strata_mix=ONE_STRATUM, n_trials=500, probability=p
    )
    # then
    assert result.predictability == pytest.approx(expected, abs=0.005)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scheme": "urn"}, "scheme"),
        ({"arm_weights": [("PBO", 1)]}, "at least two arms"),
        ({"strata_mix": {}}, "at least one factor"),
        ({"strata_mix": {"site": {}}}, "no levels"),
        ({"strata_mix": {"site": {"S01": 0.5, "S02": 0.4}}}, "sum to 1"),
        ({"strata_mix": {"site": {"S01": 1.5, "S02": -0.5}}}, "non-negative"),
        ({"n_participants": 0}, "n_participants"),
        ({"n_trials": 0}, "n_trials"),
        ({"seed": -1}, "seed"),
        ({"block_multiples": ()}, "block_multiples"),
        ({"block_multiples": (0,)}, "block_multiples"),
        ({"probability": 0.4}, "probability"),
    ],
)
def test_simulation_refuses_invalid_input(change, message):
    # given
    arguments = {"scheme": "minimization", "n_trials": 5, **change}
    # when / then
    with pytest.raises(ValueError, match=message):
        simulate(**arguments)
