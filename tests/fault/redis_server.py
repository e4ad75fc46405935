"""A redis-server of the fault test's own: loopback, a free port, a temporary directory, stopped by its PID."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.fault.processes import LOOPBACK, free_port, wait_until


class RedisServer:
    def __init__(self, *, appendonly: bool = False) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="exotrial-fault-redis-"))
        self.appendonly = appendonly
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self, timeout: float = 10) -> None:
        arguments = [shutil.which("redis-server") or "redis-server", "--bind", LOOPBACK, "--port", str(self.port)]
        arguments += ["--dir", str(self.root)]
        arguments += ["--save", "", "--appendonly", "yes" if self.appendonly else "no", "--protected-mode", "yes"]
        self.process = subprocess.Popen(  # noqa: S603
            arguments,
            stdin=subprocess.DEVNULL,
            stdout=(self.root / "redis.log").open("a"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: self.cli("PING") == "PONG", timeout, message="redis-server answers PING", ignore=(OSError,))

    def cli(self, *command: str, timeout: float = 5) -> str:
        result = subprocess.run(  # noqa: S603
            [shutil.which("redis-cli") or "redis-cli", "-h", LOOPBACK, "-p", str(self.port), *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return result.stdout.strip()

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def redis_available() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None
