"""``manage.py import_outcomes PROTOCOL FILE --user USERNAME [--commit]`` on the demo trial EXO-OA-201."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from participants.models import ImportJob, OutcomeMeasurement, Participant
from participants.services.locking import active_lock
from trials.demo import PROTOCOL_CODE

pytestmark = pytest.mark.django_db

FILES = Path(__file__).parent / "import_files"
HEADER = ["screening_number", "visit", "endpoint", "value", "unit", "measured_on"]


@pytest.fixture
def week26_candidate(demo_trial) -> tuple[Participant, dt.date]:
    """A randomized, unlocked participant at S01 (demo-site's site) without a week-26 visit, and a date for it."""
    candidates = (
        Participant.objects.filter(trial=demo_trial, site__code="S01", randomization__isnull=False)
        .exclude(visits__visit_definition__code="W26")
        .select_related("randomization")
        .order_by("screening_number")
    )
    for participant in candidates:
        week26 = participant.randomization.randomized_at.date() + dt.timedelta(days=182)
        if active_lock(participant) is None and week26 <= dt.datetime.now(tz=dt.UTC).date():
            return participant, week26
    pytest.fail("the demo data have no S01 participant without a week-26 visit")


def write(path: Path, rows: list[list[object]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def run_command(*args: str) -> str:
    out = io.StringIO()
    try:
        call_command("import_outcomes", *args, stdout=out)
    finally:
        run_command.output = out.getvalue()
    return out.getvalue()


def test_a_dry_run_is_the_default_and_writes_nothing(week26_candidate, tmp_path):
    participant, week26 = week26_candidate
    path = write(tmp_path / "w26.csv", [[participant.screening_number, "W26", "WOMACP", 35.5, "points", week26]])
    output = run_command(PROTOCOL_CODE, str(path), "--user", "demo-site")
    assert "Valid (dry run: nothing imported)" in output
    assert "rows in file:     1" in output
    assert "Dry run: the file is valid; nothing was written. Use --commit." in output
    assert not participant.visits.filter(visit_definition__code="W26").exists()
    assert ImportJob.objects.filter(trial__protocol_code=PROTOCOL_CODE).get().dry_run


def test_commit_imports_and_prints_the_counts(week26_candidate, tmp_path):
    participant, week26 = week26_candidate
    path = write(tmp_path / "w26.csv", [[participant.screening_number, "W26", "WOMACP", 35.5, "points", week26]])
    output = run_command(PROTOCOL_CODE, str(path), "--user", "demo-site", "--commit")
    assert "rows imported:    1" in output
    assert "Imported 1 rows." in output
    stored = OutcomeMeasurement.objects.get(visit__participant=participant, visit__visit_definition__code="W26")
    assert (stored.value, stored.unit, stored.measured_on) == (35.5, "points", week26)
    # the same file again: nothing new
    again = run_command(PROTOCOL_CODE, str(path), "--user", "demo-site", "--commit")
    assert "rows imported:    0" in again
    assert "rows unchanged:   1" in again


def test_an_invalid_file_prints_the_errors_by_row_and_column_and_fails(week26_candidate, demo_trial, tmp_path):
    participant, week26 = week26_candidate
    other_site = Participant.objects.filter(trial=demo_trial, site__code="S02").order_by("screening_number").first()
    rows = [
        [participant.screening_number, "W26", "WOMACP", 35.5, "points", week26],
        [participant.screening_number, "W27", "WOMACP", 35.5, "points", week26],
        [other_site.screening_number, "W26", "WOMACP", 35.5, "points", week26],
    ]
    path = write(tmp_path / "bad.csv", rows)
    with pytest.raises(CommandError, match=r"The file is invalid \(2 error\(s\)\); nothing was imported.") as failed:
        run_command(PROTOCOL_CODE, str(path), "--user", "demo-site", "--commit")
    assert failed.value.returncode == 1
    output = run_command.output
    assert "row 3, visit [visit_unknown]: No visit 'W27' in the schedule of EXO-OA-201" in output
    assert f"row 4, screening_number [participant_site]: {other_site.screening_number} is at site S02" in output
    assert not participant.visits.filter(visit_definition__code="W26").exists()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "bad_header.csv",
            ["row 1, units [unknown_column]", "row 1, comment [unknown_column]", "row 1, unit [missing_column]"],
        ),
        ("semicolons.csv", ["row 1 [columns]: The header is separated by semicolons"]),
    ],
)
def test_header_problems_in_fixture_files_are_reported(demo_trial, name, expected):
    with pytest.raises(CommandError, match="The file is invalid"):
        run_command(PROTOCOL_CODE, str(FILES / name), "--user", "demo-site")
    for line in expected:
        assert line in run_command.output


def test_a_role_without_data_entry_is_refused(demo_trial, tmp_path):
    path = write(tmp_path / "any.csv", [["S01-0001", "W26", "WOMACP", 35.5, "points", "2025-09-01"]])
    with pytest.raises(CommandError, match="does not allow this"):
        run_command(PROTOCOL_CODE, str(path), "--user", "demo-monitor")
    assert not ImportJob.objects.filter(trial=demo_trial).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((PROTOCOL_CODE, "--user", "nobody"), "No user 'nobody'."),
        (("EXO-NOPE-1", "--user", "demo-site"), "No trial 'EXO-NOPE-1'."),
    ],
)
def test_unknown_user_or_trial(demo_trial, tmp_path, args, message):
    path = write(tmp_path / "any.csv", [])
    protocol, *options = args
    with pytest.raises(CommandError, match=message):
        run_command(protocol, str(path), *options)


def test_the_command_line_exits_non_zero_on_an_error(demo_trial, tmp_path):
    path = write(tmp_path / "any.csv", [])
    db = connection.settings_dict
    host = quote(db["HOST"], safe="") if db["HOST"].startswith("/") else db["HOST"]
    url = f"postgres://{quote(db['USER'], safe='')}@{host}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": url}
    result = subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", "import_outcomes", "EXO-NOPE-1", str(path), "--user", "demo-site"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 1
    assert "No trial 'EXO-NOPE-1'." in result.stderr
