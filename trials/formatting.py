"""Display helpers shared by admin, pages and reports."""

from __future__ import annotations

import math

_SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def scientific(value: float | None, digits: int = 2) -> str:
    """Particle counts as people write them: 1.0 × 10¹⁰ (ASCII-free but unambiguous)."""
    if value is None:
        return "—"
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)))
    mantissa = value / 10**exponent
    return f"{mantissa:.{digits - 1}f} × 10{str(exponent).translate(_SUPERSCRIPTS)}"
