"""Requirement-to-test traceability (R40): a pytest plugin that writes ``var/traceability.md`` after a run.

A test proves requirements by carrying ``@pytest.mark.req("R14", "R15")``. The catalog of requirements is
``tests/requirements.md``; an id that is not in it is a collection error, so a typo cannot silently leave a
requirement unproven. The matrix lists, for every requirement, the tests that prove it and their outcome in
this run, then the requirements that no collected test proves — the evidence archived with a release.

``--require-traceability`` also fails the run when any requirement has no passing test.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CATALOG = Path(__file__).with_name("requirements.md")
REQUIREMENT_LINE = re.compile(r"^- (R\d+) — (.+)$")
OUTCOME_RANK = {"passed": 0, "skipped": 1, "failed": 2}  # a test's outcome is its worst phase


def read_catalog(path: Path = CATALOG) -> dict[str, str]:
    """Requirement id → title, in catalog order."""
    catalog = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = REQUIREMENT_LINE.match(line.strip())
        if match:
            catalog[match[1]] = match[2].strip()
    if not catalog:
        raise pytest.UsageError(f"{path} lists no requirements (expected lines like '- R1 — Title').")
    return catalog


def requirement_ids(item: pytest.Item) -> list[str]:
    ids = []
    for marker in item.iter_markers("req"):
        for value in marker.args:
            ids += [part.strip() for part in str(value).split(",") if part.strip()]
    return sorted(set(ids), key=_numeric_order)


def _numeric_order(requirement: str) -> tuple[int, str]:
    digits = requirement.removeprefix("R")
    return (int(digits), requirement) if digits.isdigit() else (10**6, requirement)


@dataclass
class Matrix:
    catalog: Mapping[str, str]
    tests: dict[str, list[str]] = field(default_factory=dict)  # requirement → node ids
    outcomes: dict[str, str] = field(default_factory=dict)  # node id → passed/failed/skipped

    def add(self, node_id: str, requirements: Iterable[str]) -> None:
        for requirement in requirements:
            self.tests.setdefault(requirement, []).append(node_id)

    def record(self, node_id: str, outcome: str) -> None:
        previous = self.outcomes.get(node_id, "passed")
        self.outcomes[node_id] = max(previous, outcome, key=OUTCOME_RANK.__getitem__)

    def outcome(self, node_id: str) -> str:
        return self.outcomes.get(node_id, "not run")

    def unproven(self) -> list[str]:
        """Requirements without a passing test in this run."""
        return [
            requirement
            for requirement in self.catalog
            if not any(self.outcome(node) == "passed" for node in self.tests.get(requirement, []))
        ]

    def markdown(self, *, commit: str, when: dt.datetime) -> str:
        lines = [
            "# Requirement traceability",
            "",
            f"- Commit: `{commit}`",
            f"- Run at: {when:%Y-%m-%d %H:%M:%S} UTC",
            f"- Requirements: {len(self.catalog)}; with a passing test: {len(self.catalog) - len(self.unproven())}",
            "",
            "| Requirement | Title | Test | Result |",
            "|---|---|---|---|",
        ]
        for requirement, title in self.catalog.items():
            nodes = self.tests.get(requirement, [])
            if not nodes:
                lines.append(f"| {requirement} | {_cell(title)} | — | **no test** |")
            for index, node in enumerate(nodes):
                shown_title = _cell(title) if index == 0 else ""
                lines.append(f"| {requirement} | {shown_title} | `{_cell(node)}` | {self.outcome(node)} |")
        untested = [requirement for requirement in self.catalog if requirement not in self.tests]
        lines += ["", "## Requirements with no test in this run", ""]
        lines += [f"- {requirement} — {self.catalog[requirement]}" for requirement in untested] or ["(none)"]
        return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def git_commit(repository: Path) -> str:
    """HEAD's commit, read from the .git folder (no git binary needed); "unknown" outside a checkout."""
    git = repository / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head.removeprefix("ref: ")
        if (git / ref).exists():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0]
    except OSError:
        pass
    return "unknown"


def output_path(root: Path) -> Path:
    # The same folder the settings use for everything generated at run time.
    return Path(os.environ.get("EXOTRIAL_VAR_DIR", root / "var")) / "traceability.md"


class TraceabilityPlugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.matrix = Matrix(read_catalog())

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            requirements = requirement_ids(item)
            unknown = [requirement for requirement in requirements if requirement not in self.matrix.catalog]
            if unknown:
                raise pytest.UsageError(f"{item.nodeid}: {', '.join(unknown)} not in {CATALOG.name}")
            self.matrix.add(item.nodeid, requirements)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or report.outcome != "passed":
            self.matrix.record(report.nodeid, report.outcome)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.config.option.collectonly or not self.matrix.outcomes:
            return
        path = output_path(self.config.rootpath)
        path.parent.mkdir(parents=True, exist_ok=True)
        when = dt.datetime.now(dt.UTC)
        path.write_text(self.matrix.markdown(commit=git_commit(self.config.rootpath), when=when), encoding="utf-8")
        if self.config.option.require_traceability and self.matrix.unproven():
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.config.option.collectonly or not self.matrix.outcomes:
            return
        unproven = self.matrix.unproven()
        terminalreporter.write_line(
            f"traceability: {output_path(self.config.rootpath)} — "
            f"{len(self.matrix.catalog) - len(unproven)}/{len(self.matrix.catalog)} requirements with a passing test"
        )
        if self.config.option.require_traceability and unproven:
            terminalreporter.write_line(f"traceability: no passing test for {', '.join(unproven)}", red=True)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-traceability",
        action="store_true",
        default=False,
        help="fail the run if a requirement of tests/requirements.md has no passing test",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(TraceabilityPlugin(config), "exotrial-traceability")
