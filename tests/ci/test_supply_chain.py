"""The CI supply-chain gate (.ci/supply_chain.py, R28): what fails the build and what a reviewed entry excuses."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "supply_chain.py"


@pytest.fixture(scope="module")
def gate():
    spec = importlib.util.spec_from_file_location("supply_chain", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["supply_chain"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    del sys.modules["supply_chain"]


def audit_report(*dependencies):
    return {"dependencies": list(dependencies), "fixes": []}


@pytest.mark.req("R28")
def test_an_unreachable_vulnerability_service_is_a_failure_not_a_clean_audit(gate):
    report = audit_report(
        {"name": "django", "skip_reason": "Dependency not found on PyPI and could not be audited: django (5.2.19)"},
        {"name": "exotrial", "skip_reason": "distribution marked as editable"},
    )
    findings, unaudited = gate.pip_audit_findings(report)
    assert findings == []
    assert unaudited == ["django"]  # our own editable package is audited through its dependencies


@pytest.mark.req("R28")
def test_a_vulnerability_fails_unless_a_reviewed_entry_names_it_or_an_alias(gate):
    report = audit_report(
        {
            "name": "django",
            "version": "5.0.7",
            "vulns": [{"id": "GHSA-pv4p-cwwg-4rph", "fix_versions": ["5.0.8"], "aliases": ["CVE-2024-42005"]}],
        }
    )
    [finding] = gate.pip_audit_findings(report)[0]
    assert not gate.explained(finding, [])
    assert not gate.explained(finding, [{"id": "CVE-2024-0000", "why": "x", "reviewer": "y"}])
    assert gate.explained(finding, [{"id": "CVE-2024-42005", "why": "x", "reviewer": "y"}])


@pytest.mark.req("R28")
def test_a_bandit_entry_excuses_only_the_reviewed_code_in_its_file(gate):
    report = {
        "results": [
            {
                "test_id": "B608",
                "filename": "participants/exports.py",
                "line_number": 12,
                "issue_severity": "MEDIUM",
                "issue_confidence": "LOW",
                "issue_text": "Possible SQL injection",
                "code": '12 sql = f"SELECT {columns} FROM t"\n',
            }
        ]
    }
    [finding] = gate.bandit_findings(report)
    entry = {"id": "B608", "file": "participants/exports.py", "match": "SELECT {columns}", "why": "w", "reviewer": "r"}
    assert gate.explained(finding, [entry])
    assert not gate.explained(finding, [{**entry, "match": "DELETE FROM {table}"}])
    assert not gate.explained(finding, [{**entry, "file": "participants/imports.py"}])
    assert not gate.explained(finding, [{**entry, "id": "B703"}])


@pytest.mark.req("R28")
def test_every_entry_of_the_committed_allow_list_is_reviewed(gate):
    allowlist = gate.read_allowlist()  # raises on an entry without id, why, reviewer (or file, for bandit)
    entries = [entry for tool_entries in allowlist.values() for entry in tool_entries]
    assert entries
    assert all(entry["why"].strip() and entry["reviewer"].strip() for entry in entries)


@pytest.mark.req("R28")
def test_an_entry_without_a_reason_is_refused(gate, tmp_path):
    path = tmp_path / "allow.toml"
    path.write_text('[[bandit]]\nid = "B608"\nfile = "x.py"\nwhy = ""\nreviewer = "me"\n')
    with pytest.raises(SystemExit, match="lacks why"):
        gate.read_allowlist(path)


@pytest.mark.req("R28")
@pytest.mark.parametrize("required", ["", "1"])
def test_an_audit_that_reached_no_service_is_named_not_done_and_fails_only_when_required(gate, monkeypatch, required):
    offline = audit_report(
        {"name": "django", "skip_reason": "Dependency not found on PyPI and could not be audited: django (5.2.19)"},
        {"name": "celery", "skip_reason": "Dependency not found on PyPI and could not be audited: celery (5.7.0)"},
    )
    monkeypatch.setattr(gate, "_run_json", lambda command, ok_codes: offline)
    monkeypatch.setattr(gate, "NOT_DONE", [])
    monkeypatch.setenv("PIP_AUDIT_REQUIRED", required)

    problems = gate.run_pip_audit({"pip-audit": [], "bandit": []})

    if required:
        assert len(problems) == 1
        assert "could not check 2 of 2" in problems[0]
    else:
        assert problems == []
        assert gate.NOT_DONE == ["pip-audit"]
