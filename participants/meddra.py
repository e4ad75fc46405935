"""MedDRA system organ classes, shipped as data (the lower MedDRA levels are licensed, so terms are free text)."""

from __future__ import annotations

import csv
from pathlib import Path

_SOC_FILE = Path(__file__).with_name("data") / "meddra_soc.csv"


def _load() -> tuple[tuple[str, str], ...]:
    with _SOC_FILE.open(newline="", encoding="utf-8") as handle:
        return tuple((row["soc_code"], row["soc_name"]) for row in csv.DictReader(handle))


SOC_CHOICES: tuple[tuple[str, str], ...] = _load()
SOC_NAMES: dict[str, str] = dict(SOC_CHOICES)
