"""The benchmarks of issue 8: each times a product path and its PostgreSQL baseline on the same rows, same machine.

Every function takes trials built by ``benchmarks.synthetic`` and returns ``report.Figure`` objects; the scale and
the number of runs are the caller's (``benchmarks.__main__`` for ``make bench``, tiny ones in the tests).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from django.conf import settings
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from psycopg import sql as pgsql

from analysis import extract
from analysis.models import AnalysisRun
from analysis.services import analysis_run_execute, analysis_run_request
from benchmarks.report import Figure, ratio
from benchmarks.synthetic import trial_user
from benchmarks.timing import Timing, measure
from participants.exchange.imports import import_outcomes
from participants.models import (
    AdverseEvent,
    DataQuery,
    DoseAdministration,
    ImportJob,
    OutcomeMeasurement,
    Participant,
    Randomization,
    Visit,
)
from trials.models import Arm, Endpoint, Role, Site, Trial, VisitDefinition

BASE_DIR = Path(settings.BASE_DIR)


class BenchmarkError(RuntimeError):
    """A product path did not do what the benchmark times (e.g. an import left rows out): no figure."""


def _table(model) -> pgsql.Identifier:
    return pgsql.Identifier(model._meta.db_table)


# --- Import: the product's bulk import ÷ COPY into a plain table ------------------------------------------------

_PLAIN_TABLE = "bench_copy_target"
_CREATE_PLAIN = f"""
CREATE TABLE {_PLAIN_TABLE} (
    screening_number text, visit text, endpoint text, value double precision, unit text, measured_on date,
    event smallint
)"""


def _single(timing: Timing) -> str:
    return f"; measured once ({timing.median:.0f} s, no warm-up: a long run)" if timing.single_long_run else ""


def _csv_data_rows(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip()) - 1


def import_vs_copy(
    trial: Trial,
    csv_path: Path,
    *,
    repeats: int = 3,
    warmup: int = 1,
    long_run_s: float | None = None,
    explain: bool = True,
) -> Figure:
    """Import ``csv_path`` into ``trial`` through ``import_outcomes`` (validated, audited, all or nothing) ÷ COPY of the
    same file into a plain table.

    Every run happens in a transaction the benchmark rolls back afterwards, so each run imports into the same state
    (the product's own transactions become savepoints of it); the baseline is treated the same way. Each product
    run must import every row and leave one audit event per inserted value, else BenchmarkError.
    """
    user = trial_user(trial, Role.SITE_STAFF)
    expected = _csv_data_rows(csv_path)
    event_model = OutcomeMeasurement.pgh_event_model
    checks: dict[str, int] = {}

    def product() -> None:
        with transaction.atomic():
            job = import_outcomes(trial=trial, user=user, path=csv_path, file_name=csv_path.name, dry_run=False)
            if job.status != ImportJob.Status.IMPORTED or job.rows_imported != expected:
                raise BenchmarkError(
                    f"The import of {expected} rows ended {job.status} with {job.rows_imported} imported: "
                    f"{job.message} {job.errors[:3]}"
                )
            checks["rows_imported"] = job.rows_imported
            checks["audit_events"] = event_model.objects.filter(pgh_context__import_job=job.pk).count()
            if checks["audit_events"] < expected:
                raise BenchmarkError(f"{expected} values imported but only {checks['audit_events']} audit events.")
            transaction.set_rollback(True)

    def baseline() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_CREATE_PLAIN)
            statement = f"COPY {_PLAIN_TABLE} FROM STDIN WITH (FORMAT csv, HEADER true)"
            with cursor.copy(statement) as copy, csv_path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    copy.write(block)
            cursor.execute(f"SELECT count(*) FROM {_PLAIN_TABLE}")  # noqa: S608 - a constant table name
            (copied,) = cursor.fetchone()
            if copied != expected:
                raise BenchmarkError(f"COPY loaded {copied} of {expected} rows.")
            transaction.set_rollback(True)

    platform = measure(product, repeats=repeats, warmup=warmup, long_run_s=long_run_s)
    plain = measure(baseline, repeats=repeats, warmup=warmup)
    breakdown = import_breakdown(trial, csv_path) if explain else {}
    where = (
        f"; one more run under EXPLAIN ANALYZE took {breakdown['import_s']:.1f} s: validation "
        f"{breakdown['validation_s']:.1f} s, writes {breakdown['writes_s']:.1f} s (of which foreign key checks "
        f"{breakdown['foreign_key_checks_s']:.1f} s and audit triggers {breakdown['audit_triggers_s']:.1f} s), "
        f"COPY into staging and Python {breakdown['copy_and_python_s']:.1f} s"
        if breakdown
        else ""
    )
    return Figure(
        "import_vs_copy",
        ratio(platform.median, plain.median),
        "<=",
        4,
        platform=platform.median,
        baseline=plain.median,
        note=f"{expected:,} rows; runs rolled back so each imports into the same state" + _single(platform) + where,
        detail={
            "rows": expected,
            **checks,
            "platform": platform.as_dict(),
            "baseline": plain.as_dict(),
            "breakdown_s": breakdown,
        },
    )


# The import's writes, told apart by the first words of their SQL (participants.exchange.imports).
_WRITE_STATEMENTS = ("WITH new_visits AS", "WITH inserted AS")


def import_breakdown(trial: Trial, csv_path: Path) -> dict[str, float]:
    """One more import (rolled back) in which each write statement is first run under ``EXPLAIN ANALYZE`` in a
    savepoint (then rolled back to it and run for real): PostgreSQL itself reports how long the foreign-key checks
    and the audit triggers of the inserted rows took. Seconds of: the whole import (its EXPLAIN runs excluded),
    the validation statements, the writes, and within the writes the foreign-key checks and the audit triggers
    (event rows and their hash-chain links); the rest is staging the file with COPY and Python.
    """
    user = trial_user(trial, Role.SITE_STAFF)
    seconds = {"validation_s": 0.0, "writes_s": 0.0, "foreign_key_checks_s": 0.0, "audit_triggers_s": 0.0}
    explained = 0.0

    def explain_then_execute(execute, sql, params, many, context):
        nonlocal explained
        is_write = sql.lstrip().startswith(_WRITE_STATEMENTS)
        if is_write:
            started = time.perf_counter()
            with transaction.atomic(), connection.connection.cursor() as raw:  # savepoint; bypasses this wrapper
                raw.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
                ((plan,),) = raw.fetchall()
                transaction.set_rollback(True)
            explained += time.perf_counter() - started
            for trigger in plan[0].get("Triggers", []):
                kind = "foreign_key_checks_s" if trigger.get("Constraint Name") else "audit_triggers_s"
                seconds[kind] += trigger["Time"] / 1000
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed = time.perf_counter() - started
            if is_write:
                seconds["writes_s"] += elapsed
            elif sql.lstrip().startswith(("CREATE TEMP TABLE", "INSERT INTO exotrial_import_errors", "ANALYZE")):
                seconds["validation_s"] += elapsed

    started = time.perf_counter()
    with connection.execute_wrapper(explain_then_execute), transaction.atomic():
        import_outcomes(trial=trial, user=user, path=csv_path, file_name=csv_path.name, dry_run=False)
        transaction.set_rollback(True)
    total = time.perf_counter() - started - explained
    breakdown = {
        "import_s": total,
        **seconds,
        "copy_and_python_s": total - seconds["validation_s"] - seconds["writes_s"],
    }
    return {name: round(value, 4) for name, value in breakdown.items()}


# --- Freeze: the analysis datasets ÷ COPY (SELECT …) TO STDOUT of the same rows into pandas ---------------------


def _baseline_queries(trial: Trial, cutoff) -> dict[str, pgsql.Composed]:
    """One SELECT per dataset over the rows ``extract.freeze`` reads, joined to the codes it reports."""
    params = {"trial": pgsql.Literal(trial.pk), "cutoff": pgsql.Literal(cutoff)}
    tables = {
        "participant": _table(Participant),
        "randomization": _table(Randomization),
        "site": _table(Site),
        "arm": _table(Arm),
        "visit": _table(Visit),
        "definition": _table(VisitDefinition),
        "measurement": _table(OutcomeMeasurement),
        "endpoint": _table(Endpoint),
        "event": _table(AdverseEvent),
        "dose": _table(DoseAdministration),
        "query": _table(DataQuery),
    }
    templates = {
        "adsl": """SELECT p.screening_number, s.code, p.strata, p.age_at_screening, p.sex, p.status, p.withdrawn_on,
                          p.withdrawal_reason, p.completed_on, r.randomization_number, r.randomized_at, a.code
                   FROM {participant} p JOIN {randomization} r ON r.participant_id = p.id
                   JOIN {site} s ON s.id = p.site_id JOIN {arm} a ON a.id = r.arm_id
                   WHERE p.trial_id = {trial} AND r.randomized_at::date <= {cutoff}""",
        "adeff": """SELECT p.screening_number, e.code, d.code, d."order", v.visit_date, v.study_day, m.value,
                           m.event_occurred, m.measured_on
                    FROM {measurement} m JOIN {visit} v ON v.id = m.visit_id
                    JOIN {participant} p ON p.id = v.participant_id JOIN {endpoint} e ON e.id = m.endpoint_id
                    JOIN {definition} d ON d.id = v.visit_definition_id
                    WHERE p.trial_id = {trial} AND m.measured_on <= {cutoff}""",
        "adae": """SELECT p.screening_number, x.term, x.soc, x.onset_date, x.stop_date, x.grade, x.serious,
                          x.causality, x.expected, x.outcome, x.action_taken
                   FROM {event} x JOIN {participant} p ON p.id = x.participant_id
                   WHERE p.trial_id = {trial} AND x.onset_date <= {cutoff}""",
        "adex": """SELECT p.screening_number, x.administered_at, x.volume_ml, x.particles_given, x.lot_id
                   FROM {dose} x JOIN {participant} p ON p.id = x.participant_id
                   WHERE p.trial_id = {trial} AND x.administered_at::date <= {cutoff}""",
        "screening": """SELECT p.screening_number, s.code, p.screened_on, p.status, p.screen_failure_criterion_id,
                               p.screen_failure_reason
                        FROM {participant} p JOIN {site} s ON s.id = p.site_id
                        WHERE p.trial_id = {trial} AND p.screened_on <= {cutoff}""",
        "queries": """SELECT p.screening_number, q.target_model, q.field_name, q.status, q.raised_at, q.closed_at
                      FROM {query} q JOIN {participant} p ON p.id = q.participant_id WHERE p.trial_id = {trial}""",
    }
    return {name: pgsql.SQL(template).format(**tables, **params) for name, template in templates.items()}


def copy_frames(trial: Trial, cutoff) -> dict[str, pd.DataFrame]:
    """The baseline: each dataset's rows by ``COPY (SELECT …) TO STDOUT`` read into pandas, nothing derived."""
    frames = {}
    with connection.cursor() as cursor:
        for name, query in _baseline_queries(trial, cutoff).items():
            buffer = io.BytesIO()
            with cursor.copy(pgsql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(query)) as copy:
                for block in copy:
                    buffer.write(block)
            buffer.seek(0)
            frames[name] = pd.read_csv(buffer)
    return frames


def freeze_vs_copy(trial: Trial, *, repeats: int = 3, warmup: int = 1) -> Figure:
    cutoff = timezone.localdate()
    rows: dict[str, int] = {}

    def product() -> None:
        rows.update({name: len(frame) for name, frame in extract.freeze(trial, cutoff).items()})

    platform = measure(product, repeats=repeats, warmup=warmup)
    plain = measure(lambda: copy_frames(trial, cutoff), repeats=repeats, warmup=warmup)
    return Figure(
        "freeze_vs_copy",
        ratio(platform.median, plain.median),
        "<=",
        1.5,
        platform=platform.median,
        baseline=plain.median,
        note=f"{trial.protocol_code}: {sum(rows.values()):,} dataset rows",
        detail={"dataset_rows": rows, "platform": platform.as_dict(), "baseline": plain.as_dict()},
    )


# --- The interim analysis run, whole ----------------------------------------------------------------------------


def interim_run(trial: Trial, *, repeats: int = 3, warmup: int = 1, long_run_s: float | None = None) -> Timing:
    """Seconds of a whole interim run (request, freeze, models, figures, PDF, XLSX, CSV, HTML, publish) in this
    process, as ``run_analysis --sync`` does. Each run is a further planned look of the synthetic plan."""
    user = trial_user(trial, Role.UNBLINDED_STATISTICIAN)

    def run() -> None:
        requested = analysis_run_request(trial=trial, user=user, kind=AnalysisRun.Kind.INTERIM)
        done = analysis_run_execute(run_id=requested.pk)
        if done is None or done.status != AnalysisRun.Status.SUCCEEDED:
            raise BenchmarkError(f"Interim run {requested.pk} of {trial} ended {getattr(done, 'status', None)}.")

    return measure(run, repeats=repeats, warmup=warmup, long_run_s=long_run_s)


def interim_figures(small: Timing, large: Timing | None, *, small_label: str, large_label: str) -> list[Figure]:
    figures = [
        Figure(
            f"interim_report_seconds_{small_label}",
            small.median,
            "<",
            60,
            unit="s",
            platform=small.median,
            note=_single(small).lstrip("; "),
            detail=small.as_dict(),
        )
    ]
    if large is not None:
        single = " (1 run: it is long)" if len(large.runs) == 1 else ""
        single += _single(small)
        figures.append(
            Figure(
                f"scaling_{large_label}_over_{small_label}",
                ratio(large.median, small.median),
                "<=",
                12,
                platform=large.median,
                baseline=small.median,
                note=f"interim run at {large_label} ÷ at {small_label}{single}",
                detail={large_label: large.as_dict(), small_label: small.as_dict()},
            )
        )
    return figures


# --- Export: the streamed CSV export ÷ COPY … TO STDOUT, and its peak RSS ----------------------------------------


def export_vs_copy(trial: Trial, *, repeats: int = 3, warmup: int = 1, env: dict | None = None) -> list[Figure]:
    """Stream the outcome-measurement export of ``trial`` (``participants.exchange.exports.stream_csv``) ÷ COPY of
    the same rows to STDOUT, both consumed and discarded, in a fresh process (``benchmarks.export_probe``) so that
    its peak RSS is the export's own. The trial's rows must be committed (the probe has its own connection)."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.export_probe",
        trial.protocol_code,
        "--repeats",
        str(repeats),
        "--warmup",
        str(warmup),
    ]
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchmarks.settings", **(env or {})}
    completed = subprocess.run(
        command, cwd=BASE_DIR, env=environment, capture_output=True, text=True, timeout=3600, check=False
    )
    if completed.returncode != 0:
        raise BenchmarkError(f"The export probe failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    platform, plain = result["platform"]["median_s"], result["baseline"]["median_s"]
    return [
        Figure(
            "export_vs_copy",
            ratio(platform, plain),
            "<=",
            2.5,
            platform=platform,
            baseline=plain,
            note=f"{result['rows']:,} outcome rows of {trial.protocol_code}",
            detail=result,
        ),
        Figure(
            "export_peak_rss_mb",
            result["peak_rss_mb"],
            "<",
            200,
            unit="MB",
            platform=result["peak_rss_mb"],
            note="peak RSS of a fresh process that ran the export (Python, Django and pandas loaded)",
            detail={"rss_before_export_mb": result["rss_before_export_mb"]},
        ),
    ]


# --- SQL queries per page: equal at 100 and 1,000 participants --------------------------------------------------


def page_paths(trial: Trial) -> dict[str, list[str]]:
    """Pages and API lists by name, each with the paths whose maximum query count is taken."""
    code = trial.protocol_code
    sample = list(Participant.objects.filter(trial=trial, randomization__isnull=False).order_by("screening_number")[:3])
    api = f"/api/v1/trials/{code}"
    return {
        "trial home": [f"/trials/{code}/"],
        "participant list": [f"/trials/{code}/participants/", f"/trials/{code}/participants/?page=2"],
        "participant page": [f"/trials/{code}/participants/{p.pk}/" for p in sample],
        "imports page": [f"/trials/{code}/imports/"],
        "API participants": [f"{api}/participants/", f"{api}/participants/?page=2"],
        "API participant": [f"{api}/participants/{p.pk}/" for p in sample],
        "API participant visits": [f"{api}/participants/{p.pk}/visits/" for p in sample],
        "API measurements": [f"{api}/measurements/", f"{api}/measurements/?page=2"],
        "API adverse events": [f"{api}/adverse-events/"],
        "API doses": [f"{api}/doses/"],
        "API deviations": [f"{api}/deviations/"],
        "API queries": [f"{api}/queries/"],
    }


def query_counts(trial: Trial) -> dict[str, int]:
    """The maximum number of SQL queries of each page, as site staff holding every site (blinded) see it."""
    client = Client()
    client.force_login(trial_user(trial, Role.SITE_STAFF))
    counts = {}
    for name, paths in page_paths(trial).items():
        most = 0
        for path in paths:
            with CaptureQueriesContext(connection) as captured:
                response = client.get(path)
            if response.status_code not in (200, 404) or (response.status_code == 404 and "page=" not in path):
                raise BenchmarkError(f"{path} answered {response.status_code}: its query count means nothing.")
            most = max(most, len(captured.captured_queries))
        counts[name] = most
    return counts


def queries_per_page(small: Trial, large: Trial) -> Figure:
    """How many pages run more SQL queries for the larger trial than for the smaller one (goal: none)."""
    small_counts, large_counts = query_counts(small), query_counts(large)
    small_n = Randomization.objects.filter(trial=small).count()
    large_n = Randomization.objects.filter(trial=large).count()
    unequal = sorted(name for name in small_counts if small_counts[name] != large_counts[name])
    return Figure(
        "queries_per_page",
        len(unequal),
        "==",
        0,
        unit="pages differing",
        note=f"max queries per page at {small_n:,} vs {large_n:,} participants"
        + (f"; differ: {', '.join(unequal)}" if unequal else ": all equal"),
        detail={name: {str(small_n): small_counts[name], str(large_n): large_counts[name]} for name in small_counts},
    )
