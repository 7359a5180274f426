"""X-Forwarded-For spoofed over loopback (issue 13, defect 8): no proxy is trusted by
default, so the per-address log-in limit counts the connection's own address and still
refuses, whatever address each attempt claims, on every web process."""

from __future__ import annotations

import pytest
import requests
from django.contrib.auth.models import User

from tests.http import Page

from .harness import PASSWORD, Row, Stack, StackSetup, record

pytestmark = [pytest.mark.faults, pytest.mark.worker]

PER_ADDRESS = 5  # failed log-ins per address in the window (production's default is 20)


@pytest.fixture
def stack_setup() -> StackSetup:
    return StackSetup(env={"LOGIN_FAILURES_PER_IP": str(PER_ADDRESS)})


def log_in(web, username: str, password: str, claimed: str) -> int:
    """One log-in from a fresh browser claiming to come from `claimed`; its status."""
    session = requests.Session()
    page = Page(session.get(f"{web.url}/accounts/login/", timeout=10).text)
    spoofed = {"X-Forwarded-For": claimed, "X-Real-IP": claimed, "Forwarded": f"for={claimed}"}
    response = session.post(
        f"{web.url}/accounts/login/",
        data=page.forms["/accounts/login/"] | {"username": username, "password": password},
        headers=spoofed,
        timeout=30,
        allow_redirects=False,
    )
    return response.status_code


def test_a_spoofed_forwarded_for_never_escapes_the_per_address_log_in_limit(stack: Stack):
    User.objects.create_user("alice", password=PASSWORD)
    statuses = []
    # A different username each time (never its own limit) and a different address.
    for attempt in range(PER_ADDRESS + 4):
        web = stack.webs[attempt % 2]
        statuses.append(log_in(web, f"nobody{attempt}", "wrong-password", f"203.0.113.{attempt}"))
    # Even the right password is refused from this address now.
    statuses.append(log_in(stack.webs[0], "alice", PASSWORD, "198.51.100.7"))
    refusals = statuses.count(429)
    record(
        Row(
            fault="X-Forwarded-For spoofed over loopback (log-in limit)",
            notes=[
                f"log-in refused {refusals} of {len(statuses)} attempts "
                f"(limit {PER_ADDRESS} per address; each claimed another address; both web "
                f"processes): {statuses}"
            ],
        )
    )
    assert statuses == [200] * PER_ADDRESS + [429] * 5, statuses
