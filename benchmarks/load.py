"""``api_write_vs_bare``: POST of outcome measurements under load, product endpoint ÷ bare DRF endpoint.

One gunicorn (``benchmarks.settings``: the product's settings and URLs plus ``benchmarks.bare``) serves both; wrk on
loopback drives each for a warm-up and then a measured period with the same threads and connections. Every request
writes a new visit: a participant × post-baseline visit of a trial built with ``follow_up=False``, each used once
(the wrk script hands them out, thread by thread, from a list the benchmark writes).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from rest_framework.authtoken.models import Token

from benchmarks import bare
from benchmarks.report import Figure, ratio
from benchmarks.synthetic import trial_user
from participants.models import OutcomeMeasurement, Participant, Visit
from trials.models import Role, Trial

BASE_DIR = Path(settings.BASE_DIR)
_LUA = """
-- One target per line: the path, a tab, the JSON body (a table literal this long would overflow LuaJIT's constants).
local targets = {}
for line in io.lines(os.getenv("BENCH_TARGETS")) do
  local tab = line:find("\t", 1, true)
  targets[#targets + 1] = {line:sub(1, tab - 1), line:sub(tab + 1)}
end
local token = os.getenv("BENCH_TOKEN")
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Token " .. token}
local thread_count = 0
local threads = {}
-- Thread t takes targets offset + t, offset + t + stride, ...: no two requests share a target.
local offset = tonumber(os.getenv("BENCH_OFFSET"))
local stride = tonumber(os.getenv("BENCH_STRIDE"))

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  sent = 0
end

function request()
  local target = targets[offset + id + sent * stride + 1] or targets[#targets]
  sent = sent + 1
  return wrk.format("POST", target[1], headers, target[2])
end

function done(summary, latency, requests)
  -- Threads send at different rates: the next run starts past the furthest target any of them took.
  local most = 0
  for _, thread in ipairs(threads) do
    most = math.max(most, thread:get("sent"))
  end
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, "p50_ms": %.3f, '
      .. '"p99_ms": %.3f, "next_offset": %d}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, offset + (most + 1) * stride))
end
"""


@dataclass(frozen=True)
class LoadSettings:
    """How hard and how long: the same for the product and the bare endpoint."""

    duration_s: int = 15
    warmup_s: int = 3
    threads: int = 2
    connections: int = 8
    gunicorn_workers: int = 2
    # BENCH_API_WORKER_CLASS=gthread measures threaded workers (a write waits on PostgreSQL locks part of its time);
    # the bare endpoint always gets the same settings as the product.
    worker_class: str = "sync"
    worker_threads: int = 4

    @property
    def stride(self) -> int:
        return self.threads


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_targets(trial: Trial, folder: Path, *, limit: int = 200_000) -> tuple[Path, Path, int]:
    """Target files (path, tab, JSON body per line) for the product and the bare endpoint: up to ``limit`` visits
    not recorded yet, visit by visit so that every participant's earlier visits come first."""
    taken = set(Visit.objects.filter(participant__trial=trial).values_list("participant_id", "visit_definition_id"))
    baseline_dates = dict(
        Visit.objects.filter(participant__trial=trial, visit_definition__is_baseline=True).values_list(
            "participant_id", "visit_date"
        )
    )
    definitions = list(trial.visit_definitions.filter(target_day__gt=0).order_by("order").prefetch_related("endpoints"))
    people = list(
        Participant.objects.filter(trial=trial, randomization__isnull=False).order_by("pk").values_list("pk", flat=True)
    )
    api = f"/api/v1/trials/{trial.protocol_code}/participants"
    paths = (folder / "product-targets.tsv", folder / "bare-targets.tsv")
    count = 0
    with paths[0].open("w", encoding="utf-8") as product, paths[1].open("w", encoding="utf-8") as plain:
        for definition in definitions:
            for pk in people:
                if count >= limit:
                    return paths[0], paths[1], count
                if (pk, definition.pk) in taken or pk not in baseline_dates:
                    continue
                visit_date = (baseline_dates[pk] + dt.timedelta(days=definition.target_day)).isoformat()
                body = {
                    "visit": definition.code,
                    "visit_date": visit_date,
                    "measurements": [
                        _measurement(endpoint, pk * 7 + definition.order, definition.target_day)
                        for endpoint in definition.endpoints.all()
                    ],
                }
                product.write(f"{api}/{pk}/visits/\t{json.dumps(body)}\n")
                plain.write(f"/bench/bare/\t{json.dumps({**body, 'participant': pk})}\n")
                count += 1
    return paths[0], paths[1], count


def _measurement(endpoint, spread: int, target_day: int) -> dict:
    """A valid value for every endpoint the visit schedules (the API refuses a visit with one missing)."""
    if endpoint.kind == "time_to_event":
        return {"endpoint": endpoint.code, "value": float(target_day), "event_occurred": False}
    low = endpoint.min_value if endpoint.min_value is not None else 0.0
    high = endpoint.max_value if endpoint.max_value is not None else low + 100.0
    steps = max(int(high - low), 0)
    return {"endpoint": endpoint.code, "value": low + (spread % (steps + 1)) if steps else low}


class Gunicorn:
    """gunicorn serving ``benchmarks.settings`` on a free loopback port, stopped (by its pid) on exit."""

    def __init__(self, load: LoadSettings, env: dict, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(load.gunicorn_workers),
                "--worker-class",
                load.worker_class,
                "--threads",
                str(load.worker_threads if load.worker_class == "gthread" else 1),
                "--log-level",
                "warning",
                # Django loads once, before the workers fork: the first timed request does not pay for it.
                "--preload",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}; see {self._log.name}")
            try:
                # Any answer (401: no token) shows the application, not just the socket, is up.
                urllib.request.urlopen(f"{self.url}/bench/bare/", timeout=10)  # noqa: S310 - our own loopback URL
            except urllib.error.HTTPError:
                return
            except OSError:
                pass
            else:
                return
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not listen within {timeout_s} s")

    def __enter__(self) -> Gunicorn:
        self.wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def _wrk(url: str, *, script: Path, targets: Path, token: str, offset: int, seconds: int, load: LoadSettings) -> dict:
    command = [
        "wrk",
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{seconds}s",
        "--timeout",
        "30s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    env = {
        **os.environ,
        "BENCH_TARGETS": str(targets),
        "BENCH_TOKEN": token,
        "BENCH_OFFSET": str(offset),
        "BENCH_STRIDE": str(load.stride),
    }
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 120, check=False)
    line = next((x for x in completed.stdout.splitlines() if x.startswith("BENCH ")), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr[-2000:]}{completed.stdout[-2000:]}")
    result = json.loads(line.removeprefix("BENCH "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def _drive(url: str, *, script: Path, targets: Path, token: str, load: LoadSettings) -> dict:
    """A warm-up, then the measured period on targets the warm-up did not use."""
    warm = _wrk(url, script=script, targets=targets, token=token, offset=0, seconds=load.warmup_s, load=load)
    offset = warm["next_offset"]
    measured = _wrk(url, script=script, targets=targets, token=token, offset=offset, seconds=load.duration_s, load=load)
    measured["targets_used"] = measured["next_offset"]
    return {"warmup": warm, "measured": measured}


def api_write_vs_bare(trial: Trial, folder: Path, *, load: LoadSettings, env: dict | None = None) -> Figure:
    """Requests per second of the product's POST of a visit's measurements ÷ the bare endpoint's, with p99 latency.

    ``trial`` must be committed and built with ``follow_up=False``; ``env`` adds to the environment of gunicorn
    (e.g. the database of the tests).
    """
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian package wrk; make bench installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    bare.create_table()
    user = trial_user(trial, Role.SITE_STAFF)
    token, _ = Token.objects.get_or_create(user=user)
    product_targets, bare_targets, available = write_targets(trial, folder)
    script = folder / "post.lua"
    script.write_text(_LUA, encoding="utf-8")
    before = OutcomeMeasurement.objects.filter(visit__participant__trial=trial).count()
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchmarks.settings", **(env or {})}
    with Gunicorn(load, environment, folder / "gunicorn.log") as server:
        product = _drive(server.url, script=script, targets=product_targets, token=token.key, load=load)
        plain = _drive(server.url, script=script, targets=bare_targets, token=token.key, load=load)
    written = OutcomeMeasurement.objects.filter(visit__participant__trial=trial).count() - before
    for name, result in (("product", product), ("bare", plain)):
        measured = result["measured"]
        if measured["targets_used"] > available:
            raise RuntimeError(f"The {name} run needed more than the {available} visits left: use a larger trial.")
        if measured["non_2xx"] or measured["socket_errors"] or not measured["requests"]:
            raise RuntimeError(f"The {name} endpoint did not answer every request with success: {measured}")
    product_rps, bare_rps = product["measured"]["rps"], plain["measured"]["rps"]
    return Figure(
        "api_write_vs_bare",
        ratio(product_rps, bare_rps),
        ">=",
        0.5,
        unit="ratio (rps)",
        platform=product_rps,
        baseline=bare_rps,
        note=(
            f"rps product {product_rps:.0f} (p99 {product['measured']['p99_ms']:.1f} ms) vs bare {bare_rps:.0f} "
            f"(p99 {plain['measured']['p99_ms']:.1f} ms); wrk -t{load.threads} -c{load.connections}, "
            f"{load.warmup_s}+{load.duration_s} s; gunicorn {load.gunicorn_workers} {load.worker_class} workers"
            + (f" x {load.worker_threads} threads" if load.worker_class == "gthread" else "")
        ),
        detail={
            "product": product,
            "bare": plain,
            "product_p99_ms": product["measured"]["p99_ms"],
            "bare_p99_ms": plain["measured"]["p99_ms"],
            "values_written_by_product": written,
            "load": load.__dict__,
        },
    )
