"""Supply-chain and static security checks for CI (R28): pip-audit on the installed environment and bandit
(medium severity and up) on the application code. Fails on any finding that the reviewed allow-list
(.ci/security-allowlist.toml) does not explain.

When pip-audit cannot reach its vulnerability service (a build machine without internet access: PyPI's JSON API
and OSV both unreachable), the audit is reported loudly as NOT DONE — never as "no known vulnerabilities" — and
fails the build only with PIP_AUDIT_REQUIRED=1, which machines that do have internet access should set. Some
dependencies checked and others not is always a failure.

Usage: python .ci/supply_chain.py [--only pip-audit|bandit]
Environment: PIP_AUDIT_SERVICE = pypi (default) or osv; PIP_AUDIT_REQUIRED = 1 to fail when the audit cannot run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWLIST = Path(__file__).with_name("security-allowlist.toml")
BANDIT_TARGETS = ["config", "trials", "participants", "analysis", "audit", "accounts"]
OWN_DISTRIBUTION = "exotrial"  # installed editable: not on PyPI, audited through its dependencies instead
REQUIRED_KEYS = {"id", "why", "reviewer"}
NOT_DONE: list[str] = []  # checks that could not run here; named in the summary line, never reported as passed


@dataclass(frozen=True)
class Finding:
    tool: str
    id: str
    where: str
    text: str
    code: str = ""


def read_allowlist(path: Path = ALLOWLIST) -> dict[str, list[dict]]:
    """The reviewed exceptions, per tool; an entry without id, why and reviewer is an error."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for tool in ("pip-audit", "bandit"):
        for entry in data.get(tool, []):
            missing = REQUIRED_KEYS - {key for key, value in entry.items() if str(value).strip()}
            if missing:
                raise SystemExit(f"{path.name}: {tool} entry {entry.get('id', '?')} lacks {', '.join(sorted(missing))}")
            if tool == "bandit" and not entry.get("file"):
                raise SystemExit(f"{path.name}: bandit entry {entry['id']} must name the file it applies to")
    return {"pip-audit": data.get("pip-audit", []), "bandit": data.get("bandit", [])}


def pip_audit_findings(report: dict) -> tuple[list[Finding], list[str]]:
    """Known vulnerabilities, and the dependencies that could not be audited, from ``pip-audit -f json``."""
    findings, unaudited = [], []
    for dependency in report.get("dependencies", []):
        name, version = dependency["name"], dependency.get("version", "")
        if "skip_reason" in dependency:
            if name != OWN_DISTRIBUTION:
                unaudited.append(name)
            continue
        for vulnerability in dependency.get("vulns", []):
            fixed = ", ".join(vulnerability.get("fix_versions", [])) or "no fix released"
            findings.append(
                Finding(
                    "pip-audit",
                    vulnerability["id"],
                    f"{name} {version}",
                    f"fixed in {fixed}; aliases {', '.join(vulnerability.get('aliases', [])) or '-'}",
                    " ".join(vulnerability.get("aliases", [])),
                )
            )
    return findings, unaudited


def bandit_findings(report: dict) -> list[Finding]:
    return [
        Finding(
            "bandit",
            result["test_id"],
            f"{result['filename']}:{result['line_number']}",
            f"{result['issue_severity']}/{result['issue_confidence']}: {result['issue_text']}",
            result.get("code", ""),
        )
        for result in report.get("results", [])
    ]


def explained(finding: Finding, entries: list[dict]) -> bool:
    """An allow-list entry explains a finding with the same id (or alias); for bandit also the same file and,
    if the entry gives ``match``, flagged code containing it — line numbers move, the code does not."""
    for entry in entries:
        if finding.tool == "pip-audit":
            if entry["id"] == finding.id or entry["id"] in finding.code.split():
                return True
            continue
        same_file = finding.where.rsplit(":", 1)[0] == entry["file"]
        if entry["id"] == finding.id and same_file and entry.get("match", "") in finding.code:
            return True
    return False


def _run_json(command: list[str], ok_codes: set[int]) -> dict:
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603
    if completed.returncode not in ok_codes or not completed.stdout.strip():
        sys.stderr.write(completed.stderr)
        raise SystemExit(f"{' '.join(command[:3])} … failed (exit {completed.returncode}); see the output above")
    return json.loads(completed.stdout)


def run_pip_audit(allowlist: dict[str, list[dict]]) -> list[str]:
    service = os.environ.get("PIP_AUDIT_SERVICE", "pypi")
    command = [sys.executable, "-m", "pip_audit", "--progress-spinner", "off", "--skip-editable", "-f", "json"]
    command += ["--vulnerability-service", service]
    report = _run_json(command, ok_codes={0, 1})  # 1 = vulnerabilities found; judged below
    findings, unaudited = pip_audit_findings(report)
    problems = []
    audited = [dep for dep in report["dependencies"] if "skip_reason" not in dep]
    if unaudited and not audited and os.environ.get("PIP_AUDIT_REQUIRED") != "1":
        print(
            f"SECURITY WARNING: pip-audit NOT DONE — the {service!r} vulnerability service answered for none of the "
            f"{len(unaudited)} distributions (no internet access?). Set PIP_AUDIT_REQUIRED=1 to fail instead.",
            file=sys.stderr,
        )
        NOT_DONE.append("pip-audit")
        return problems
    if unaudited:
        reasons = {dep.get("skip_reason", "") for dep in report["dependencies"] if dep["name"] == unaudited[0]}
        problems.append(
            f"pip-audit could not check {len(unaudited)} of {len(report['dependencies'])} distributions with the "
            f"{service!r} vulnerability service ({', '.join(unaudited)}); first reason: {reasons.pop()}. Is the "
            "service reachable from here? (PIP_AUDIT_SERVICE=osv selects OSV instead of PyPI.)"
        )
    problems += [_describe(f) for f in findings if not explained(f, allowlist["pip-audit"])]
    return problems


def run_bandit(allowlist: dict[str, list[dict]]) -> list[str]:
    targets = [target for target in BANDIT_TARGETS if (ROOT / target).is_dir()]
    command = [sys.executable, "-m", "bandit", "-q", "-r", *targets, "-ll", "-f", "json"]
    report = _run_json(command, ok_codes={0, 1})  # 1 = issues found; judged below
    problems = [f"bandit could not scan {error['filename']}: {error['reason']}" for error in report.get("errors", [])]
    return problems + [_describe(f) for f in bandit_findings(report) if not explained(f, allowlist["bandit"])]


def _describe(finding: Finding) -> str:
    return f"{finding.tool} {finding.id} at {finding.where}: {finding.text} (not in {ALLOWLIST.name})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["pip-audit", "bandit"])
    args = parser.parse_args()
    allowlist = read_allowlist()
    problems = []
    if args.only in (None, "bandit"):
        problems += run_bandit(allowlist)
    if args.only in (None, "pip-audit"):
        problems += run_pip_audit(allowlist)
    for problem in problems:
        print(f"SECURITY: {problem}", file=sys.stderr)
    not_done = f"; NOT DONE: {', '.join(NOT_DONE)}" if NOT_DONE else ""
    print(f"supply-chain checks: {'FAILED' if problems else 'passed'} ({len(problems)} problem(s)){not_done}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
