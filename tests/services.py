"""Services a test runs for itself: a private redis-server it can kill and restart."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from pathlib import Path

import redis

from tests.support import wait_for

REDIS_SERVER = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private redis-server on its own port (never the shared one other tests use).
    `start()` again after `kill()` restarts it on the same port, empty."""

    def __init__(self, log_path: Path) -> None:
        self.port = _free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        command = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no",
        ]  # fmt: skip
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            wait_for(lambda: self._answers(client), timeout=10, what="redis-server to answer")
        finally:
            client.close()
        return self

    def _answers(self, client: redis.Redis) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited:\n{self.log_path.read_text()[-2000:]}")
        try:
            return client.ping()
        except redis.ConnectionError:
            return False

    def kill(self) -> None:
        """SIGKILL, as when the machine or container dies."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.kill()
