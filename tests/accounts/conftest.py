"""Fixtures of the accounts' tests: a real OpenID provider (panva's oidc-provider, run by
node from tests/oidc_provider/) for the single sign-on browser test."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import ROOT, free_port, process_stop, wait_for

PROVIDER_DIR = ROOT / "tests" / "oidc_provider"


@dataclass
class OidcProvider:
    issuer: str
    client_id: str
    client_secret: str
    claims_file: Path
    process: subprocess.Popen
    log_path: Path

    def set_accounts(self, accounts: dict[str, dict[str, Any]]) -> None:
        """The provider's accounts, by login name (their `sub`), with their claims: read
        by the provider at each use, so a later log-in sees the change."""
        draft = self.claims_file.with_suffix(".draft")
        draft.write_text(json.dumps(accounts))
        draft.replace(self.claims_file)  # never half a file

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        process_stop(self.process)


def _node_and_modules() -> str:
    """node, with the provider's packages installed (`npm ci`, from package-lock.json)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        if os.environ.get("CI"):
            pytest.fail("node and npm are missing; the single sign-on test must run in CI")
        pytest.skip("node and npm are missing: install Node.js 20+ to run the provider")
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=PROVIDER_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode:
            pytest.fail(f"npm ci in {PROVIDER_DIR} failed:\n{done.stdout}\n{done.stderr}")
    return node


@pytest.fixture
def start_oidc_provider(tmp_path) -> Iterator[Callable[[str], OidcProvider]]:
    """Start the provider for a site's redirect URI (its port is known before the site
    starts, and the site's settings need the provider's): the provider, once its
    discovery document answers. Stopped after the test."""
    node = _node_and_modules()
    started: list[OidcProvider] = []

    def start(redirect_uri: str) -> OidcProvider:
        port = free_port()
        claims_file = tmp_path / "oidc-accounts.json"
        claims_file.write_text("{}")
        log_path = tmp_path / "oidc-provider.log"
        client_secret = secrets.token_urlsafe(24)
        env = {
            **os.environ,
            "PORT": str(port),
            "CLIENT_ID": "chatsite",
            "CLIENT_SECRET": client_secret,
            "REDIRECT_URI": redirect_uri,
            "CLAIMS_FILE": str(claims_file),
        }
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [node, "provider.mjs"], cwd=PROVIDER_DIR, env=env, stdout=log, stderr=log
            )
        provider = OidcProvider(
            issuer=f"http://127.0.0.1:{port}",
            client_id="chatsite",
            client_secret=client_secret,
            claims_file=claims_file,
            process=process,
            log_path=log_path,
        )
        started.append(provider)

        def answers() -> bool:
            if process.poll() is not None:
                return True
            try:
                url = f"{provider.issuer}/.well-known/openid-configuration"
                return requests.get(url, timeout=2).ok
            except requests.ConnectionError:
                return False

        wait_for(answers, timeout=30, interval=0.1, what="the OpenID provider to answer")
        if process.poll() is not None:
            raise AssertionError(f"the OpenID provider exited early:\n{provider.log()[-3000:]}")
        return provider

    yield start
    for provider in started:
        provider.stop()
