"""``make capacity`` (R37): 20 simulated site staff for 2 minutes against gunicorn (2 workers) + 1 Celery worker.

``python -m benchmarks.capacity`` recreates a database of its own (``exotrial_capacity``), migrates, builds a trial
in follow-up (``benchmarks.synthetic``: screened, randomized and dosed at baseline, then part of the follow-up
entered through the product's own services: W4 for half the participants and an adverse event for 30%), gives one
site-staff account per simulated user (no MFA role: its token is an ordinary one) and starts, as child processes on
loopback, gunicorn and one Celery worker (concurrency 1) with ``benchmarks.capacity_settings`` (DEBUG off, Redis
broker when ``REDIS_URL`` is set). Locust (``benchmarks/locustfile.py``, headless) then drives the REST API with a
mix of reads and writes; afterwards ``manage.py verify_audit`` recomputes the audit hash chain.

Pass: p95 of all reads < 500 ms and of all writes < 1,000 ms (and of each read / write endpoint alone), no failed
request (a 4xx on a write is a failure: every write the users send is valid), no locustfile exception, every
successful write persisted, the worker still answering after the load, the audit chain verified. The figures go to
stdout and ``var/capacity.json``; the exit code is 1 when a check fails, 2 when the run itself could not be done.

gunicorn's worker class is gthread (4 threads per worker) by default: every write takes the audit chain's
transaction-level advisory lock, so under concurrent writes a request spends part of its time waiting on
PostgreSQL, not on the CPU. A sync worker is blocked for that whole wait, and with only two of them one write
waiting on the lock holds up every read queued behind it; threads let the worker serve another request meanwhile
(the GIL is released while waiting for the database). ``CAPACITY_WORKER_CLASS=sync`` measures the alternative.

Environment (or the matching options): ``CAPACITY_SECONDS`` (120), ``CAPACITY_USERS`` (20), ``CAPACITY_SPAWN_RATE``
(5 users/s), ``CAPACITY_PARTICIPANTS`` (1,000 randomized), ``CAPACITY_WAIT`` (think time between two actions of a
user, ``min,max`` seconds: ``1,3``), ``CAPACITY_WORKER_CLASS`` (``gthread``), ``CAPACITY_THREADS`` (4),
``CAPACITY_PORT`` (0: a free one), ``CAPACITY_DATABASE_NAME`` (``exotrial_capacity``, on the server of
``DATABASE_URL``; dropped and recreated at the start, kept afterwards for inspection unless ``--drop-database``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.databases import drop_database, recreate_database

BASE_DIR = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
SETTINGS_MODULE = "benchmarks.capacity_settings"
READ_P95_LIMIT_MS = 500.0
WRITE_P95_LIMIT_MS = 1000.0
GUNICORN_WORKERS = 2
CELERY_CONCURRENCY = 1
# Share of the randomized participants whose W4 visit / one adverse event is entered before the load starts.
PREFILLED_VISIT_SHARE = 0.5
PREFILLED_AE_SHARE = 0.3
STOP_TIMEOUT_S = 20


def _log(message: str) -> None:
    print(f"[{dt.datetime.now(tz=dt.UTC):%H:%M:%S}] {message}", flush=True)


def _options(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m benchmarks.capacity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=int(env("CAPACITY_SECONDS", "120")))
    parser.add_argument("--users", type=int, default=int(env("CAPACITY_USERS", "20")))
    parser.add_argument("--spawn-rate", type=float, default=float(env("CAPACITY_SPAWN_RATE", "5")))
    parser.add_argument("--participants", type=int, default=int(env("CAPACITY_PARTICIPANTS", "1000")))
    parser.add_argument("--wait", default=env("CAPACITY_WAIT", "1,3"), help="think time min,max in seconds")
    parser.add_argument("--worker-class", default=env("CAPACITY_WORKER_CLASS", "gthread"), choices=["gthread", "sync"])
    parser.add_argument("--threads", type=int, default=int(env("CAPACITY_THREADS", "4")))
    parser.add_argument("--port", type=int, default=int(env("CAPACITY_PORT", "0")))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="capacity.json (default: var/capacity.json, under EXOTRIAL_VAR_DIR)")
    parser.add_argument("--csv", type=Path, help="locust CSV prefix (default: var/capacity)")
    parser.add_argument("--drop-database", action="store_true", help="drop the capacity database at the end")
    parser.add_argument(
        "--existing-database",
        action="store_true",
        help="use CAPACITY_DATABASE_NAME as it is, migrated already, without recreating it (the smoke test runs "
        "against the test database this way: migrating a new one takes longer than its whole budget)",
    )
    options = parser.parse_args(argv)
    try:
        low, high = (float(part) for part in options.wait.split(","))
    except ValueError:
        parser.error(f"--wait/CAPACITY_WAIT must be 'min,max' seconds, not {options.wait!r}")
    if not 0 <= low <= high:
        parser.error("--wait needs 0 <= min <= max")
    options.wait = (low, high)
    if options.seconds < 1 or options.users < 1 or options.participants < 8 or options.spawn_rate <= 0:
        parser.error("seconds and users must be at least 1, participants at least 8, spawn rate above 0")
    return options


# --- child processes ---------------------------------------------------------------------------------------------


class Children:
    """Processes started by the run, each in a session of its own, stopped by their pid (every wait bounded)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: dict[str, subprocess.Popen] = {}
        self._logs: list = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = (self.folder / f"{name}.log").open("w", encoding="utf-8")
        self._logs.append(log)
        process = subprocess.Popen(
            argv, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes[name] = process
        return process

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.exists() else ""

    def stop(self, name: str, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM the process, wait up to ``timeout_s``, then SIGKILL its process group (a gunicorn master's
        workers or a Celery worker's pool child included) and wait again, briefly."""
        process = self.processes.pop(name, None)
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _log(f"{name} (pid {process.pid}) did not stop within {timeout_s:.0f} s: killing its process group")
        # The group's id is the child's pid (start_new_session): it holds only what that child started.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        return process.returncode

    def stop_all(self) -> None:
        for name in reversed(list(self.processes)):
            self.stop(name)
        for log in self._logs:
            log.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_env() -> dict[str, str]:
    """The environment of gunicorn, the worker and verify_audit: this run's settings and database."""
    from django.conf import settings

    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "CAPACITY_DATABASE_NAME": settings.DATABASES["default"]["NAME"],
        "PYTHONUNBUFFERED": "1",
    }


def gunicorn_argv(port: int, worker_class: str, threads: int) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(GUNICORN_WORKERS),
        "--worker-class",
        worker_class,
        "--timeout",
        "60",
        "--graceful-timeout",
        "10",
        "--log-level",
        "warning",
        # Django loads once, before the workers fork: no request pays for it.
        "--preload",
    ]
    if worker_class == "gthread":
        # gunicorn closes an idle keep-alive connection after 2 s by default, shorter than a simulated user's think
        # time: a request sent on a connection the server is closing fails ("connection closed"), a harness race
        # that no real proxy in front of gunicorn would see. The server's keep-alive must outlast the client's idle.
        argv += ["--threads", str(threads), "--keep-alive", "10"]
    return argv


def celery_argv(queue: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--concurrency",
        str(CELERY_CONCURRENCY),
        "--pool",
        "prefork",
        "--queues",
        queue,
        "--hostname",
        f"capacity-{os.getpid()}@%h",
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
    ]


def wait_for_api(url: str, token: str, process: subprocess.Popen, timeout_s: float = 90) -> None:
    """Until the trial list answers 200 for ``token``: the application, not just the socket, is up."""
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(f"{url}/api/v1/trials/", headers={"Authorization": f"Token {token}"})  # noqa: S310
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own loopback URL
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}"
        except OSError as error:
            last = str(error)
        time.sleep(0.25)
    raise RuntimeError(f"the API did not answer within {timeout_s:.0f} s ({last})")


def worker_health(timeout_s: float = 90) -> dict:
    """Round trip through the broker to the Celery worker and its database (the product's health task)."""
    from django.conf import settings

    from config.celery import app

    started = time.monotonic()
    try:
        answer = app.send_task("exotrial.worker_health", queue=settings.CAPACITY_QUEUE).get(timeout=timeout_s)
    except Exception as error:  # reported as a failed check, not a crash of the run
        return {"ok": False, "error": f"{type(error).__name__}: {error}"[:500]}
    return {"ok": True, "seconds": round(time.monotonic() - started, 3), "worker_pid": answer.get("pid")}


# --- the trial and its users -------------------------------------------------------------------------------------


@dataclass
class Staff:
    username: str
    token: str
    site: str
    user: object = field(repr=False)
    adverse_events: list[int] = field(default_factory=list)


def create_staff(trial, users: int) -> list[Staff]:
    """``users`` site-staff accounts, spread over the trial's sites in turn, each with an API token."""
    from django.contrib.auth import get_user_model

    from accounts.selectors import verified_session_required
    from accounts.testing import api_token_for
    from trials.models import Role
    from trials.services import membership_grant

    sites = list(trial.sites.order_by("code"))
    staff = []
    for number in range(users):
        site = sites[number % len(sites)]
        user = get_user_model().objects.create_user(
            username=f"capacity-staff-{number + 1:02d}", first_name="Capacity", last_name=f"staff {number + 1}"
        )
        membership_grant(
            trial=trial,
            user=user,
            role=Role.SITE_STAFF,
            site_codes=[site.code],
            granted_by=None,
            reason="capacity load test: site staff account",
        )
        if verified_session_required(user):  # site staff need no MFA; a token alone must authenticate
            raise RuntimeError(f"{user} would need MFA: the capacity test expects site staff without it")
        staff.append(Staff(username=user.username, token=api_token_for(user), site=site.code, user=user))
    return staff


def _ae_data(participant_id: int, baseline: dt.date, today: dt.date, number: int) -> dict:
    from trials import demo

    term, soc, _weight, _causality = demo.AE_TERMS[number % len(demo.AE_TERMS)]
    onset = min(today, baseline + dt.timedelta(days=3 + (participant_id * 7 + number) % 60))
    return {
        "term": term,
        "soc": soc,
        "onset_date": onset,
        "stop_date": None,
        "grade": 1 + number % 2,
        "results_in_death": False,
        "life_threatening": False,
        "hospitalization": False,
        "disability": False,
        "congenital_anomaly": False,
        "important_medical_event": False,
        "causality": demo.CAUSALITY[number % 3],
        "expected": True,
        "action_taken": "none",
        "outcome": "recovering",
        "site_aware_at": dt.datetime.combine(onset, dt.time(9, 0), tzinfo=dt.UTC) + dt.timedelta(hours=2),
    }


def _measurement_values(definition, endpoints, participant_id: int) -> dict:
    """Valid values for every endpoint scheduled at ``definition`` (the prefill; the locustfile has its own)."""
    from participants.services.visits import MeasurementInput
    from trials.models import Endpoint

    values = {}
    for endpoint in endpoints:
        if endpoint.kind == Endpoint.Kind.BINARY:
            values[endpoint.pk] = MeasurementInput(value=float(participant_id % 2))
        elif endpoint.kind == Endpoint.Kind.TIME_TO_EVENT:
            values[endpoint.pk] = MeasurementInput(value=float(definition.target_day), event=False)
        else:
            low, high = endpoint.min_value or 0.0, endpoint.max_value or 100.0
            share = 0.3 + (participant_id % 40) / 100
            values[endpoint.pk] = MeasurementInput(value=round(low + (high - low) * share, 3))
    return values


def prefill(trial, staff: list[Staff]) -> dict[str, int]:
    """Part of the follow-up, entered through the product's services by the site's staff (audited as theirs)."""
    from django.utils import timezone

    from participants.models import Participant, Visit
    from participants.services.adverse_events import adverse_event_record
    from participants.services.visits import visit_record

    today = timezone.localdate()
    by_site: dict[str, list[Staff]] = {}
    for member in staff:
        by_site.setdefault(member.site, []).append(member)
    baselines = dict(
        Visit.objects.filter(participant__trial=trial, visit_definition__is_baseline=True).values_list(
            "participant_id", "visit_date"
        )
    )
    first = trial.visit_definitions.filter(target_day__gt=0).order_by("order").first()
    first_endpoints = list(first.endpoints.all())
    people = (
        Participant.objects.filter(trial=trial, randomization__isnull=False)
        .select_related("site", "trial")
        .order_by("pk")
    )
    visits = events = 0
    for index, participant in enumerate(people):
        site_staff = by_site.get(participant.site.code)
        if not site_staff or participant.pk not in baselines:
            continue
        member = site_staff[index % len(site_staff)]
        baseline = baselines[participant.pk]
        if index % 100 < PREFILLED_VISIT_SHARE * 100:
            visit_record(
                participant=participant,
                definition=first,
                user=member.user,
                visit_date=min(today, baseline + dt.timedelta(days=first.target_day)),
                measurements=_measurement_values(first, first_endpoints, participant.pk),
            )
            visits += 1
        if (index * 7) % 100 < PREFILLED_AE_SHARE * 100:
            event = adverse_event_record(
                participant=participant, user=member.user, data=_ae_data(participant.pk, baseline, today, index)
            )
            member.adverse_events.append(event.pk)
            events += 1
    return {"visits": visits, "adverse_events": events}


def write_plan(trial, staff: list[Staff], path: Path, *, wait: tuple[float, float], seed: int) -> dict:
    """What the locustfile needs, as JSON (it imports nothing of Django): who, which records, which visits to
    enter. Visits to enter are per site, earliest visit first, each handed out once."""
    from django.utils import timezone

    from participants.models import Participant, Visit

    today = timezone.localdate()
    definitions = list(trial.visit_definitions.filter(target_day__gt=0).order_by("order").prefetch_related("endpoints"))
    schedule = {
        definition.code: [
            {"code": e.code, "kind": e.kind, "min": e.min_value, "max": e.max_value}
            for e in sorted(definition.endpoints.all(), key=lambda e: e.rank)
        ]
        for definition in definitions
    }
    recorded = set(Visit.objects.filter(participant__trial=trial).values_list("participant_id", "visit_definition_id"))
    baselines = dict(
        Visit.objects.filter(participant__trial=trial, visit_definition__is_baseline=True).values_list(
            "participant_id", "visit_date"
        )
    )
    sites: dict[str, dict] = {}
    people = Participant.objects.filter(trial=trial).order_by("pk").values_list("pk", "site__code", "randomization")
    for pk, site, randomization in people:
        entry = sites.setdefault(site, {"participants": [], "randomized": [], "visit_targets": [], "adverse_events": 0})
        entry["participants"].append(pk)
        if randomization is not None and pk in baselines:
            entry["randomized"].append(pk)
    for site, count in _ae_counts(trial):
        sites[site]["adverse_events"] = count
    for definition in definitions:
        for entry in sites.values():
            for pk in entry["randomized"]:
                if (pk, definition.pk) in recorded:
                    continue
                # Within the window: a few days either side of the target, the same for a participant each run.
                jitter = (pk * 31 + definition.order * 7 + seed) % 7 - 3
                visit_date = baselines[pk] + dt.timedelta(days=definition.target_day + jitter)
                if visit_date <= today:
                    entry["visit_targets"].append([pk, definition.code, visit_date.isoformat()])
    plan = {
        "trial": trial.protocol_code,
        "wait": list(wait),
        "seed": seed,
        "today": today.isoformat(),
        "staff": [
            {"username": s.username, "token": s.token, "site": s.site, "adverse_events": s.adverse_events}
            for s in staff
        ],
        "sites": sites,
        "baselines": {str(pk): day.isoformat() for pk, day in baselines.items()},
        "schedule": schedule,
        "ae_terms": _ae_terms(),
    }
    path.write_text(json.dumps(plan), encoding="utf-8")
    return plan


def _ae_counts(trial) -> list[tuple[str, int]]:
    from django.db.models import Count

    from participants.models import AdverseEvent

    return list(
        AdverseEvent.objects.filter(participant__trial=trial)
        .values_list("participant__site__code")
        .annotate(n=Count("pk"))
        .values_list("participant__site__code", "n")
    )


def _ae_terms() -> list[list]:
    from trials import demo

    return [[term, soc] for term, soc, _weight, _causality in demo.AE_TERMS]


def _record_counts(trial) -> dict[str, int]:
    from participants.models import AdverseEvent, Visit

    events = AdverseEvent.objects.filter(participant__trial=trial)
    return {
        "post_baseline_visits": Visit.objects.filter(
            participant__trial=trial, visit_definition__target_day__gt=0
        ).count(),
        "adverse_events": events.count(),
        "adverse_events_edited": events.filter(version__gt=1).count(),  # distinct AEs: an AE edited twice counts once
    }


# --- locust and its figures --------------------------------------------------------------------------------------


def locust_argv(options: argparse.Namespace, url: str, csv_prefix: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "locust",
        "--locustfile",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(options.users),
        "--spawn-rate",
        str(options.spawn_rate),
        "--run-time",
        f"{options.seconds}s",
        "--host",
        url,
        "--csv",
        str(csv_prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        # A request under way when the time is up completes and is counted, rather than being cut off.
        "--stop-timeout",
        "10",
    ]


def _number(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def kind_of(name: str) -> str:
    return name.split(":", 1)[0] if name.startswith(("read:", "write:")) else "other"


def read_stats(csv_prefix: Path) -> list[dict]:
    """Per request name: count, failures, median, p95, p99, max (ms) and requests/s, from ``<prefix>_stats.csv``."""
    rows = []
    with Path(f"{csv_prefix}_stats.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == "Aggregated":
                continue
            rows.append(
                {
                    "name": row["Name"],
                    "method": row["Type"],
                    "kind": kind_of(row["Name"]),
                    "count": int(_number(row["Request Count"])),
                    "failures": int(_number(row["Failure Count"])),
                    "median_ms": _number(row["Median Response Time"]),
                    "p95_ms": _number(row["95%"]),
                    "p99_ms": _number(row["99%"]),
                    "max_ms": round(_number(row["Max Response Time"]), 1),
                    "rps": round(_number(row["Requests/s"]), 2),
                }
            )
    return rows


def read_failures(csv_prefix: Path) -> list[dict]:
    path = Path(f"{csv_prefix}_failures.csv")
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        return [
            {"method": r["Method"], "name": r["Name"], "error": r["Error"][:500], "occurrences": int(r["Occurrences"])}
            for r in csv.DictReader(handle)
        ]


def read_exceptions(csv_prefix: Path) -> list[dict]:
    path = Path(f"{csv_prefix}_exceptions.csv")
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        return [{"count": int(r["Count"]), "message": r["Message"][:500]} for r in csv.DictReader(handle)]


@dataclass
class Check:
    name: str
    value: float
    limit: float
    passed: bool
    unit: str = ""

    def as_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "limit": self.limit, "unit": self.unit, "passed": self.passed}


def evaluate(
    requests: list[dict], classes: dict[str, dict], *, failures: int, exceptions: int, extra: list[Check] = ()
) -> list[Check]:
    """The R37 checks: p95 of reads and writes (together and per endpoint), no failure, no locustfile exception."""
    limits = {"read": READ_P95_LIMIT_MS, "write": WRITE_P95_LIMIT_MS}
    checks = []
    for kind, limit in limits.items():
        figures = classes.get(kind) or {}
        count = figures.get("count", 0)
        checks.append(Check(f"{kind}s sent", count, 1, count >= 1, "requests"))
        if count:
            checks.append(Check(f"p95 of all {kind}s", figures["p95_ms"], limit, figures["p95_ms"] < limit, "ms"))
    for row in requests:
        if row["kind"] in limits and row["count"]:
            limit = limits[row["kind"]]
            checks.append(Check(f"p95 {row['name']}", row["p95_ms"], limit, row["p95_ms"] < limit, "ms"))
    unnamed = sum(row["count"] for row in requests if row["kind"] == "other")
    checks.append(Check("requests neither read: nor write:", unnamed, 0, unnamed == 0, "requests"))
    checks.append(Check("failed requests", failures, 0, failures == 0, "requests"))
    checks.append(Check("locustfile exceptions", exceptions, 0, exceptions == 0, "exceptions"))
    return [*checks, *extra]


def table(requests: list[dict], classes: dict[str, dict]) -> str:
    header = f"{'request':<58} {'count':>7} {'fail':>5} {'median':>7} {'p95':>7} {'p99':>7} {'rps':>6}"
    lines = [header, "-" * len(header)]

    def line(name: str, row: dict) -> str:
        return (
            f"{name[:58]:<58} {row['count']:>7} {row['failures']:>5} {row['median_ms']:>7.0f} "
            f"{row['p95_ms']:>7.0f} {row['p99_ms']:>7.0f} {row['rps']:>6.2f}"
        )

    lines += [line(row["name"], row) for row in sorted(requests, key=lambda r: (r["kind"] != "read", r["name"]))]
    lines.append("-" * len(header))
    lines += [line(f"ALL {kind.upper()}S", classes[kind]) for kind in ("read", "write") if classes.get(kind)]
    lines.append("(times in ms)")
    return "\n".join(lines)


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def verify_audit(env: dict[str, str], timeout_s: float = 600) -> dict:
    completed = subprocess.run(
        [sys.executable, "manage.py", "verify_audit"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    output = (completed.stdout + completed.stderr).strip()
    return {"ok": completed.returncode == 0, "returncode": completed.returncode, "output": output[-4000:]}


# --- the run -----------------------------------------------------------------------------------------------------


def _raise_system_exit(signum, _frame) -> None:
    raise SystemExit(128 + signum)  # so that ``finally`` stops the children


@dataclass
class Run:
    """One capacity run: where it writes, its children, and what it found so far (``result``)."""

    options: argparse.Namespace
    var: Path
    out: Path
    csv_prefix: Path
    work: Path
    url: str
    port: int
    children: Children
    result: dict = field(default_factory=lambda: {"requirement": "R37", "passed": False})
    loads: dict = field(default_factory=dict)


def set_up(run: Run):
    """Database, gunicorn and the worker, the trial and its staff, the plan; returns (trial, staff, env)."""
    from django.conf import settings
    from django.core.management import call_command

    from benchmarks.synthetic import build_trial

    options, database = run.options, settings.DATABASES["default"]["NAME"]
    if options.existing_database:
        _log(f"using database {database} as it is")
    else:
        _log(f"recreating database {database} and migrating")
        recreate_database()
        call_command("migrate", "--no-input", verbosity=0)
    env = child_env()
    # Both boot while the trial is built (they need the schema only, not the data).
    gunicorn = run.children.start("gunicorn", gunicorn_argv(run.port, options.worker_class, options.threads), env)
    run.children.start("celery", celery_argv(settings.CAPACITY_QUEUE), env)
    timer = time.perf_counter()
    code = f"CAPACITY-{options.participants}"
    trial = build_trial(options.participants, seed=options.seed, follow_up=False, protocol_code=code)
    staff = create_staff(trial, options.users)
    prefilled = prefill(trial, staff)
    plan = write_plan(trial, staff, run.work / "plan.json", wait=options.wait, seed=options.seed)
    targets = sum(len(site["visit_targets"]) for site in plan["sites"].values())
    _log(
        f"built {code} in {time.perf_counter() - timer:.1f} s: {options.participants} randomized, "
        f"{len(staff)} site staff, prefilled {prefilled['visits']} W4 visits and {prefilled['adverse_events']} "
        f"adverse events, {targets} visits left to enter"
    )
    wait_for_api(run.url, staff[0].token, gunicorn)
    run.result["celery"] = {"before": worker_health()}
    if not run.result["celery"]["before"]["ok"]:
        raise RuntimeError(f"the Celery worker did not answer: {run.result['celery']['before']['error']}")
    _log(f"gunicorn ({GUNICORN_WORKERS} {options.worker_class} workers) on {run.url}; the Celery worker answered")
    for member in staff[: GUNICORN_WORKERS * 2]:  # a first request per worker before the clock starts
        wait_for_api(run.url, member.token, gunicorn)
    return trial, staff, env


def drive(run: Run) -> int | None:
    """Locust, bounded: its exit code (1 when a request failed; the checks say which)."""
    options = run.options
    env = {
        **os.environ,
        "CAPACITY_PLAN": str(run.work / "plan.json"),
        "CAPACITY_SUMMARY": str(run.work / "summary.json"),
    }
    _log(f"locust: {options.users} users (+{options.spawn_rate}/s) for {options.seconds} s, think {options.wait} s")
    run.loads["load_start"] = _load_average()
    locust = run.children.start("locust", locust_argv(options, run.url, run.csv_prefix), env)
    try:
        returncode = locust.wait(timeout=options.seconds + 120)
    except subprocess.TimeoutExpired:
        returncode = None
    run.loads["load_end"] = _load_average()
    run.children.stop("locust")
    if returncode not in (0, 1):
        raise RuntimeError(f"locust ended with {returncode}: {run.children.log_tail('locust')}")
    summary = run.work / "summary.json"
    if not summary.exists():
        raise RuntimeError(f"locust wrote no summary: {run.children.log_tail('locust')}")
    return returncode


def judge(run: Run, *, before: dict, after: dict, audit: dict, locust_rc: int | None) -> list[Check]:
    """Read locust's figures, apply the checks and put everything into ``run.result``."""
    summary = json.loads((run.work / "summary.json").read_text(encoding="utf-8"))
    requests = read_stats(run.csv_prefix)
    failures = read_failures(run.csv_prefix)
    exceptions = read_exceptions(run.csv_prefix)
    acknowledged = {
        "post_baseline_visits": summary["successes"].get("visit", 0),
        "adverse_events": summary["successes"].get("adverse_event", 0),
        "adverse_event_edits": summary["successes"].get("adverse_event_edit", 0),
    }
    persisted = {name: after[name] - before[name] for name in before}
    health_after = run.result["celery"]["after"]
    extra = [
        Check("audit chain verified", int(audit["ok"]), 1, audit["ok"]),
        Check("Celery worker answers after the load", int(health_after["ok"]), 1, health_after["ok"]),
    ]
    # Every 201 is in the database; a request cut off at the very end may be there without its 201.
    extra += [
        Check(
            f"{name} persisted - acknowledged",
            persisted[name] - acknowledged[name],
            run.options.users,
            0 <= persisted[name] - acknowledged[name] <= run.options.users,
            "rows",
        )
        for name in ("post_baseline_visits", "adverse_events")
    ]
    checks = evaluate(
        requests,
        summary["classes"],
        failures=sum(f["occurrences"] for f in failures),
        exceptions=sum(e["count"] for e in exceptions),
        extra=extra,
    )
    run.result.update(
        {
            "passed": all(check.passed for check in checks),
            "checks": [check.as_dict() for check in checks],
            "classes": summary["classes"],
            "requests": requests,
            "failures": failures,
            "exceptions": exceptions,
            "audit": audit,
            "writes": {"acknowledged": acknowledged, "persisted": persisted, "skipped": summary.get("skipped", {})},
            "locust_returncode": locust_rc,
        }
    )
    print("\n" + table(requests, summary["classes"]))
    return checks


def write_result(run: Run, started_at: dt.datetime) -> None:
    from django.conf import settings

    options = run.options
    run.result["settings"] = {
        "users": options.users,
        "spawn_rate": options.spawn_rate,
        "seconds": options.seconds,
        "wait_s": list(options.wait),
        "participants": options.participants,
        "database": settings.DATABASES["default"]["NAME"],
        "existing_database": options.existing_database,
        "gunicorn": {
            "workers": GUNICORN_WORKERS,
            "worker_class": options.worker_class,
            "threads": options.threads if options.worker_class == "gthread" else 1,
        },
        "celery": {"concurrency": CELERY_CONCURRENCY, "broker": settings.CELERY_BROKER_URL.split("://")[0]},
        "limits_ms": {"read_p95": READ_P95_LIMIT_MS, "write_p95": WRITE_P95_LIMIT_MS},
    }
    from benchmarks.report import machine_description

    machine = {}
    with contextlib.suppress(Exception):
        machine = machine_description()
    # The run shares the box with whatever else runs on it: say how busy it was.
    run.result["machine"] = {**machine, "load_average_1_5_15": {**run.loads, "end_of_run": _load_average()}}
    run.result["started_at"] = started_at.isoformat(timespec="seconds")
    run.result["duration_s"] = round((dt.datetime.now(tz=dt.UTC) - started_at).total_seconds(), 1)
    run.out.parent.mkdir(parents=True, exist_ok=True)
    run.out.write_text(json.dumps(run.result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"Written to {run.out}", flush=True)


def run_capacity(options: argparse.Namespace) -> int:
    import django

    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
    django.setup()
    from django.conf import settings
    from django.db import connections

    var = Path(settings.VAR_DIR)
    # The plan (with the tokens of this run's throw-away accounts) and the children's logs, replaced every run.
    work = var / "capacity-run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port = options.port or _free_port()
    run = Run(
        options=options,
        var=var,
        out=options.out or var / "capacity.json",
        csv_prefix=options.csv or var / "capacity",
        work=work,
        url=f"http://127.0.0.1:{port}",
        port=port,
        children=Children(work),
    )
    started_at = dt.datetime.now(tz=dt.UTC)
    run.loads["before"] = _load_average()
    try:
        trial, _staff, env = set_up(run)
        before = _record_counts(trial)
        connections.close_all()  # the runner holds no connection open during the load
        locust_rc = drive(run)
        run.result["celery"]["after"] = worker_health()
        after = _record_counts(trial)
        connections.close_all()
        run.children.stop("gunicorn")
        run.children.stop("celery")
        _log("verifying the audit chain")
        audit = verify_audit(env)
        checks = judge(run, before=before, after=after, audit=audit, locust_rc=locust_rc)
        for check in checks:
            if not check.passed:
                print(f"FAILED {check.name}: {check.value:g} (limit {check.limit:g} {check.unit})".rstrip())
        print(f"audit: {audit['output'].splitlines()[-1] if audit['output'] else audit['returncode']}")
        return 0 if run.result["passed"] else 1
    except Exception as error:
        _log(f"capacity run FAILED: {type(error).__name__}: {error}")
        run.result["error"] = f"{type(error).__name__}: {error}"[:4000]
        logs = {name: run.children.log_tail(name, 1500) for name in ("gunicorn", "celery", "locust")}
        run.result["logs"] = {name: tail for name, tail in logs.items() if tail}
        return 2
    finally:
        run.children.stop_all()
        write_result(run, started_at)
        if options.drop_database:
            with contextlib.suppress(Exception):
                drop_database()


def main(argv: list[str] | None = None) -> int:
    options = _options(argv)
    signal.signal(signal.SIGTERM, _raise_system_exit)
    return run_capacity(options)


if __name__ == "__main__":
    sys.exit(main())
