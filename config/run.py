"""`make run`: migrate, seed the demo trial, then serve web + Celery worker until Ctrl-C.

Started as ``python -m config.run``. With no DATABASE_URL the embedded PostgreSQL in var/pgdata is
started first and stopped again on exit; with no REDIS_URL the worker uses the filesystem broker.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def _manage(*args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=BASE_DIR, check=True)  # noqa: S603


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default="8000")
    parser.add_argument(
        "--password",
        default=os.environ.get("DEMO_PASSWORD"),
        help="Password for the demo logins (default: generated and printed).",
    )
    options = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
    # A person reads this console: readable lines (deployments keep the JSON lines of config.settings.base).
    os.environ.setdefault("EXOTRIAL_LOG_FORMAT", "plain")

    from config.settings.base import VAR_DIR

    embedded_pgdata = None
    if not os.environ.get("DATABASE_URL"):
        from config.embedded import ensure_database, ensure_running

        embedded_pgdata = VAR_DIR / "pgdata"
        ensure_database(ensure_running(embedded_pgdata), "exotrial")
        print(f"Embedded PostgreSQL running with data in {embedded_pgdata}")

    children: list[subprocess.Popen] = []
    try:
        _manage("migrate", "--no-input", "-v", "1")
        _manage("seed_demo", *(["--password", options.password] if options.password else []))
        # One machine, one worker: it also runs beat (-B), which delivers the notification outbox and checks the
        # SAE clocks and planned looks. A deployment with several workers runs `celery -A config beat` once instead.
        children.append(
            subprocess.Popen(  # noqa: S603
                [
                    PYTHON,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--loglevel",
                    "INFO",
                    "--concurrency",
                    "2",
                    "--beat",
                    "--schedule",
                    str(VAR_DIR / "celerybeat-schedule"),
                ],
                cwd=BASE_DIR,
            )
        )
        children.append(
            subprocess.Popen(  # noqa: S603
                [PYTHON, "manage.py", "runserver", f"{options.host}:{options.port}", "--noreload"], cwd=BASE_DIR
            )
        )
        print(
            f"\nExoTrial is running at http://{options.host}:{options.port}/  "
            "(admin at /admin/; log in with a demo login printed above). Ctrl-C stops web and worker.\n",
            flush=True,
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        return 1  # one of them died on its own
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(children)
        if embedded_pgdata is not None:
            from config.embedded import stop

            stop(embedded_pgdata)
            print("Stopped web, worker and the embedded PostgreSQL.")


def _stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


if __name__ == "__main__":
    sys.exit(main())
