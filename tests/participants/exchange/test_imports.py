"""Bulk import of outcome measurements: every rule, all or nothing, audit context, site scope, CSV = XLSX."""

from __future__ import annotations

import csv
import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import connection
from openpyxl import Workbook

from audit.context import INITIAL_ENTRY, audit_context
from participants.exchange import imports
from participants.exchange.imports import CHECKS, import_job_create, import_outcomes
from participants.models import (
    ImportJob,
    OutcomeMeasurement,
    Participant,
    ProtocolDeviation,
    Randomization,
    RecordLock,
    Visit,
)
from participants.tasks import run_import_job
from trials.models import Arm, Endpoint, MembershipSite, Role, Site, Trial, TrialMembership, VisitDefinition

pytestmark = pytest.mark.django_db

HEADER = ["screening_number", "visit", "endpoint", "value", "unit", "measured_on", "event", "not_done_reason"]
FIRST_SCREENING = dt.date(2025, 1, 6)
# endpoint code → (kind, unit, min, max, visit codes)
ENDPOINTS = {
    "PAIN": ("continuous", "points", 0, 100, ("BL", "W4", "W12")),
    "RESP": ("binary", "", 0, 1, ("W12",)),
    "FLARES": ("count", "flares", 0, 50, ("W4", "W12")),
    "TTRESC": ("time_to_event", "days", 0, 400, ("W12",)),
    "BIOM": ("continuous", "relative expression", 0.001, 1000, ("BL",)),
}
VISITS = [("SCR", -14, 14, 13, False), ("BL", 0, 0, 0, True), ("W4", 28, 7, 7, False), ("W12", 84, 7, 14, False)]


@dataclass
class ImportTrial:
    trial: Trial
    sites: dict[str, Site]
    users: dict[str, object]
    participants: dict[str, list[Participant]] = field(default_factory=dict)
    waiting: Participant | None = None

    def day0(self, participant: Participant) -> dt.date:
        return participant.randomization.randomized_at.date()

    def date(self, participant: Participant, visit: str) -> dt.date:
        """The scheduled (target) date of ``visit`` for ``participant``."""
        offsets = {"BL": 0, "W4": 28, "W12": 84}
        return self.day0(participant) + dt.timedelta(days=offsets[visit])


def build_import_trial(*, per_site: int = 4, code: str = "TST-IMP-1") -> ImportTrial:
    """A randomized trial with two sites, four visits, one endpoint of every kind and ``per_site`` participants."""
    user_model = get_user_model()
    with audit_context(reason=INITIAL_ENTRY):
        trial = Trial.objects.create(
            protocol_code=code, title="Import test", phase="II", status="recruiting", target_enrollment=1000
        )
        sites = {c: Site.objects.create(trial=trial, code=c, name=f"Site {c}", country="GB") for c in ("S01", "S02")}
        arm = Arm.objects.create(
            trial=trial, code="PBO", name="Placebo", role="placebo_comparator", route="intravenous"
        )
        visits = {}
        for order, (visit_code, day, before, after, baseline) in enumerate(VISITS, start=1):
            visits[visit_code] = VisitDefinition.objects.create(
                trial=trial,
                code=visit_code,
                name=f"Visit {visit_code}",
                order=order,
                target_day=day,
                window_before_days=before,
                window_after_days=after,
                is_baseline=baseline,
            )
        for rank, (endpoint_code, (kind, unit, low, high, at)) in enumerate(ENDPOINTS.items()):
            endpoint = Endpoint.objects.create(
                trial=trial,
                code=endpoint_code,
                name=endpoint_code.title(),
                kind=kind,
                unit=unit,
                min_value=low,
                max_value=high,
                role="primary" if rank == 0 else "secondary",
                direction="lower_better",
                rank=rank,
            )
            endpoint.visits.set([visits[v] for v in at])
        users = {}
        for name, role, site_codes in (
            ("nurse-S01", Role.SITE_STAFF, ["S01"]),
            ("nurse-S02", Role.SITE_STAFF, ["S02"]),
            ("nurse-all", Role.SITE_STAFF, ["S01", "S02"]),
            ("monitor", Role.MONITOR, ["S01"]),
            ("manager", Role.DATA_MANAGER, []),
        ):
            user = user_model.objects.create_user(f"{code}-{name}", first_name=name, password="x-pass-1234")
            membership = TrialMembership.objects.create(user=user, trial=trial, role=role)
            for site_code in site_codes:
                MembershipSite.objects.create(membership=membership, site=sites[site_code])
            users[name] = user
        result = ImportTrial(trial=trial, sites=sites, users=users)
        people, randomizations = [], []
        for site_code, site in sites.items():
            for index in range(per_site):
                screened = FIRST_SCREENING + dt.timedelta(days=index % 300)
                people.append(
                    Participant(
                        trial=trial,
                        site=site,
                        screening_number=f"{site_code}-{index + 1:04d}",
                        status="randomized",
                        screened_on=screened,
                        sex="F",
                        birth_year=1960,
                        age_at_screening=65,
                        consent_date=screened,
                        consent_version="1.0",
                    )
                )
        Participant.objects.bulk_create(people)
        for number, participant in enumerate(people, start=1):
            randomizations.append(
                Randomization(
                    trial=trial,
                    participant=participant,
                    arm=arm,
                    randomization_number=f"R{number:05d}",
                    stratum=f"site={participant.site.code}",
                    randomized_at=dt.datetime.combine(
                        participant.screened_on + dt.timedelta(days=7), dt.time(23, 30), tzinfo=dt.UTC
                    ),
                    randomized_by=users["nurse-all"],
                )
            )
        Randomization.objects.bulk_create(randomizations)
        for participant, randomization in zip(people, randomizations, strict=True):
            participant.randomization = randomization
            result.participants.setdefault(participant.site.code, []).append(participant)
        result.waiting = Participant.objects.create(
            trial=trial,
            site=sites["S01"],
            screening_number="S01-E001",
            status="eligible",
            screened_on=dt.date(2026, 11, 2),
            sex="M",
            birth_year=1955,
            age_at_screening=71,
            consent_date=dt.date(2026, 11, 2),
            consent_version="1.0",
        )
    return result


@pytest.fixture
def setup():
    return build_import_trial()


def write_csv(path: Path, rows: list[list[object]], header: list[str] = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(["" if value is None else value for value in row] for row in rows)
    return path


def write_xlsx(path: Path, rows: list[list[object]], header: list[str] = HEADER) -> Path:
    """The same rows as a workbook, with real date and number cells where the CSV has text."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("outcomes")
    sheet.append(header)
    for row in rows:
        sheet.append([None if value == "" else value for value in row])
    workbook.save(path)
    return path


def run(setup: ImportTrial, path: Path, *, user: str = "nurse-all", dry_run: bool = False) -> ImportJob:
    return import_outcomes(trial=setup.trial, user=setup.users[user], path=path, file_name=path.name, dry_run=dry_run)


def error_keys(job: ImportJob) -> set[tuple[int | None, str | None, str]]:
    return {(error["row"], error["column"], error["code"]) for error in job.errors}


def measurement_count(trial: Trial) -> int:
    return OutcomeMeasurement.objects.filter(visit__participant__trial=trial).count()


def clean_rows(setup: ImportTrial) -> list[list[object]]:
    """Four participants at both sites: baseline (two days after randomization), a late week 4, week 12 in full."""
    rows = []
    for participant in [*setup.participants["S01"][:2], *setup.participants["S02"][:2]]:
        number = participant.screening_number
        baseline = setup.date(participant, "BL") + dt.timedelta(days=2)
        week4 = setup.date(participant, "W4") + dt.timedelta(days=12)  # study day 38: outside 21–35
        week12 = setup.date(participant, "W12")
        rows += [
            [number, "BL", "PAIN", 62.5, "points", baseline, "", ""],
            [number, "BL", "BIOM", 1.234, "relative expression", baseline, "", ""],
            [number, "W4", "PAIN", 50, "points", week4, "", ""],
            [number, "W4", "FLARES", "", "", week4, "", "Diary not returned"],
            [number, "W12", "PAIN", 41.5, "points", week12, "", ""],
            [number, "W12", "RESP", 1, "", week12, "", ""],
            [number, "W12", "FLARES", 3, "flares", week12, "", ""],
            [number, "W12", "TTRESC", 70.5, "days", week12, 1, ""],
        ]
    return rows


# --- one error of each kind ------------------------------------------------------------------------------------


@pytest.fixture
def error_case(setup):
    """A file with two valid rows and one row per error code; returns (rows, expected {(row, column, code)})."""
    p1, p2, p3 = setup.participants["S01"][:3]
    p5, p6, p7 = (build_extra_participant(setup, f"S01-005{i}") for i in (5, 6, 7))
    s02 = setup.participants["S02"][0]
    d = setup.date
    with audit_context(reason=INITIAL_ENTRY):
        week4 = Visit.objects.create(
            participant=p2,
            visit_definition=setup.trial.visit_definitions.get(code="W4"),
            visit_date=d(p2, "W4"),
            study_day=28,
            in_window=True,
        )
        OutcomeMeasurement.objects.create(
            visit=week4,
            endpoint=setup.trial.endpoints.get(code="PAIN"),
            value=40.0,
            unit="points",
            measured_on=d(p2, "W4"),
        )
        Visit.objects.create(
            participant=p2,
            visit_definition=setup.trial.visit_definitions.get(code="W12"),
            status="missed",
            missed_reason="Travelling",
        )
        RecordLock.objects.create(
            trial=setup.trial, participant=p3, locked_by=setup.users["manager"], reason="Casebook signed"
        )
    n = lambda participant: participant.screening_number  # noqa: E731
    rows_and_codes = [
        ([n(p1), "BL", "PAIN", 50, "points", d(p1, "BL"), "", ""], None),
        ([n(p1), "W4", "PAIN", 30, "points", d(p1, "W4"), "", ""], None),
        (["S01-9999", "BL", "PAIN", 50, "points", d(p1, "BL"), "", ""], ("screening_number", "participant_unknown")),
        ([n(s02), "BL", "PAIN", 50, "points", d(s02, "BL"), "", ""], ("screening_number", "participant_site")),
        (
            [n(setup.waiting), "BL", "PAIN", 50, "points", dt.date(2026, 11, 3), "", ""],
            ("screening_number", "participant_not_randomized"),
        ),
        ([n(p3), "BL", "PAIN", 50, "points", d(p3, "BL"), "", ""], ("screening_number", "participant_locked")),
        ([n(p1), "W99", "PAIN", 50, "points", d(p1, "BL"), "", ""], ("visit", "visit_unknown")),
        ([n(p2), "W12", "PAIN", 30, "points", d(p2, "W12"), "", ""], ("visit", "visit_missed")),
        ([n(p1), "BL", "NOPE", 1, "", d(p1, "BL"), "", ""], ("endpoint", "endpoint_unknown")),
        ([n(p1), "W4", "RESP", 1, "", d(p1, "W4"), "", ""], ("endpoint", "endpoint_not_at_visit")),
        ([n(p1), "BL", "PAIN", 50, "points", d(p1, "BL"), "", ""], ("endpoint", "duplicate")),
        ([n(p6), "W12", "RESP", "", "", d(p6, "W12"), "", ""], ("value", "value_missing")),
        ([n(p5), "BL", "PAIN", "4,5", "points", d(p5, "BL"), "", ""], ("value", "not_a_number")),
        ([n(p5), "W12", "RESP", 2, "", d(p5, "W12"), "", ""], ("value", "not_binary")),
        ([n(p5), "W12", "FLARES", 2.5, "flares", d(p5, "W12"), "", ""], ("value", "not_whole")),
        ([n(p5), "W12", "PAIN", 150, "points", d(p5, "W12"), "", ""], ("value", "out_of_range")),
        ([n(p2), "W4", "PAIN", 41, "points", d(p2, "W4"), "", ""], ("value", "stored_value_differs")),
        ([n(p5), "W4", "PAIN", 30, "mm", d(p5, "W4"), "", ""], ("unit", "unit_mismatch")),
        ([n(p5), "W4", "FLARES", 1, "flares", "2025-02-30", "", ""], ("measured_on", "date_invalid")),
        ([n(p7), "W12", "PAIN", 30, "points", "2030-01-01", "", ""], ("measured_on", "date_future")),
        (
            [n(p7), "BL", "PAIN", 30, "points", p7.screened_on - dt.timedelta(days=1), "", ""],
            ("measured_on", "date_before_screening"),
        ),
        (
            [n(p2), "W4", "FLARES", 1, "flares", d(p2, "W4") + dt.timedelta(days=1), "", ""],
            ("measured_on", "visit_date_differs"),
        ),
        (
            [n(p1), "W4", "FLARES", 1, "flares", d(p1, "W4") + dt.timedelta(days=1), "", ""],
            ("measured_on", "visit_date_conflict"),
        ),
        ([n(p1), "W12", "TTRESC", 100, "days", d(p1, "W12"), "", ""], ("event", "event_missing")),
        ([n(p6), "W12", "TTRESC", 100, "days", d(p6, "W12"), "yes", ""], ("event", "event_invalid")),
        ([n(p6), "W12", "PAIN", 30, "points", d(p6, "W12"), 1, ""], ("event", "event_not_allowed")),
        (
            [n(p6), "W12", "FLARES", 1, "flares", d(p6, "W12"), "", "Sample lost"],
            ("not_done_reason", "value_and_reason"),
        ),
        ([n(p6), "BL", "PAIN", "", "", d(p6, "BL"), "", "x" * 301], ("not_done_reason", "reason_too_long")),
        ([n(p6), "BL", "BIOM", 1.5, "relative expression", d(p6, "BL"), "", "", "stray"], (None, "row_length")),
    ]
    rows = [row for row, _ in rows_and_codes]
    expected = {
        (row_no, expectation[0], expectation[1])
        for row_no, (_, expectation) in enumerate(rows_and_codes, start=2)
        if expectation is not None
    }
    return rows, expected


def build_extra_participant(setup: ImportTrial, number: str) -> Participant:
    with audit_context(reason=INITIAL_ENTRY):
        participant = Participant.objects.create(
            trial=setup.trial,
            site=setup.sites["S01"],
            screening_number=number,
            status="randomized",
            screened_on=dt.date(2025, 3, 3),
            sex="F",
            birth_year=1962,
            age_at_screening=63,
            consent_date=dt.date(2025, 3, 3),
            consent_version="1.0",
        )
        Randomization.objects.create(
            trial=setup.trial,
            participant=participant,
            arm=setup.trial.arms.get(),
            randomization_number=f"X{number}",
            stratum="site=S01",
            randomized_at=dt.datetime(2025, 3, 10, 9, 0, tzinfo=dt.UTC),
            randomized_by=setup.users["nurse-all"],
        )
    return participant


def test_a_file_with_one_error_of_each_kind_reports_exactly_those_and_imports_nothing(setup, error_case, tmp_path):
    # given
    rows, expected = error_case
    assert {code for _, _, code in expected} == {check.code for check in CHECKS}, "every check has a case here"
    measurements, visits = measurement_count(setup.trial), Visit.objects.filter(participant__trial=setup.trial).count()
    # when
    job = run(setup, write_csv(tmp_path / "errors.csv", rows), user="nurse-S01")
    # then
    assert job.status == ImportJob.Status.INVALID
    assert error_keys(job) == expected
    assert job.error_count == len(expected) == len(job.errors)
    assert job.rows_total == len(rows)
    assert job.rows_imported == 0
    assert measurement_count(setup.trial) == measurements
    assert Visit.objects.filter(participant__trial=setup.trial).count() == visits
    # and the messages say what is wrong with the value, in the form's words where the form has them
    messages = {(error["row"], error["code"]): error["message"] for error in job.errors}
    pain = setup.trial.endpoints.get(code="PAIN")
    out_of_range_row = next(row for row, _, code in expected if code == "out_of_range")
    assert messages[(out_of_range_row, "out_of_range")] == pain.range_error(150) == "Must be at most 100 points."
    locked_row = next(row for row, _, code in expected if code == "participant_locked")
    assert "Casebook signed" in messages[(locked_row, "participant_locked")]
    conflict_row = next(row for row, _, code in expected if code == "stored_value_differs")
    assert "PAIN = 40 on" in messages[(conflict_row, "stored_value_differs")]
    duplicate_row = next(row for row, _, code in expected if code == "duplicate")
    assert messages[(duplicate_row, "duplicate")].startswith("Row 2 already gives PAIN")
    site_row = next(row for row, _, code in expected if code == "participant_site")
    assert "site S02" in messages[(site_row, "participant_site")]


def test_the_same_file_as_xlsx_gives_the_same_errors(setup, error_case, tmp_path):
    rows, expected = error_case
    job = run(setup, write_xlsx(tmp_path / "errors.xlsx", rows), user="nurse-S01")
    assert job.status == ImportJob.Status.INVALID
    assert error_keys(job) == expected


# --- a clean file ----------------------------------------------------------------------------------------------


def test_a_clean_file_imports_every_row_with_audit_events_naming_the_user_and_the_job(setup, tmp_path):
    # given
    rows = clean_rows(setup)
    user = setup.users["nurse-all"]
    # when
    job = run(setup, write_csv(tmp_path / "week12 results.csv", rows))
    # then
    assert job.status == ImportJob.Status.IMPORTED, job.errors
    assert (job.rows_total, job.rows_imported, job.rows_unchanged, job.error_count) == (32, 32, 0, 0)
    assert job.progress == 100
    assert job.finished_at is not None
    stored = OutcomeMeasurement.objects.filter(visit__participant__trial=setup.trial)
    assert stored.count() == 32
    participant = setup.participants["S01"][0]
    tte = stored.get(visit__participant=participant, endpoint__code="TTRESC")
    assert (tte.value, tte.event_occurred, tte.unit, tte.version) == (70.5, True, "days", 1)
    not_done = stored.get(visit__participant=participant, endpoint__code="FLARES", visit__visit_definition__code="W4")
    assert (not_done.value, not_done.not_done_reason) == (None, "Diary not returned")
    # every inserted row has an audit event with the user and the reason
    reason = f"bulk import {job.pk} of week12 results.csv"
    events = OutcomeMeasurement.pgh_event_model.objects.filter(pgh_obj__in=stored)
    assert events.count() == 32
    assert {
        (e.pgh_label, e.pgh_context["reason"], e.pgh_context["user"], e.pgh_context["username"]) for e in events
    } == {("insert", reason, user.pk, user.username)}
    visit_events = Visit.pgh_event_model.objects.filter(pgh_obj__participant__trial=setup.trial)
    assert visit_events.count() == 12
    assert {e.pgh_context["reason"] for e in visit_events} == {reason}


def test_visits_are_created_with_study_day_and_window_from_the_baseline_and_late_ones_raise_a_deviation(
    setup, tmp_path
):
    run(setup, write_csv(tmp_path / "clean.csv", clean_rows(setup)))
    participant = setup.participants["S02"][1]
    visits = {v.visit_definition.code: v for v in participant.visits.select_related("visit_definition")}
    day0 = setup.day0(participant) + dt.timedelta(days=2)  # the baseline visit, not the randomization, is day 0
    assert visits["BL"].visit_date == day0
    assert [(visits[c].status, visits[c].study_day, visits[c].in_window) for c in ("BL", "W4", "W12")] == [
        ("completed", 0, True),
        ("completed", 38, False),
        ("completed", 82, True),
    ]
    deviation = ProtocolDeviation.objects.get(participant=participant)
    week4 = visits["W4"]
    first, last = day0 + dt.timedelta(days=21), day0 + dt.timedelta(days=35)
    assert deviation.visit == week4
    assert deviation.is_automatic
    assert (deviation.category, deviation.severity) == ("visit_window", "minor")
    assert deviation.description == (
        f"Visit W4 on {week4.visit_date.isoformat()} (study day 38), outside its window "
        f"{first.isoformat()} – {last.isoformat()}"
    )


def test_day_0_is_the_randomization_date_in_utc_when_there_is_no_baseline_visit(setup, tmp_path):
    participant = setup.participants["S01"][3]
    week4 = setup.date(participant, "W4")
    run(setup, write_csv(tmp_path / "w4.csv", [[participant.screening_number, "W4", "PAIN", 20, "points", week4]]))
    visit = participant.visits.get()
    assert (visit.study_day, visit.in_window) == (28, True)  # randomized 23:30 UTC: the UTC date is day 0


def test_reimporting_the_same_file_adds_nothing_and_counts_every_row_unchanged(setup, tmp_path):
    path = write_csv(tmp_path / "clean.csv", clean_rows(setup))
    run(setup, path)
    events = OutcomeMeasurement.pgh_event_model.objects.count()
    # when
    again = run(setup, path)
    # then
    assert again.status == ImportJob.Status.IMPORTED
    assert (again.rows_total, again.rows_imported, again.rows_unchanged) == (32, 0, 32)
    assert measurement_count(setup.trial) == 32
    assert OutcomeMeasurement.pgh_event_model.objects.count() == events


def test_a_file_adding_to_stored_values_imports_only_the_new_rows(setup, tmp_path):
    rows = clean_rows(setup)
    run(setup, write_csv(tmp_path / "first.csv", rows[:8]))
    job = run(setup, write_csv(tmp_path / "all.csv", rows))
    assert (job.status, job.rows_imported, job.rows_unchanged) == (ImportJob.Status.IMPORTED, 24, 8)


def test_dry_run_validates_and_writes_nothing(setup, tmp_path):
    job = run(setup, write_csv(tmp_path / "clean.csv", clean_rows(setup)), dry_run=True)
    assert job.status == ImportJob.Status.VALID
    assert (job.rows_total, job.rows_imported, job.error_count) == (32, 0, 0)
    assert "32 rows would be imported" in job.message
    assert measurement_count(setup.trial) == 0
    assert not Visit.objects.filter(participant__trial=setup.trial).exists()
    assert not OutcomeMeasurement.pgh_event_model.objects.filter(visit__participant__trial=setup.trial).exists()


def test_xlsx_imports_like_csv(setup, tmp_path):
    rows = clean_rows(setup)
    job = run(setup, write_xlsx(tmp_path / "clean.xlsx", rows))
    assert (job.status, job.rows_imported) == (ImportJob.Status.IMPORTED, 32)
    from_csv = run(setup, write_csv(tmp_path / "clean.csv", rows))
    assert (from_csv.status, from_csv.rows_imported, from_csv.rows_unchanged) == (ImportJob.Status.IMPORTED, 0, 32)


# --- who may import what ---------------------------------------------------------------------------------------


@pytest.mark.req("R15")
def test_an_importer_at_s01_cannot_import_s02_participants(setup, tmp_path):
    s02 = setup.participants["S02"][0]
    path = write_csv(tmp_path / "s02.csv", [[s02.screening_number, "BL", "PAIN", 50, "points", setup.date(s02, "BL")]])
    refused = run(setup, path, user="nurse-S01")
    assert refused.status == ImportJob.Status.INVALID
    assert error_keys(refused) == {(2, "screening_number", "participant_site")}
    assert not s02.visits.exists()
    allowed = run(setup, path, user="nurse-S02")
    assert (allowed.status, allowed.rows_imported) == (ImportJob.Status.IMPORTED, 1)


def test_a_role_without_data_entry_cannot_import_and_no_job_is_recorded(setup, tmp_path):
    path = write_csv(tmp_path / "clean.csv", clean_rows(setup))
    with pytest.raises(PermissionDenied):
        run(setup, path, user="monitor")
    assert not ImportJob.objects.filter(trial=setup.trial).exists()


@pytest.mark.req("R12")
def test_a_locked_casebook_refuses_its_rows_and_the_rest_of_the_file_with_it(setup, tmp_path):
    locked = setup.participants["S01"][0]
    with audit_context(reason=INITIAL_ENTRY):
        RecordLock.objects.create(
            trial=setup.trial, participant=locked, locked_by=setup.users["manager"], reason="Ready for signature"
        )
    job = run(setup, write_csv(tmp_path / "clean.csv", clean_rows(setup)))
    assert job.status == ImportJob.Status.INVALID
    assert {(column, code) for _, column, code in error_keys(job)} == {("screening_number", "participant_locked")}
    assert job.error_count == 8
    assert "Ready for signature" in job.errors[0]["message"]
    assert measurement_count(setup.trial) == 0


@pytest.mark.req("R12")
@pytest.mark.parametrize("how", ["trial lock", "database locked status"])
def test_a_locked_trial_refuses_the_file(setup, tmp_path, how):
    with audit_context(reason="locking for the test"):
        if how == "trial lock":
            RecordLock.objects.create(trial=setup.trial, locked_by=setup.users["manager"], reason="Final analysis")
        else:
            Trial.objects.filter(pk=setup.trial.pk).update(status=Trial.Status.DATABASE_LOCKED)
    job = run(setup, write_csv(tmp_path / "clean.csv", clean_rows(setup)))
    assert job.status == ImportJob.Status.INVALID
    assert error_keys(job) == {(None, None, "trial_locked")}
    assert measurement_count(setup.trial) == 0


# --- the file itself -------------------------------------------------------------------------------------------


def test_missing_unknown_and_repeated_columns_are_refused_before_any_row_is_read(setup, tmp_path):
    header = ["Screening_Number ", "visit", "endpoint", "value", "units", "visit", "measured_on"]
    job = run(
        setup, write_csv(tmp_path / "bad.csv", [["S01-0001", "BL", "PAIN", 1, "points", "BL", "2025-01-13"]], header)
    )
    assert job.status == ImportJob.Status.INVALID
    assert error_keys(job) == {
        (1, "units", "unknown_column"),
        (1, "visit", "repeated_column"),
        (1, "unit", "missing_column"),
    }
    assert job.rows_total == 0


def test_optional_columns_may_be_left_out_and_columns_come_in_any_order(setup, tmp_path):
    participant = setup.participants["S01"][0]
    header = ["measured_on", "unit", "value", "endpoint", "visit", "screening_number"]
    row = [setup.date(participant, "BL"), "points", 55, "PAIN", "BL", participant.screening_number]
    job = run(setup, write_csv(tmp_path / "reordered.csv", [row, [""] * 6], header))
    assert (job.status, job.rows_total, job.rows_imported) == (ImportJob.Status.IMPORTED, 1, 1)


def test_a_file_that_is_not_utf8_is_refused_with_the_row(setup, tmp_path):
    participant = setup.participants["S01"][0]
    path = tmp_path / "latin1.csv"
    lines = [",".join(HEADER), f"{participant.screening_number},BL,PAIN,55,points,2025-01-13,,"]
    lines += [f"{participant.screening_number},BL,BIOM,,,2025-01-13,,Échantillon perdu"]
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    job = run(setup, path)
    assert job.status == ImportJob.Status.INVALID
    assert [(e["code"], e["row"]) for e in job.errors] == [("encoding", 3)]


def test_a_file_of_another_type_is_refused(setup, tmp_path):
    path = tmp_path / "results.pdf"
    path.write_bytes(b"%PDF-1.4 not a table")
    job = run(setup, path)
    assert error_keys(job) == {(None, None, "file_type")}


def test_header_without_rows_is_invalid(setup, tmp_path):
    job = run(setup, write_csv(tmp_path / "empty.csv", []))
    assert (job.status, error_keys(job)) == (ImportJob.Status.INVALID, {(None, None, "no_rows")})


# --- all or nothing --------------------------------------------------------------------------------------------


def test_a_failure_while_writing_rolls_back_the_visits_already_created(setup, tmp_path, monkeypatch):
    monkeypatch.setattr(imports, "_INSERT_MEASUREMENTS", "SELECT 1 / 0")
    with pytest.raises(Exception, match="division by zero"):
        run(setup, write_csv(tmp_path / "clean.csv", clean_rows(setup)))
    job = ImportJob.objects.get(trial=setup.trial)
    assert job.status == ImportJob.Status.FAILED
    assert "division by zero" in job.message
    assert not Visit.objects.filter(participant__trial=setup.trial).exists()
    assert measurement_count(setup.trial) == 0


def test_a_casebook_locked_between_validation_and_writing_stops_the_whole_import(setup, tmp_path, monkeypatch):
    update = imports._update
    locked = setup.participants["S02"][1]

    def lock_on_importing(job, step, user, **fields):
        update(job, step, user, **fields)
        if step == "importing":
            with audit_context(reason="concurrent lock"):
                RecordLock.objects.create(
                    trial=setup.trial, participant=locked, locked_by=setup.users["manager"], reason="Concurrent"
                )

    monkeypatch.setattr(imports, "_update", lock_on_importing)
    job = run(setup, write_csv(tmp_path / "clean.csv", clean_rows(setup)))
    assert job.status == ImportJob.Status.FAILED
    assert "1 casebook(s) of this file were locked" in job.message
    assert not Visit.objects.filter(participant__trial=setup.trial).exists()


# --- the Celery task -------------------------------------------------------------------------------------------


def test_the_task_runs_a_queued_job_once_and_leaves_a_finished_job_alone(setup, tmp_path):
    path = write_csv(tmp_path / "clean.csv", clean_rows(setup))
    job = import_job_create(
        trial=setup.trial, user=setup.users["nurse-all"], path=path, file_name="upload.csv", dry_run=False
    )
    assert job.status == ImportJob.Status.QUEUED
    result = run_import_job.apply(args=[job.pk]).get()
    assert result == {"job_id": job.pk, "status": "imported"}
    job.refresh_from_db()
    finished_at = job.finished_at
    job_events = ImportJob.pgh_event_model.objects.filter(pgh_obj=job).count()
    # when the task is delivered again
    again = run_import_job.apply(args=[job.pk]).get()
    # then
    assert again == {"job_id": job.pk, "status": "imported"}
    job.refresh_from_db()
    assert job.finished_at == finished_at
    assert ImportJob.pgh_event_model.objects.filter(pgh_obj=job).count() == job_events
    assert measurement_count(setup.trial) == 32


def test_the_task_refuses_a_file_changed_after_upload(setup, tmp_path):
    path = write_csv(tmp_path / "clean.csv", clean_rows(setup))
    job = import_job_create(
        trial=setup.trial, user=setup.users["nurse-all"], path=path, file_name="upload.csv", dry_run=False
    )
    write_csv(path, clean_rows(setup)[:3])
    assert run_import_job.apply(args=[job.pk]).get()["status"] == "failed"
    job.refresh_from_db()
    assert "changed after it was uploaded" in job.message
    assert measurement_count(setup.trial) == 0


def test_the_task_runs_an_adverse_event_job_with_the_adverse_event_importer(setup, tmp_path):
    # an outcome file given as adverse events: the AE importer refuses its columns (so the kind is dispatched)
    path = write_csv(tmp_path / "aes.csv", [])
    job = import_job_create(
        trial=setup.trial,
        user=setup.users["nurse-all"],
        path=path,
        file_name="aes.csv",
        dry_run=True,
        kind=ImportJob.Kind.ADVERSE_EVENTS,
    )
    assert run_import_job.apply(args=[job.pk]).get()["status"] == "invalid"
    job.refresh_from_db()
    assert "Missing columns" in job.errors[0]["message"]


def test_the_task_for_a_missing_job_does_nothing():
    assert run_import_job.apply(args=[987654321]).get() == {"job_id": 987654321, "status": "missing"}


# --- size ------------------------------------------------------------------------------------------------------


def generated_rows(setup: ImportTrial, participants: list[Participant]) -> list[list[object]]:
    """Eight values per participant, as a data-management export would hold them."""
    rows = []
    for index, participant in enumerate(participants):
        number = participant.screening_number
        baseline, week4, week12 = (setup.date(participant, v) for v in ("BL", "W4", "W12"))
        rows += [
            [number, "BL", "PAIN", 40 + index % 50, "points", baseline, "", ""],
            [number, "BL", "BIOM", round(0.5 + (index % 97) / 40, 3), "relative expression", baseline, "", ""],
            [number, "W4", "PAIN", 35 + index % 50, "points", week4, "", ""],
            [number, "W4", "FLARES", index % 4, "flares", week4, "", ""],
            [number, "W12", "PAIN", 30 + index % 50, "points", week12, "", ""],
            [number, "W12", "RESP", index % 2, "", week12, "", ""],
            [number, "W12", "FLARES", index % 3, "flares", week12, "", ""],
            [number, "W12", "TTRESC", 20 + index % 60, "days", week12, index % 2, ""],
        ]
    return rows


def test_a_20000_row_file_imports(tmp_path):
    setup = build_import_trial(per_site=1250, code="TST-IMP-20K")
    everyone = setup.participants["S01"] + setup.participants["S02"]
    path = write_csv(tmp_path / "20k.csv", generated_rows(setup, everyone))
    started = time.perf_counter()
    job = run(setup, path)
    elapsed = time.perf_counter() - started
    assert job.status == ImportJob.Status.IMPORTED, job.errors[:5]
    assert (job.rows_total, job.rows_imported) == (20_000, 20_000)
    assert measurement_count(setup.trial) == 20_000
    assert Visit.objects.filter(participant__trial=setup.trial).count() == 7_500
    assert OutcomeMeasurement.pgh_event_model.objects.filter(visit__participant__trial=setup.trial).count() == 20_000
    print(f"20,000 rows imported in {elapsed:.2f} s ({20_000 / elapsed:,.0f} rows/s)")
    # and the temporary tables are gone from the session
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_class WHERE relname = ANY(%s) AND relpersistence = 't'",
            [[imports.STAGING, imports.ROWS, imports.ERRORS]],
        )
        assert cursor.fetchone() == (0,)
