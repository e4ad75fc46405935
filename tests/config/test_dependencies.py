"""The installed Django carries the fixes for the SQL-injection advisories R28 names (supply chain)."""

from __future__ import annotations

from importlib.metadata import version

import pytest
from packaging.version import Version

# First release of each supported series with both fixes: CVE-2024-42005 (JSONField values() key SQL injection,
# fixed in 4.2.15 / 5.0.8, before 5.1 was released) and CVE-2025-57833 (FilteredRelation column-alias SQL
# injection, fixed in 4.2.24 / 5.1.12 / 5.2.6). Newer series (5.3+) were released with both fixes.
PATCHED = {(4, 2): Version("4.2.24"), (5, 1): Version("5.1.12"), (5, 2): Version("5.2.6")}


def is_patched(installed: Version) -> bool:
    series = (installed.major, installed.minor)
    if series in PATCHED:
        return installed >= PATCHED[series]
    return series > max(PATCHED)


@pytest.mark.req("R28")
def test_installed_django_has_the_sql_injection_fixes():
    installed = Version(version("django"))
    assert is_patched(installed), f"Django {installed} lacks the CVE-2024-42005 / CVE-2025-57833 fixes"


@pytest.mark.req("R28")
@pytest.mark.parametrize(
    ("release", "patched"),
    [("5.2.5", False), ("5.2.6", True), ("5.1.11", False), ("5.0.14", False), ("4.2.23", False), ("6.0", True)],
)
def test_the_check_tells_vulnerable_releases_from_patched_ones(release, patched):
    assert is_patched(Version(release)) is patched
