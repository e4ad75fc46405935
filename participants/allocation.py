"""Allocation sequences, generated from a recorded seed (pure functions, no database)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
