"""Allocation sequences, generated from a recorded seed (pure functions, no database).

Three tools, all standard library + numpy/pandas only:

* ``permuted_block_sequence`` — the list for one stratum of stratified permuted blocks;
* ``minimization_assign`` — Pocock–Simon minimization with a random element, one participant at a time;
* ``simulate_scheme`` — Monte Carlo comparison of the two before go-live: arm balance overall, within strata
  and within factor levels, and how often an investigator could guess the next assignment.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

SCHEMES = ("permuted_blocks", "minimization")


def permuted_block_sequence(
    arm_weights: Sequence[tuple[str, int]],
    *,
    block_multiples: Sequence[int],
    length: int,
    rng: np.random.Generator,
) -> list[str]:
    """A permuted-block allocation list of at least ``length`` assignments.

    Each block holds every arm ``weight × multiple`` times, with the multiple drawn at random from
    ``block_multiples`` for each block, so block boundaries cannot be guessed from a fixed size
    (e.g. weights 1:1:1 with multiples (1, 2) give blocks of 3 and 6).
    """
    if not arm_weights:
        raise ValueError("arm_weights: at least two arms are needed")
    if len(arm_weights) < 2:
        raise ValueError("arm_weights: at least two arms are needed to randomize")
    if any(weight < 1 for _, weight in arm_weights):
        raise ValueError("arm_weights: every allocation weight must be at least 1")
    if not block_multiples or any(multiple < 1 for multiple in block_multiples):
        raise ValueError("block_multiples: give one or more multiples of at least 1")
    if length < 1:
        raise ValueError("length: must be at least 1")
    sequence: list[str] = []
    while len(sequence) < length:
        multiple = int(rng.choice(np.asarray(block_multiples)))
        block = [code for code, weight in arm_weights for _ in range(weight * multiple)]
        sequence.extend(block[i] for i in rng.permutation(len(block)))
    return sequence


# --- validation shared by the public functions -------------------------------------------------------------


def _is_integer(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_arms(arm_weights: Sequence[tuple[str, int]]) -> tuple[tuple[str, ...], np.ndarray]:
    arms = list(arm_weights)
    if len(arms) < 2:
        raise ValueError(f"arm_weights: at least two arms are needed to randomize, got {len(arms)}")
    codes = tuple(code for code, _ in arms)
    if len(set(codes)) != len(codes):
        raise ValueError(f"arm_weights: arm codes must be unique, got {list(codes)}")
    for code, weight in arms:
        if not _is_integer(weight) or weight < 1:
            raise ValueError(
                f"arm_weights: the weight of arm {code!r} must be an integer of at least 1, got {weight!r}"
            )
    return codes, np.array([int(weight) for _, weight in arms], dtype=np.int64)


def _check_probability(probability: float) -> float:
    # NaN fails both comparisons, so it is refused too.
    if isinstance(probability, bool) or not (0.5 < probability <= 1):
        raise ValueError(f"probability: must be in (0.5, 1], got {probability!r}")
    return float(probability)


def _check_block_multiples(block_multiples: Sequence[int]) -> tuple[int, ...]:
    multiples = tuple(block_multiples)
    if not multiples or any(not _is_integer(m) or m < 1 for m in multiples):
        raise ValueError(f"block_multiples: give one or more integer multiples of at least 1, got {multiples!r}")
    return multiples


def _weight_scale(weights: np.ndarray) -> np.ndarray:
    """Integers proportional to 1/weight, so weighted counts compare exactly (no floating-point ties)."""
    common = math.lcm(*(int(w) for w in weights))
    return common // weights


# --- Pocock–Simon minimization core (vectorised over simulated trials) --------------------------------------


def _minimization_scores(level_counts: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Pocock–Simon G for each candidate arm.

    ``level_counts[..., f, j]`` is the number already on arm j at the new participant's level of factor f.
    Returns ``G[..., k] = Σ_f range_j(weighted count at that level, with the participant added to arm k)``,
    in units of ``1 / lcm(weights)``.
    """
    n_arms = scale.shape[0]
    weighted = level_counts * scale
    bump = np.eye(n_arms, dtype=np.int64) * scale  # row k: the participant's own weighted increment on arm k
    candidate = weighted[..., None, :, :] + bump[:, None, :]
    return (candidate.max(axis=-1) - candidate.min(axis=-1)).sum(axis=-1)


def _minimization_probabilities(
    scores: np.ndarray, weights: np.ndarray, probability: float
) -> tuple[np.ndarray, np.ndarray]:
    """Assignment probabilities, and the deterministic (p = 1) choice that a guesser would make.

    The preferred set (arms of minimal G) gets ``probability`` shared in proportion to weight, the other arms
    share ``1 − probability`` in proportion to weight; when every arm is preferred they share everything.
    """
    preferred = scores == scores.min(axis=-1, keepdims=True)
    preferred_weight = np.where(preferred, weights, 0).astype(float)
    other_weight = np.where(preferred, 0, weights).astype(float)
    preferred_total = preferred_weight.sum(axis=-1, keepdims=True)
    other_total = other_weight.sum(axis=-1, keepdims=True)
    has_other = other_total > 0
    p_preferred = np.where(has_other, probability, 1.0)
    deterministic = preferred_weight / preferred_total
    probabilities = p_preferred * deterministic + (1.0 - p_preferred) * other_weight / np.where(
        has_other, other_total, 1.0
    )
    return probabilities, deterministic


def _draw(probabilities: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw per row; normalising the CDF keeps zero-probability trailing arms unreachable."""
    cumulative = probabilities.cumsum(axis=-1)
    cumulative /= cumulative[..., -1:]
    return (uniforms[..., None] >= cumulative).sum(axis=-1)


def minimization_assign(
    *,
    arm_weights: Sequence[tuple[str, int]],
    factor_levels: Mapping[str, Hashable],
    counts: Mapping[tuple[str, Hashable, str], int],
    probability: float,
    rng: np.random.Generator,
) -> str:
    """The arm for the next participant by Pocock–Simon minimization with a random element.

    Method (Pocock SJ, Simon R. Sequential treatment assignment with balancing for prognostic factors in
    the controlled clinical trial. Biometrics 1975;31:103–115), with allocation weights handled by comparing
    counts divided by weight (Han B, Enos NH, Zhao W. Randomization by minimization for unbalanced treatment
    allocation. Stat Med 2009;28:3329–3346):

    1. For each candidate arm k, pretend the participant goes to k; for each factor f take the counts
       ``x[f, level_f, j] / w_j`` over arms j at the participant's level of f, and their range
       (max − min) as the imbalance of f.
    2. ``G_k = Σ_f range_f`` — the total imbalance if the participant went to k.
    3. With probability ``probability`` assign an arm of minimal G (ties broken at random in proportion to
       weight); otherwise assign one of the other arms at random in proportion to weight. When all arms tie
       they simply share the assignment in proportion to weight.

    Factors are weighted equally. ``counts`` maps ``(factor_code, level, arm_code)`` to the number already
    assigned; missing keys mean 0. Every factor mentioned in ``counts`` must have a level in
    ``factor_levels``: a factor left out would silently stop being balanced.

    With unequal weights and p < 1 the achieved allocation ratio can drift a little from the target
    (Kuznetsova OM, Tymofyeyev Y. Stat Med 2012;31:701–723); check a design with ``simulate_scheme``.
    """
    codes, weights = _check_arms(arm_weights)
    p = _check_probability(probability)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: a numpy Generator is needed, got {type(rng).__name__}")
    if not factor_levels:
        raise ValueError("factor_levels: minimization needs at least one factor")
    factors = list(factor_levels)
    factor_index = {factor: i for i, factor in enumerate(factors)}
    arm_index = {code: j for j, code in enumerate(codes)}
    level_counts = np.zeros((len(factors), len(codes)), dtype=np.int64)
    for key, count in counts.items():
        if not isinstance(key, tuple) or len(key) != 3:
            raise ValueError(f"counts: keys must be (factor_code, level, arm_code), got {key!r}")
        factor, level, arm = key
        if factor not in factor_index:
            raise ValueError(f"counts: unknown factor {factor!r}: the new participant has no level for it")
        if arm not in arm_index:
            raise ValueError(f"counts: unknown arm {arm!r} (arms are {list(codes)})")
        if not _is_integer(count) or count < 0:
            raise ValueError(f"counts: {key!r} must be a non-negative integer, got {count!r}")
        if level == factor_levels[factor]:
            level_counts[factor_index[factor], arm_index[arm]] += int(count)
    scores = _minimization_scores(level_counts, _weight_scale(weights))
    probabilities, _ = _minimization_probabilities(scores, weights, p)
    return codes[int(_draw(probabilities, np.asarray(rng.random())))]


# --- simulation before go-live -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImbalanceSummary:
    """Distribution over simulated trials of an imbalance (participants away from the weighted target)."""

    mean: float
    median: float
    p95: float
    max: float


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """What ``simulate_scheme`` found; see its docstring for the definitions."""

    scheme: str
    n_participants: int
    n_trials: int
    seed: int
    overall_imbalance: ImbalanceSummary
    stratum_imbalance: pd.DataFrame
    factor_imbalance: pd.DataFrame
    predictability: float
    predictability_by_chance: float

    def __eq__(self, other: object) -> bool:
        # The generated __eq__ would compare DataFrames with ==, whose truth value is ambiguous.
        if not isinstance(other, SimulationResult):
            return NotImplemented
        for field in fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            same = mine.equals(theirs) if isinstance(mine, pd.DataFrame) else mine == theirs
            if not same:
                return False
        return True

    __hash__ = None  # holds DataFrames, which are mutable


def _check_strata_mix(strata_mix: Mapping[str, Mapping[Hashable, float]]) -> list[tuple[str, list, np.ndarray]]:
    if not strata_mix:
        raise ValueError("strata_mix: give at least one factor")
    checked = []
    for factor, mix in strata_mix.items():
        if not mix:
            raise ValueError(f"strata_mix: factor {factor!r} has no levels")
        levels = list(mix)
        shares = np.array([float(mix[level]) for level in levels])
        if not np.all(np.isfinite(shares)) or np.any(shares < 0):
            raise ValueError(f"strata_mix: the shares of factor {factor!r} must be finite and non-negative")
        if not math.isclose(shares.sum(), 1.0, abs_tol=1e-9):
            raise ValueError(f"strata_mix: the shares of factor {factor!r} must sum to 1, got {shares.sum():g}")
        checked.append((factor, levels, shares / shares.sum()))
    return checked


def _group_counts(trial_index: np.ndarray, group: np.ndarray, arms: np.ndarray, n_groups: int, n_arms: int):
    """Final arm counts per (trial, group): shape (trials, groups, arms)."""
    n_trials = trial_index.shape[0]
    key = ((trial_index[:, None] * n_groups + group) * n_arms + arms).ravel()
    return np.bincount(key, minlength=n_trials * n_groups * n_arms).reshape(n_trials, n_groups, n_arms)


def _imbalance(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """max over arms of |n_arm − n × w_arm / Σw| along the last axis."""
    total = counts.sum(axis=-1, keepdims=True)
    return np.abs(counts - total * weights / weights.sum()).max(axis=-1)


def _imbalance_table(imbalance: np.ndarray, labels: list[str], expected: np.ndarray, index_name: str):
    return pd.DataFrame(
        {
            "expected_n": expected,
            "mean_imbalance": imbalance.mean(axis=0),
            "p95_imbalance": np.percentile(imbalance, 95, axis=0),
        },
        index=pd.Index(labels, name=index_name),
    )


def _simulate_blocks(arm_weights, weights, stratum, n_strata, block_multiples, rng):
    """Stratified permuted blocks: one independent ``permuted_block_sequence`` per stratum and trial.

    The guesser knows every past assignment in the participant's stratum and guesses the arm furthest
    behind its weighted share (Blackwell & Hodges' convergence strategy), splitting ties by weight.
    """
    n_trials, n_participants = stratum.shape
    arm_index = {code: j for j, (code, _) in enumerate(arm_weights)}
    arms = np.empty_like(stratum)
    for t in range(n_trials):
        order = np.argsort(stratum[t], kind="stable")
        sizes = np.bincount(stratum[t], minlength=n_strata)
        for positions in np.split(order, np.cumsum(sizes)[:-1]):
            if positions.size:
                sequence = permuted_block_sequence(
                    arm_weights, block_multiples=block_multiples, length=positions.size, rng=rng
                )
                arms[t, positions] = [arm_index[code] for code in sequence[: positions.size]]
    scale = _weight_scale(weights)
    trial_index = np.arange(n_trials)
    so_far = np.zeros((n_trials, n_strata, len(weights)), dtype=np.int64)
    correct = np.zeros(n_trials)
    for i in range(n_participants):
        weighted = so_far[trial_index, stratum[:, i]] * scale
        guess = np.where(weighted == weighted.min(axis=1, keepdims=True), weights, 0).astype(float)
        correct += guess[trial_index, arms[:, i]] / guess.sum(axis=1)
        so_far[trial_index, stratum[:, i], arms[:, i]] += 1
    return arms, correct


def _simulate_minimization(weights, levels, probability, rng):
    """Minimization over all factors, every trial advanced one participant at a time in lockstep.

    The guesser knows every past assignment (all the marginal counts) and guesses the arm minimization would
    choose deterministically, splitting ties as the algorithm does.
    """
    n_factors, n_trials, n_participants = levels.shape
    n_levels = int(levels.max()) + 1
    scale = _weight_scale(weights)
    trial_index = np.arange(n_trials)[:, None]
    factor_index = np.arange(n_factors)[None, :]
    so_far = np.zeros((n_trials, n_factors, n_levels, len(weights)), dtype=np.int64)
    arms = np.empty((n_trials, n_participants), dtype=np.int64)
    correct = np.zeros(n_trials)
    for i in range(n_participants):
        level = levels[:, :, i].T
        scores = _minimization_scores(so_far[trial_index, factor_index, level], scale)
        probabilities, deterministic = _minimization_probabilities(scores, weights, probability)
        arm = _draw(probabilities, rng.random(n_trials))
        correct += deterministic[trial_index[:, 0], arm]
        so_far[trial_index, factor_index, level, arm[:, None]] += 1
        arms[:, i] = arm
    return arms, correct


def simulate_scheme(
    *,
    scheme: str,
    arm_weights: Sequence[tuple[str, int]],
    strata_mix: Mapping[str, Mapping[Hashable, float]],
    n_participants: int,
    n_trials: int = 1000,
    seed: int,
    block_multiples: Sequence[int] = (1, 2),
    probability: float = 0.8,
) -> SimulationResult:
    """Monte Carlo operating characteristics of an allocation scheme, for choosing one before go-live.

    Each of ``n_trials`` simulated trials enrols ``n_participants`` whose factor levels are drawn
    independently from ``strata_mix`` (factor → {level: share}); a stratum is the combination of all
    factor levels. ``scheme`` is ``"permuted_blocks"`` (stratified permuted blocks, one independent
    ``permuted_block_sequence`` per stratum, block sizes ``Σw × block_multiples``) or ``"minimization"``
    (Pocock–Simon over all factors with random element ``probability``, as ``minimization_assign``).

    Imbalance of a group of n participants is ``max over arms |n_arm − n·w_arm/Σw|``, reported at the end
    of each simulated trial overall (``overall_imbalance``: mean, median, 95th percentile, max), within each
    stratum (``stratum_imbalance``) and within each factor level, i.e. marginal balance, which is what
    minimization targets (``factor_imbalance``); the tables give the expected participants per trial and
    the mean and 95th percentile of the imbalance over trials (an empty group counts as 0).

    ``predictability`` is the share of assignments an investigator guesses correctly with the convergence
    strategy (Blackwell D, Hodges JL. Design for the control of selection bias. Ann Math Stat
    1957;28:449–460): for blocks, guess the arm furthest behind its weighted share in the participant's
    stratum; for minimization, guess the arm minimization would choose deterministically (assuming the
    investigator knows all counts — the worst case). Ties are split in proportion to weight and scored by
    expected value, which removes guessing noise. ``predictability_by_chance`` (max weight / total weight)
    is what always guessing the largest arm achieves without any knowledge.

    One ``numpy`` generator seeded with ``seed`` drives everything in a fixed order, so the same inputs
    give identical results.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme: must be one of {SCHEMES}, got {scheme!r}")
    codes, weights = _check_arms(arm_weights)
    multiples = _check_block_multiples(block_multiples)
    p = _check_probability(probability)
    factors = _check_strata_mix(strata_mix)
    if not _is_integer(n_participants) or n_participants < 1:
        raise ValueError(f"n_participants: must be an integer of at least 1, got {n_participants!r}")
    if not _is_integer(n_trials) or n_trials < 1:
        raise ValueError(f"n_trials: must be an integer of at least 1, got {n_trials!r}")
    if not _is_integer(seed) or seed < 0:
        raise ValueError(f"seed: must be a non-negative integer, got {seed!r}")

    rng = np.random.default_rng(int(seed))
    levels = np.stack(
        [rng.choice(len(names), size=(n_trials, n_participants), p=shares) for _, names, shares in factors]
    )
    sizes = [len(names) for _, names, _ in factors]
    n_strata = math.prod(sizes)
    stratum = np.ravel_multi_index(tuple(levels), sizes)

    if scheme == "permuted_blocks":
        arms, correct = _simulate_blocks(
            list(zip(codes, weights.tolist(), strict=True)), weights, stratum, n_strata, multiples, rng
        )
    else:
        arms, correct = _simulate_minimization(weights, levels, p, rng)

    trial_index = np.arange(n_trials)
    overall = _imbalance(_group_counts(trial_index, np.zeros_like(arms), arms, 1, len(codes))[:, 0], weights)
    within_stratum = _imbalance(_group_counts(trial_index, stratum, arms, n_strata, len(codes)), weights)
    stratum_labels = [
        "|".join(f"{factor}={level}" for (factor, _, _), level in zip(factors, combo, strict=True))
        for combo in itertools.product(*(names for _, names, _ in factors))
    ]
    stratum_expected = n_participants * np.array(
        [math.prod(combo) for combo in itertools.product(*(shares for _, _, shares in factors))]
    )
    factor_tables = []
    for f, (factor, names, shares) in enumerate(factors):
        within_level = _imbalance(_group_counts(trial_index, levels[f], arms, len(names), len(codes)), weights)
        labels = [f"{factor}={name}" for name in names]
        factor_tables.append(_imbalance_table(within_level, labels, n_participants * shares, "factor_level"))

    return SimulationResult(
        scheme=scheme,
        n_participants=int(n_participants),
        n_trials=int(n_trials),
        seed=int(seed),
        overall_imbalance=ImbalanceSummary(
            mean=float(overall.mean()),
            median=float(np.median(overall)),
            p95=float(np.percentile(overall, 95)),
            max=float(overall.max()),
        ),
        stratum_imbalance=_imbalance_table(within_stratum, stratum_labels, stratum_expected, "stratum"),
        factor_imbalance=pd.concat(factor_tables),
        predictability=float((correct / n_participants).mean()),
        predictability_by_chance=float(weights.max() / weights.sum()),
    )
