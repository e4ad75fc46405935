"""Input checks shared by the statistics modules.

Every public function in :mod:`analysis.stats` validates its input with these helpers so that a caller
gets a ``ValueError`` naming the offending argument instead of a silent ``nan`` or a numpy traceback.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import pandas as pd

MissingPolicy = Literal["raise", "drop"]

_MISSING_POLICIES = ("raise", "drop")


def check_missing_policy(missing: str) -> None:
    if missing not in _MISSING_POLICIES:
        raise ValueError(f"missing must be 'raise' or 'drop', got {missing!r}")


def check_alpha(alpha: float, name: str = "alpha", upper: float = 0.5) -> float:
    """One-sided error rates live in (0, 0.5); anything else is almost always a two-sided/percent mix-up."""
    value = check_finite_number(alpha, name)
    if not 0.0 < value < upper:
        raise ValueError(f"{name} must lie strictly between 0 and {upper}, got {value}")
    return value


def check_probability_open(value: float, name: str) -> float:
    number = check_finite_number(value, name)
    if not 0.0 < number < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {number}")
    return number


def check_level(level: float) -> float:
    number = check_finite_number(level, "level")
    if not 0.5 <= number < 1.0:
        raise ValueError(f"level must be a confidence level in [0.5, 1), got {number}")
    return number


def check_finite_number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    return number


def check_positive(value: object, name: str) -> float:
    number = check_finite_number(value, name)
    if number <= 0:
        raise ValueError(f"{name} must be positive, got {number}")
    return number


def check_count(value: object, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be a whole number, got {value!r}")
    count = int(value)
    if count < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {count}")
    return count


def as_float_array(values: object, name: str) -> np.ndarray:
    """1-d float array; NaN is allowed here and dealt with by the missing-data policy."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if np.isinf(array).any():
        raise ValueError(f"{name} contains infinite values")
    return array


def require_columns(data: pd.DataFrame, columns: Iterable[str], name: str = "data") -> None:
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(data).__name__}")
    missing_columns = [column for column in columns if column not in data.columns]
    if missing_columns:
        raise ValueError(f"{name} is missing required column(s) {missing_columns}; has {list(data.columns)}")


def apply_missing_policy(
    data: pd.DataFrame, columns: Sequence[str], missing: str, name: str = "data"
) -> tuple[pd.DataFrame, int]:
    """Return the complete-case rows for ``columns`` and how many rows were excluded.

    With ``missing="raise"`` any missing value is an error that names the columns concerned, so rows
    never disappear without the caller having asked for it.
    """
    check_missing_policy(missing)
    require_columns(data, columns, name)
    incomplete = data[list(columns)].isna().any(axis=1)
    n_incomplete = int(incomplete.sum())
    if n_incomplete and missing == "raise":
        bad = [column for column in columns if data[column].isna().any()]
        raise ValueError(
            f"{name} has {n_incomplete} row(s) with missing values in {bad}; "
            "pass missing='drop' to exclude them (the count is reported as n_excluded)"
        )
    return data.loc[~incomplete].copy(), n_incomplete


def complete_cases(arrays: dict[str, np.ndarray], missing: str) -> tuple[dict[str, np.ndarray], int]:
    """Array version of :func:`apply_missing_policy` for functions that take parallel vectors."""
    check_missing_policy(missing)
    lengths = {name: len(values) for name, values in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must have the same length, got {lengths}")
    keep = np.ones(next(iter(lengths.values())), dtype=bool)
    for values in arrays.values():
        keep &= ~pd.isna(values)
    n_excluded = int((~keep).sum())
    if n_excluded and missing == "raise":
        bad = [name for name, values in arrays.items() if pd.isna(values).any()]
        raise ValueError(f"{bad} contain {n_excluded} missing value(s); pass missing='drop' to exclude those rows")
    return {name: values[keep] for name, values in arrays.items()}, n_excluded


def check_event_indicator(values: np.ndarray, name: str = "event") -> np.ndarray:
    unique = set(np.unique(values).tolist())
    if not unique <= {0.0, 1.0}:
        raise ValueError(f"{name} must be coded 0/1, got values {sorted(unique)[:10]}")
    return values.astype(int)


def check_nonnegative_times(values: np.ndarray, name: str = "time") -> np.ndarray:
    if (values < 0).any():
        raise ValueError(f"{name} must be non-negative; found {(values < 0).sum()} negative value(s)")
    return values
