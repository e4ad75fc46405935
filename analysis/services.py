"""Requesting, executing and verifying analysis runs.

Execution: freeze the ADaM datasets as of the cut-off → read them back from the frozen CSVs (so a re-run
from the files gives exactly the same numbers) → compute → assemble the reports → render. Everything is
written into a scratch folder first; only when all files exist is the folder moved into place and the
artifacts recorded, in one transaction with the run's success. A failure leaves a failed run with a
readable message and no artifact. A redelivered task finds the run succeeded and does nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import io
import json
import logging
import platform
import shutil
import subprocess
import time
import traceback
from pathlib import Path

import pandas as pd
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from analysis import assemble, extract
from analysis.compute import AnalysisSpec, compute
from analysis.models import AnalysisRun, Artifact
from audit.context import INITIAL_ENTRY, audit_context
from audit.exceptions import ApplicationError
from audit.security import record_security_event
from operations.publishing import enqueue_on_commit
from trials.models import Trial
from trials.policies.reports import may_request

logger = logging.getLogger(__name__)

STALE_AFTER = dt.timedelta(minutes=30)  # a running run without a heartbeat for this long lost its worker
PACKAGES = ("django", "numpy", "pandas", "scipy", "statsmodels", "matplotlib", "reportlab", "openpyxl", "celery")
MEDIA_TYPES = {
    ".pdf": "application/pdf",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".zip": "application/zip",
    ".csv": "text/csv",
    ".json": "application/json",
    ".html": "text/html",
}


class AnalysisRequestError(ApplicationError):
    """The analysis cannot be requested as asked (wrong role, no looks left, cut-off in the future …)."""


def artifact_root() -> Path:
    return Path(settings.ARTIFACT_ROOT)


def run_folder(run: AnalysisRun) -> Path:
    return artifact_root() / "runs" / str(run.pk)


def analysis_run_request(*, trial: Trial, user, kind: str, cutoff: dt.date | None = None) -> AnalysisRun:
    """Queue an interim or final analysis of ``trial`` (unblinded statistician only; R20)."""
    if not may_request(user, trial):
        raise AnalysisRequestError("Only the unblinded statistician requests analyses (they produce closed reports).")
    if kind not in AnalysisRun.Kind.values:  # noqa: PD011 - Django choices, not pandas
        raise AnalysisRequestError(f"Unknown analysis kind {kind!r}.", field="kind")
    cutoff = cutoff or timezone.localdate()
    if cutoff > timezone.localdate():
        raise AnalysisRequestError("The data cut-off cannot be in the future.", field="cutoff")
    look_number = None
    with transaction.atomic():
        Trial.objects.select_for_update().get(pk=trial.pk)  # two requests at once get distinct look numbers
        if kind == AnalysisRun.Kind.INTERIM:
            planned_interims = len(trial.analysis_plan.look_fractions) - 1
            done = AnalysisRun.objects.filter(trial=trial, kind=kind).exclude(status=AnalysisRun.Status.FAILED).count()
            if done >= planned_interims:
                raise AnalysisRequestError(
                    f"All {planned_interims} planned interim looks have been run; request the final analysis.",
                    field="kind",
                )
            look_number = done + 1
        with audit_context(reason=INITIAL_ENTRY, user=user):
            run = AnalysisRun.objects.create(
                trial=trial, kind=kind, look_number=look_number, cutoff=cutoff, requested_by=user
            )
        from analysis.tasks import execute_analysis_run

        enqueue_on_commit(execute_analysis_run, run.pk)
    return run


def analysis_spec(run: AnalysisRun) -> AnalysisSpec:
    """The plan's parameters as they apply to this run (previous looks from earlier successful runs)."""
    trial = run.trial
    plan = trial.analysis_plan
    arms = list(trial.arms.order_by("code"))
    reference = next(arm for arm in arms if arm.role != "experimental")
    experimental = [arm for arm in arms if arm.role == "experimental"]
    # The protocol's primary comparison is the highest dose against control.
    monitored = max(experimental, key=lambda arm: arm.dose_particles or 0)
    strata = ["SITEID"] if plan.stratify_by_site else []
    strata += [factor.upper() for factor in plan.stratification_factors.order_by("code").values_list("code", flat=True)]
    previous = []
    for earlier in (
        AnalysisRun.objects.filter(trial=trial, kind=AnalysisRun.Kind.INTERIM, status=AnalysisRun.Status.SUCCEEDED)
        .exclude(pk=run.pk)
        .order_by("look_number")
    ):
        if run.kind == AnalysisRun.Kind.FINAL or (earlier.look_number or 0) < (run.look_number or 0):
            current = earlier.results["monitoring"]["looks"][-1]
            previous.append((current["fraction"], current["z_statistic"]))
    secondaries = []
    for endpoint in trial.endpoints.filter(role="key_secondary").order_by("rank").prefetch_related("visits"):
        visit = endpoint.visits.order_by("-order").first()
        secondaries.append((endpoint.code, endpoint.kind, visit.code if visit else ""))
    biomarker = trial.endpoints.filter(role="biomarker").order_by("rank").first()
    return AnalysisSpec(
        kind=run.kind,
        look_number=run.look_number,
        primary_paramcd=plan.primary_endpoint.code,
        primary_visit=plan.primary_visit.code,
        lower_is_better=plan.primary_endpoint.direction == "lower_better",
        reference_arm=reference.code,
        monitored_arm=monitored.code,
        strata=tuple(strata),
        alpha=plan.alpha_one_sided,
        power=plan.power,
        look_fractions=tuple(plan.look_fractions),
        spending=plan.spending_function,
        hsd_gamma=plan.hsd_gamma,
        futility_threshold=plan.futility_conditional_power if plan.futility_rule != "none" else None,
        planned_n=trial.target_enrollment,
        key_secondaries=tuple(secondaries),
        biomarker_paramcd=biomarker.code if biomarker else None,
        previous_looks=tuple(previous),
        arm_labels={arm.code: arm.name for arm in arms},
    )


def _code_version() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, only to label the code version
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return commit or f"exotrial {importlib.metadata.version('exotrial')}"


def _packages() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def canonical_json(data: dict) -> str:
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False, default=str, allow_nan=False)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_datasets(folder: Path) -> dict[str, pd.DataFrame]:
    """Frozen datasets as every re-analysis reads them (the CSV files are the source of truth)."""
    return {
        path.stem: pd.read_csv(path, keep_default_na=True, dtype={"AVISIT": str, "SITEID": str})
        for path in sorted(folder.glob("*.csv"))
    }


def results_from_datasets(datasets: dict[str, pd.DataFrame], spec: AnalysisSpec, provenance: dict) -> dict:
    """results.json: the key results plus the provenance that makes them reproducible."""
    results = compute(_parse_dates(datasets), spec)
    return json.loads(canonical_json({**results.summary, "provenance": provenance})), results


def _parse_dates(datasets: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    parsed = {}
    for name, frame in datasets.items():
        frame = frame.copy()
        for column in frame.columns:
            if column.endswith("DT"):  # ADaM date variables (RANDDT, ASTDT, ADT …)
                frame[column] = pd.to_datetime(frame[column], errors="coerce").dt.date
        parsed[name] = frame
    return parsed


class _Progress:
    """Records the current step, percent and heartbeat in short transactions of their own, with timings."""

    def __init__(self, run: AnalysisRun) -> None:
        self.run = run
        self.timings: dict[str, float] = {}
        self._step: str | None = None
        self._started = time.monotonic()

    def __call__(self, step: str, percent: int) -> None:
        now = time.monotonic()
        if self._step is not None:
            self.timings[self._step] = round(now - self._started, 3)
        self._step, self._started = step, now
        with audit_context(reason=f"analysis progress: {step}"):
            AnalysisRun.objects.filter(pk=self.run.pk).update(step=step, progress=percent, heartbeat_at=timezone.now())

    def finish(self) -> dict[str, float]:
        if self._step is not None:
            self.timings[self._step] = round(time.monotonic() - self._started, 3)
        return self.timings


# Session-level advisory locks, one per run, held by the connection of the worker executing it. PostgreSQL
# releases such a lock the moment that connection ends, so "RUNNING but the lock is free" is a reliable sign
# that the attempt's worker died (SIGKILL, OOM, lost host) — no heartbeat guesswork, no waiting.
RUN_LOCK_NAMESPACE = 0x0E11  # "EXO analysis run"


def _try_lock_run(run_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [RUN_LOCK_NAMESPACE, run_id % (1 << 31)])
        (acquired,) = cursor.fetchone()
    return acquired


def _unlock_run(run_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [RUN_LOCK_NAMESPACE, run_id % (1 << 31)])


def _claim(run_id: int, *, wait_for_lock: float = 0) -> AnalysisRun | None:
    """Take the run for this worker (holding its lock), or None if it is done or a live worker has it.

    ``wait_for_lock``: seconds to keep trying when the lock is held. A redelivered task passes a few: its
    previous attempt's worker is dead, but PostgreSQL may take a moment to notice the closed connection.
    """
    deadline = time.monotonic() + wait_for_lock
    while not _try_lock_run(run_id):
        if time.monotonic() >= deadline:
            return None  # another worker is executing it right now
        time.sleep(0.2)
    now = timezone.now()
    with transaction.atomic(), audit_context(reason="analysis started by a worker"):
        run = AnalysisRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status in (AnalysisRun.Status.SUCCEEDED, AnalysisRun.Status.FAILED):
            _unlock_run(run_id)
            return None
        # QUEUED, or RUNNING by an attempt whose worker died (it no longer holds the lock): run it (again).
        AnalysisRun.objects.filter(pk=run.pk).update(
            status=AnalysisRun.Status.RUNNING,
            started_at=run.started_at or now,
            heartbeat_at=now,
            attempts=F("attempts") + 1,
            error="",
            progress=0,
            step="starting" if run.status == AnalysisRun.Status.QUEUED else "starting again: the last worker died",
        )
    run.refresh_from_db()
    return run


def analysis_run_execute(*, run_id: int, previous_attempt_lost: bool = False) -> AnalysisRun | None:
    """Execute a run (idempotent: a succeeded or failed run is left alone, a running one by a live worker too).

    ``previous_attempt_lost``: this is a redelivery of a task whose worker died mid-run (see operations.execution).
    """
    run = _claim(run_id, wait_for_lock=15 if previous_attempt_lost else 0)
    if run is None:
        return AnalysisRun.objects.filter(pk=run_id).first()
    scratch = artifact_root() / "scratch" / f"run-{run.pk}-attempt-{run.attempts}"
    progress = _Progress(run)
    try:
        # An attempt whose worker was killed left its half-made files here; they were never published.
        for leftover in (artifact_root() / "scratch").glob(f"run-{run.pk}-attempt-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        (scratch / "datasets").mkdir(parents=True)
        results = _produce(run, scratch, progress)
        _publish(run, scratch, results, progress.finish())
    except Exception as error:
        shutil.rmtree(scratch, ignore_errors=True)
        logger.exception("analysis run %s failed", run.pk)
        message = f"{type(error).__name__}: {error}"
        with audit_context(reason="analysis failed"):
            AnalysisRun.objects.filter(pk=run.pk).update(
                status=AnalysisRun.Status.FAILED,
                error=message[:2000] + "\n\n" + traceback.format_exc()[-3000:],
                finished_at=timezone.now(),
                timings=progress.finish(),
            )
        raise
    finally:
        if connection.is_usable():
            _unlock_run(run_id)
    run.refresh_from_db()
    return run


def _produce(run: AnalysisRun, scratch: Path, progress: _Progress) -> dict:
    from analysis.report.render_csv import render_csv_zip
    from analysis.report.render_html import render_html
    from analysis.report.render_pdf import render_pdf
    from analysis.report.render_xlsx import render_xlsx

    progress("extracting data", 5)
    for name, frame in extract.freeze(run.trial, run.cutoff).items():
        frame.to_csv(scratch / "datasets" / f"{name}.csv", index=False, lineterminator="\n")
    spec = analysis_spec(run)
    provenance = {
        "code_version": _code_version(),
        "packages": _packages(),
        "plan": spec.as_dict(),
        "datasets_sha256": {path.name: _sha256(path) for path in sorted((scratch / "datasets").glob("*.csv"))},
        "cutoff": run.cutoff.isoformat(),
        "run_id": run.pk,
    }
    progress("fitting models", 20)
    summary, results = results_from_datasets(read_datasets(scratch / "datasets"), spec, provenance)
    (scratch / "results.json").write_text(canonical_json(summary) + "\n", encoding="utf-8")
    progress("assembling reports", 45)
    document_provenance = {
        "Run": str(run.pk),
        "Code version": provenance["code_version"],
        "Analysis plan": run.trial.analysis_plan.version,
        **{f"SHA-256 {name}": digest for name, digest in provenance["datasets_sha256"].items()},
    }
    common = {
        "trial_code": run.trial.protocol_code,
        "cutoff": run.cutoff,
        "generated_at": run.started_at.replace(microsecond=0),
        "provenance": document_provenance,
    }
    if run.kind == AnalysisRun.Kind.INTERIM:
        documents = {
            "open": assemble.open_report(results, spec, **common),
            "closed": assemble.closed_report(results, spec, **common),
        }
    else:
        documents = {"": assemble.final_report(results, spec, **common)}
    steps = [
        ("rendering figures and writing PDF", render_pdf, "report.pdf"),
        ("writing XLSX", render_xlsx, "report.xlsx"),
        ("writing CSV tables", render_csv_zip, "tables.zip"),
    ]
    percent = 55
    for step, render, filename in steps:
        progress(step, percent)
        for folder, document in documents.items():
            (scratch / folder).mkdir(exist_ok=True)
            render(document, scratch / folder / filename)
        percent += 13
    progress("writing HTML view", 94)
    for folder, document in documents.items():
        (scratch / folder / "report.html").write_text(render_html(document), encoding="utf-8")
    return summary


def _audience(run: AnalysisRun, relative: Path) -> str:
    if relative.parts[0] == "datasets":
        return Artifact.Audience.DATASETS
    if relative.parts[0] in ("open", "closed"):
        return relative.parts[0]
    return Artifact.Audience.FINAL if run.kind == AnalysisRun.Kind.FINAL else Artifact.Audience.CLOSED


def _publish(run: AnalysisRun, scratch: Path, summary: dict, timings: dict) -> None:
    """Move the finished files into place and record them with the run's success, atomically."""
    destination = run_folder(run)
    destination.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(path for path in scratch.rglob("*") if path.is_file())
    rows = []
    for path in files:
        relative = path.relative_to(scratch)
        rows.append(
            Artifact(
                run=run,
                audience=_audience(run, relative),
                name=str(relative),
                media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
                relative_path=str(Path("runs") / str(run.pk) / relative),
                sha256=_sha256(path),
                size=path.stat().st_size,
            )
        )
    with transaction.atomic(), audit_context(reason="analysis succeeded"):
        locked = AnalysisRun.objects.select_for_update().get(pk=run.pk)
        if locked.status != AnalysisRun.Status.RUNNING or locked.attempts != run.attempts:
            shutil.rmtree(scratch, ignore_errors=True)  # another attempt took over: leave its result alone
            return
        if destination.exists():
            shutil.rmtree(destination)  # files of an attempt that died before it could record them
        scratch.rename(destination)
        Artifact.objects.bulk_create(rows)
        AnalysisRun.objects.filter(pk=run.pk).update(
            status=AnalysisRun.Status.SUCCEEDED,
            progress=100,
            step="done",
            finished_at=timezone.now(),
            results=summary,
            timings=timings,
            provenance=summary["provenance"],
        )


def analysis_run_verify(*, run: AnalysisRun) -> tuple[bool, list[str]]:
    """Recompute results.json from the run's frozen datasets and compare with what was stored."""
    if run.status != AnalysisRun.Status.SUCCEEDED:
        raise ApplicationError(f"Run {run.pk} has not succeeded; there is nothing to verify.")
    folder = run_folder(run)
    problems = []
    for artifact in run.artifacts.all():
        path = artifact_root() / artifact.relative_path
        if not path.exists():
            problems.append(f"missing file {artifact.name}")
        elif _sha256(path) != artifact.sha256:
            problems.append(f"{artifact.name} was altered (SHA-256 differs)")
    stored = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    spec = spec_from_dict(stored["provenance"]["plan"])
    recomputed, _ = results_from_datasets(read_datasets(folder / "datasets"), spec, stored["provenance"])
    if canonical_json(recomputed) != canonical_json(stored):
        problems.append("recomputed results.json differs from the stored one")
    return not problems, problems


def spec_from_dict(plan: dict) -> AnalysisSpec:
    """Rebuild the AnalysisSpec stored (as JSON) in a run's provenance."""
    nested = {"key_secondaries", "previous_looks"}
    values = {
        key: tuple(tuple(item) for item in value)
        if key in nested
        else tuple(value)
        if isinstance(value, list)
        else value
        for key, value in plan.items()
    }
    return AnalysisSpec(**values)


def run_artifact_bytes(artifact: Artifact) -> io.BufferedReader:
    path = (artifact_root() / artifact.relative_path).resolve()
    if artifact_root().resolve() not in path.parents:
        raise ApplicationError("Artifact path outside the artifact store.")
    return path.open("rb")


def artifact_download_record(*, artifact: Artifact, user, remote_addr: str | None) -> None:
    """Every read of an artifact (file or HTML view) is recorded: who, which artifact, when."""
    from analysis.models import ArtifactDownload

    with audit_context(reason=INITIAL_ENTRY, user=user):
        ArtifactDownload.objects.create(artifact=artifact, user=user, remote_addr=remote_addr)
    record_security_event(
        "artifact_download", user=user, remote_addr=remote_addr, run_id=artifact.run_id, artifact_id=artifact.pk
    )


def artifact_download_response(*, artifact: Artifact, user, remote_addr: str | None):
    """The file as an attachment under a server-chosen name, recorded; callers check the report policy first."""
    from django.http import FileResponse

    handle = run_artifact_bytes(artifact)
    artifact_download_record(artifact=artifact, user=user, remote_addr=remote_addr)
    filename = f"{artifact.run.trial.protocol_code}-run{artifact.run_id}-{artifact.name.replace('/', '-')}"
    response = FileResponse(handle, as_attachment=True, filename=filename, content_type=artifact.media_type)
    response["X-Content-Type-Options"] = "nosniff"
    return response


def mark_stuck_runs() -> int:
    """Runs whose worker died (no heartbeat for STALE_AFTER) are marked failed so they can be re-requested."""
    stale = timezone.now() - STALE_AFTER
    marked = 0
    for run_id in AnalysisRun.objects.filter(status=AnalysisRun.Status.RUNNING, heartbeat_at__lt=stale).values_list(
        "pk", flat=True
    ):
        if not _try_lock_run(run_id):
            continue  # a live worker holds it: slow, not dead
        try:
            with audit_context(reason="worker lost: no heartbeat"):
                marked += AnalysisRun.objects.filter(pk=run_id, status=AnalysisRun.Status.RUNNING).update(
                    status=AnalysisRun.Status.FAILED,
                    finished_at=timezone.now(),
                    error=(
                        f"The worker stopped reporting progress for {STALE_AFTER} and no worker holds the run; "
                        "it died and the task was not delivered again. Request the run again."
                    ),
                )
        finally:
            _unlock_run(run_id)
    return marked
