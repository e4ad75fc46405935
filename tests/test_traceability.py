"""The traceability plugin (R40): the catalog it reads and the matrix it writes."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.traceability import CATALOG, Matrix, read_catalog

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.req("R40")
def test_the_catalog_lists_r1_to_r40_once_each_with_a_title():
    catalog = read_catalog(CATALOG)

    assert list(catalog) == [f"R{number}" for number in range(1, 41)]
    assert all(title.strip() for title in catalog.values())
    assert catalog["R14"] == "Deny by default"


@pytest.mark.req("R40")
def test_the_matrix_shows_each_tests_worst_outcome_and_the_requirements_nobody_proves():
    # given three requirements, two tests for R1 (one failing in teardown), a skipped test for R2, none for R3
    matrix = Matrix({"R1": "Audit | record", "R2": "Append-only", "R3": "Tamper evidence"})
    matrix.add("tests/a.py::test_ok", ["R1"])
    matrix.add("tests/a.py::test_teardown_fails", ["R1"])
    matrix.add("tests/b.py::test_skipped", ["R2"])
    matrix.record("tests/a.py::test_ok", "passed")
    matrix.record("tests/a.py::test_teardown_fails", "passed")
    matrix.record("tests/a.py::test_teardown_fails", "failed")
    matrix.record("tests/b.py::test_skipped", "skipped")

    # when
    text = matrix.markdown(commit="abc123", when=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))

    # then
    assert matrix.unproven() == ["R2", "R3"]
    assert "| R1 | Audit \\| record | `tests/a.py::test_ok` | passed |" in text
    assert "| R1 |  | `tests/a.py::test_teardown_fails` | failed |" in text
    assert "| R2 | Append-only | `tests/b.py::test_skipped` | skipped |" in text
    assert "| R3 | Tamper evidence | — | **no test** |" in text
    assert text.rstrip().endswith("- R3 — Tamper evidence")
    assert "Commit: `abc123`" in text
    assert "with a passing test: 1" in text


def _run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "pytest", "-p", "tests.traceability", "-p", "no:cacheprovider", *args, str(folder)],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "EXOTRIAL_VAR_DIR": str(folder / "var"), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.req("R40")
def test_a_run_writes_the_matrix_and_refuses_unknown_requirement_ids(tmp_path):
    # given a throw-away test folder (its own rootdir, so the project's settings do not apply)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    req: requirement ids\n")
    (tmp_path / "test_sample.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.req("R14", "R15")
            def test_denied():
                pass

            @pytest.mark.req("R26")
            def test_broken():
                assert False
            """
        )
    )

    # when
    result = _run_pytest(tmp_path, "--rootdir", str(tmp_path), "-c", str(tmp_path / "pytest.ini"))

    # then
    matrix = (tmp_path / "var" / "traceability.md").read_text()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "| R14 | Deny by default | `test_sample.py::test_denied` | passed |" in matrix
    assert "| R26 | Input validation holds under fuzzing | `test_sample.py::test_broken` | failed |" in matrix
    assert "- R40 — Requirement-to-test traceability per release" in matrix

    # and a typo in an id stops the run instead of leaving a requirement silently unproven
    (tmp_path / "test_sample.py").write_text('import pytest\n\n@pytest.mark.req("R99")\ndef test_x():\n    pass\n')
    result = _run_pytest(tmp_path, "--rootdir", str(tmp_path), "-c", str(tmp_path / "pytest.ini"))
    assert result.returncode != 0
    assert "R99 not in requirements.md" in result.stdout + result.stderr
