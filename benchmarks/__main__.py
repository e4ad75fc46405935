"""``make bench``: build synthetic trials in a fresh database, run the benchmarks, print a table, write bench.json.

Environment (or the matching options): ``BENCH_SCALES`` participants of the freeze/interim trials (default
``10000,100000``: the figures at the smallest, the scaling largest ÷ smallest), ``BENCH_CSV_ROWS`` (default 1,000,000),
``BENCH_ONLY`` a comma-separated subset of ``import,freeze,interim,export,queries,api``, ``BENCH_REPEATS`` (default 3
measured runs after one warm-up), ``BENCH_LONG_RUN_S`` (default 120: an import or interim run whose first run takes
that long is measured once, without warm-up), ``BENCH_API_SECONDS`` (default 15, after 3 s of warm-up). The database is
``BENCH_DATABASE_NAME`` (default ``exotrial_bench``) on the server of ``DATABASE_URL``, else in the embedded cluster;
it is dropped and recreated at the start of every run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
import tempfile
import time
from pathlib import Path

BENCHMARKS = ("import", "freeze", "interim", "export", "queries", "api")
QUERY_SCALES = (100, 1_000)
# Values per participant that write_outcome_csv can add to a follow_up=False trial of 12 visits:
# WOMAC pain at the 10 post-baseline visits, the responder and biomarker at W12, time to rescue at W40.
CSV_VALUES_PER_PARTICIPANT = 13


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--scales", default=os.environ.get("BENCH_SCALES", "10000,100000"))
    parser.add_argument("--csv-rows", type=int, default=int(os.environ.get("BENCH_CSV_ROWS", "1000000")))
    parser.add_argument("--only", default=os.environ.get("BENCH_ONLY", ",".join(BENCHMARKS)))
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_REPEATS", "3")))
    parser.add_argument("--api-seconds", type=int, default=int(os.environ.get("BENCH_API_SECONDS", "15")))
    parser.add_argument("--long-run-s", type=float, default=float(os.environ.get("BENCH_LONG_RUN_S", "120")))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="bench.json path (default: var/bench.json, under EXOTRIAL_VAR_DIR)")
    options = parser.parse_args()
    options.scales = sorted({int(s) for s in options.scales.split(",") if s.strip()})
    options.only = [name.strip() for name in options.only.split(",") if name.strip()]
    unknown = set(options.only) - set(BENCHMARKS)
    if unknown or not options.scales:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS)}")
    return options


def _label(participants: int) -> str:
    return f"{participants // 1000}k" if participants % 1000 == 0 and participants >= 1000 else str(participants)


def _log(message: str) -> None:
    print(f"[{dt.datetime.now(tz=dt.UTC):%H:%M:%S}] {message}", flush=True)


def _build(participants: int, seed: int, **kwargs):
    from django.db import connection

    from benchmarks.synthetic import build_trial

    started = time.perf_counter()
    trial = build_trial(participants, seed=seed, **kwargs)
    # What autovacuum would have done on a live server by the time anyone reads these rows (it may be off on a
    # benchmark server, and it lags a bulk load): without planner statistics every figure would time bad plans.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    _log(f"built {trial.protocol_code} in {time.perf_counter() - started:.1f} s (tables analyzed)")
    return trial


class _Run:
    """The figures gathered so far and the benchmarks that failed (a failure does not stop the others).

    ``save`` is called after every benchmark, so that an interrupted run still leaves what it measured."""

    def __init__(self, save) -> None:
        self.figures: list = []
        self.errors: dict[str, str] = {}
        self._save = save

    def attempt(self, name: str, step) -> None:
        try:
            result = step()
        except Exception as error:  # reported in the table and bench.json; the run goes on
            _log(f"{name} FAILED: {type(error).__name__}: {error}")
            self.errors[name] = f"{type(error).__name__}: {error}"[:4000]
        else:
            self.figures += result if isinstance(result, list) else [result] if result is not None else []
        self._save(self)


def main() -> int:  # noqa: C901 - one step after another, each optional
    options = _options()
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    import django

    django.setup()
    import shutil

    from django.conf import settings
    from django.core.management import call_command

    from benchmarks import report, suite
    from benchmarks.databases import recreate_database
    from benchmarks.load import LoadSettings, api_write_vs_bare
    from benchmarks.synthetic import write_outcome_csv

    _log(f"recreating database {settings.DATABASES['default']['NAME']} and migrating")
    recreate_database()
    call_command("migrate", "--no-input", verbosity=0)
    shutil.rmtree(settings.ARTIFACT_ROOT, ignore_errors=True)
    warmup = 1
    work = Path(tempfile.mkdtemp(prefix="exotrial-bench-"))
    started = time.perf_counter()
    out = options.out or Path(settings.VAR_DIR) / "bench.json"

    def save(run: _Run) -> None:
        run_settings = {
            "scales": options.scales,
            "csv_rows": options.csv_rows,
            "benchmarks": options.only,
            "repeats": options.repeats,
            "warmup": warmup,
            "api_seconds": options.api_seconds,
            "long_run_s": options.long_run_s,
            "seed": options.seed,
            "total_seconds": round(time.perf_counter() - started, 1),
            "errors": run.errors,
        }
        report.write_json(out, run.figures, machine=report.machine_description(), settings=run_settings)

    run = _Run(save)
    wanted = set(options.only)
    small, large = options.scales[0], options.scales[-1]
    trials = {}

    def trial(participants: int):
        if participants not in trials:
            trials[participants] = _build(participants, options.seed)
        return trials[participants]

    timings = {}

    def interim_small() -> list:
        _log(f"interim run at {_label(small)} ({options.repeats} runs after {warmup} warm-up)")
        timings[small] = suite.interim_run(
            trial(small), repeats=options.repeats, warmup=warmup, long_run_s=options.long_run_s
        )
        return suite.interim_figures(timings[small], None, small_label=_label(small), large_label=_label(large))

    def interim_scaling() -> list:
        _log(f"interim run at {_label(large)} (1 run: it is long)")
        timings[large] = suite.interim_run(trial(large), repeats=1, warmup=0)
        figures = suite.interim_figures(
            timings[small], timings[large], small_label=_label(small), large_label=_label(large)
        )
        return figures[1:]  # the figure at the smaller scale is in already

    def import_and_api() -> None:
        participants = max(math.ceil(options.csv_rows / CSV_VALUES_PER_PARTICIPANT), 1_000)
        target = _build(participants, options.seed, follow_up=False, protocol_code=f"BENCH-IMPORT-{participants}")
        if "import" in wanted:
            csv_path = write_outcome_csv(target, work / "outcomes.csv", rows=options.csv_rows, seed=options.seed)
            _log(f"import of {options.csv_rows:,} rows ({csv_path.stat().st_size / 1e6:.0f} MB)")
            run.attempt(
                "import",
                lambda: suite.import_vs_copy(
                    target, csv_path, repeats=options.repeats, warmup=warmup, long_run_s=options.long_run_s
                ),
            )
        if "api" in wanted:
            _log(f"API write load ({options.api_seconds} s each after 3 s warm-up)")
            load = LoadSettings(
                duration_s=options.api_seconds,
                gunicorn_workers=max(2, os.cpu_count() or 2),
                worker_class=os.environ.get("BENCH_API_WORKER_CLASS", "sync"),
            )
            run.attempt("api", lambda: api_write_vs_bare(target, work / "api", load=load))

    # The figures of the smaller trials first, the largest trial last: an interrupted run keeps the most.
    try:
        if "freeze" in wanted:
            run.attempt("freeze", lambda: suite.freeze_vs_copy(trial(small), repeats=options.repeats, warmup=warmup))
        if "interim" in wanted:
            run.attempt("interim", interim_small)
        if wanted & {"import", "api"}:
            run.attempt("import/api set-up", import_and_api)
        if "queries" in wanted:
            _log("queries per page")
            run.attempt("queries", lambda: suite.queries_per_page(*(trial(n) for n in QUERY_SCALES)))
        if "interim" in wanted and small in timings and large != small:
            run.attempt("interim scaling", interim_scaling)
        if "export" in wanted:
            _log(f"export of the {_label(large)} trial's outcome measurements")
            run.attempt("export", lambda: suite.export_vs_copy(trial(large), repeats=options.repeats, warmup=warmup))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failures = "".join(f"\nFAILED {name}: {message}" for name, message in run.errors.items())
    print("\n" + report.table(run.figures) + failures + f"\n\nWritten to {out}")
    return 1 if run.errors else 0


if __name__ == "__main__":
    sys.exit(main())
