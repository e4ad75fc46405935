"""Multiplicity adjustment of p-values (statsmodels ``multipletests`` plus the fixed-sequence procedure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from statsmodels.stats.multitest import multipletests

from ._validation import check_alpha

_STATSMODELS_METHOD = {"bonferroni": "bonferroni", "holm": "holm", "hochberg": "simes-hochberg"}
METHODS = (*_STATSMODELS_METHOD, "fixed_sequence")


@dataclass(frozen=True)
class AdjustedPValues:
    """Adjusted p-values in the order the raw p-values were given.

    ``rejected[i]`` is ``adjusted[i] <= alpha``; for ``"fixed_sequence"`` that is exactly "hypothesis i and
    all hypotheses before it are significant at the full alpha".
    """

    method: str
    alpha: float
    raw: tuple[float, ...]
    adjusted: tuple[float, ...]
    rejected: tuple[bool, ...]


def adjust_pvalues(pvalues: Sequence[float] | np.ndarray, method: str, *, alpha: float = 0.05) -> AdjustedPValues:
    """Adjust p-values for multiple testing with strong control of the family-wise error rate.

    Parameters
    ----------
    pvalues : sequence of float
        Raw p-values in [0, 1]. For ``"fixed_sequence"`` their order is the pre-specified testing order
        (e.g. key secondary endpoints in hierarchy).
    method : {"bonferroni", "holm", "hochberg", "fixed_sequence"}
        Bonferroni; Holm (1979) step-down; Hochberg (1988) step-up (valid under independence or positive
        dependence); fixed-sequence (hierarchical) testing, whose adjusted p-value is the running maximum
        max(p_1, ..., p_i), so hypothesis i is tested at full alpha only once all earlier ones are rejected
        (Maurer, Hothorn & Lehmacher 1995).
    alpha : float
        Family-wise error rate used for ``rejected``.

    Returns
    -------
    AdjustedPValues
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    alpha_value = check_alpha(alpha, upper=1.0)
    try:
        raw = np.asarray(pvalues, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pvalues must be numeric: {exc}") from exc
    if raw.ndim != 1 or raw.size == 0:
        raise ValueError("pvalues must be a non-empty one-dimensional sequence")
    if np.isnan(raw).any():
        raise ValueError("pvalues contain missing values; decide on each hypothesis before adjusting")
    if ((raw < 0) | (raw > 1)).any():
        raise ValueError(f"pvalues must lie in [0, 1], got {raw.tolist()}")
    if method == "fixed_sequence":
        adjusted = np.maximum.accumulate(raw)
    else:
        adjusted = multipletests(raw, alpha=alpha_value, method=_STATSMODELS_METHOD[method])[1]
    adjusted = np.minimum(adjusted, 1.0)
    return AdjustedPValues(
        method=method,
        alpha=alpha_value,
        raw=tuple(float(value) for value in raw),
        adjusted=tuple(float(value) for value in adjusted),
        rejected=tuple(bool(value <= alpha_value) for value in adjusted),
    )
