"""A report's tables as a zip of CSV files, plus the helpers the other renderers share for table data.

The zip is byte-identical for the same document: entries are sorted, every entry carries the document's
``generated_at`` as its timestamp and fixed permissions, so archived reports can be verified by hash.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import numbers
import os
import re
import zipfile
from collections.abc import Iterable

import numpy as np
import pandas as pd

from analysis.report.document import ReportDocument

# Spreadsheets evaluate a cell starting with these as a formula (tab and CR are stripped first by some).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold


def neutralise_formula(text: str) -> str:
    """Prefix text that a spreadsheet would run as a formula with ``'`` so it is shown, never evaluated."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def utc(when: dt.datetime) -> dt.datetime:
    """``when`` in UTC; a naive time is taken to be UTC already (the pipeline stores UTC)."""
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def table_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as every format shows it: a named index becomes leading columns, column labels are strings."""
    if any(name is not None for name in frame.index.names):
        frame = frame.reset_index()
    if isinstance(frame.columns, pd.MultiIndex):
        labels = [" / ".join(str(part) for part in column if str(part)) for column in frame.columns]
    else:
        labels = [str(column) for column in frame.columns]
    return frame.set_axis(labels, axis=1)


def is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def safe_names(keys: Iterable[str], *, max_length: int = 31, reserved: Iterable[str] = ()) -> list[str]:
    """File/sheet-safe, case-insensitively unique names for table keys, in order.

    Keys are documented as identifiers already; this guards against a key that would escape the archive
    (``../x``) or clash with another after truncation.
    """
    taken = {name.lower() for name in reserved}
    names = []
    for key in keys:
        base = _UNSAFE_NAME.sub("_", key)[:max_length] or "table"
        name, counter = base, 2
        while name.lower() in taken:
            suffix = f"_{counter}"
            name = base[: max_length - len(suffix)] + suffix
            counter += 1
        taken.add(name.lower())
        names.append(name)
    return names


def write_zip(path: str | os.PathLike[str], entries: Iterable[tuple[str, bytes]], when: dt.datetime) -> None:
    """Write ``entries`` in the given order with fixed metadata, so equal content gives equal bytes."""
    stamp = utc(when)
    date_time = max(_ZIP_EPOCH, (stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second))
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix; the default depends on the platform that writes the zip
            info.external_attr = 0o644 << 16
            archive.writestr(info, data, compresslevel=6)


def csv_value(value: object) -> str:
    """A cell for CSV: numbers at full precision, missing as empty, text made formula-safe."""
    if is_missing(value):
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))  # shortest representation that round-trips
    if isinstance(value, dt.date | pd.Timestamp):
        return value.isoformat()
    return neutralise_formula(str(value))


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([neutralise_formula(column) for column in frame.columns])
    writer.writerows([csv_value(value) for value in row] for row in frame.itertuples(index=False, name=None))
    return buffer.getvalue().encode("utf-8")


def _readme(document: ReportDocument, files: list[tuple[str, str, str]]) -> bytes:
    lines = [
        document.title,
        "",
        f"Trial: {document.trial_code}",
        f"Marking: {document.marking}",
        f"Data cut-off: {document.cutoff.isoformat()}",
        f"Generated: {utc(document.generated_at):%Y-%m-%d %H:%M:%S} UTC",
        f"Confidentiality: {document.confidentiality}",
        "",
        "Files",
    ]
    for name, title, note in files:
        lines.append(f"  {name}: {title}")
        if note:
            lines.append(f"      {note}")
    lines += ["", "Provenance"]
    lines += [f"  {key}: {value}" for key, value in document.provenance.items()] or ["  (none recorded)"]
    lines += [
        "",
        "Format",
        "  UTF-8, comma-separated, one header row. Numbers are unformatted (full precision); an empty cell is a",
        "  missing value. Text that starts with = + - @, a tab or a carriage return is prefixed with ' so that",
        "  spreadsheet programs display it instead of running it as a formula.",
        "",
    ]
    return "\n".join(lines).encode("utf-8")


def render_csv_zip(document: ReportDocument, path: str | os.PathLike[str]) -> None:
    """Write every table of ``document`` as ``<key>.csv`` plus ``README.txt`` into a zip at ``path``."""
    tables = document.tables()
    names = safe_names((table.key for table in tables), max_length=100)
    entries = {f"{name}.csv": _csv_bytes(table_frame(table.frame)) for name, table in zip(names, tables, strict=True)}
    files = [(f"{name}.csv", table.title, table.note) for name, table in zip(names, tables, strict=True)]
    entries["README.txt"] = _readme(document, files)
    write_zip(path, sorted(entries.items()), document.generated_at)
