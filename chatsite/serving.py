"""How a web process is started: the one uvicorn command line `manage.py serve` and the
tests use, so what is trusted from a proxy is decided in one place."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def uvicorn_command(
    *, host: str, port: int, trusted_proxies: Sequence[str], python: str = sys.executable
) -> list[str]:
    """uvicorn serving the ASGI app. X-Forwarded-For and -Proto are believed only from
    `trusted_proxies` (DJANGO_TRUSTED_PROXIES): uvicorn's own default believes them from
    127.0.0.1, which lets anyone on the machine pick the address the log-in limits count."""
    command = [
        python, "-m", "uvicorn", "chatsite.asgi:application",
        "--host", host, "--port", str(port), "--no-access-log",
    ]  # fmt: skip
    if trusted_proxies:
        return [*command, "--proxy-headers", "--forwarded-allow-ips", ",".join(trusted_proxies)]
    return [*command, "--no-proxy-headers"]
