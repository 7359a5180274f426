"""A ~100 KB reply full of Markdown links streamed to a reader (issue 13, defect 7): the
web process serving it keeps answering /healthz fast, and the reader is shown it once."""

from __future__ import annotations

import time

import pytest
import requests

from .harness import (
    Expect,
    Stack,
    assert_held,
    assert_no_tracebacks,
    logged_in,
    send_and_follow,
    tally,
    unique,
)

pytestmark = [pytest.mark.faults, pytest.mark.worker]

LINKS = "".join(f"See [page {i}](https://example.com/{i}) and **{i}**. " for i in range(2200))
HEALTHZ_LIMIT = 0.5  # seconds


def test_healthz_stays_fast_while_a_reader_follows_a_huge_reply(stack: Stack):
    web_a, web_b = stack.webs
    person = logged_in(web_a)
    conversation = person.open_conversation(web_a)
    stack.simulator.control(faults=[{"kind": "content", "content": LINKS}])
    # Live text is the Markdown as written; the ended reply brings it rendered.
    expect = Expect(LINKS.strip())
    reply = send_and_follow(conversation, web_a, [web_b], unique("huge"), expect=expect)
    probes, slowest = 0, 0.0
    while reply.reader.is_alive():
        started = time.monotonic()
        assert requests.get(f"{web_b.url}/healthz", timeout=10).status_code == 200
        slowest = max(slowest, time.monotonic() - started)
        probes += 1
    row = tally(
        f"~{len(LINKS) // 1000} KB Markdown reply streamed to a reader",
        [reply],
        stack,
        notes=[
            f"slowest /healthz on the reader's web process {slowest * 1000:.0f} ms "
            f"of {probes} probes; {len(reply.live)} live events"
        ],
    )
    assert_held(row, stack)
    assert reply.live, "the reply was not streamed"
    assert slowest < HEALTHZ_LIMIT, f"/healthz took {slowest:.2f}s while the reply streamed"
    assert_no_tracebacks(stack)
