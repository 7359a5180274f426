"""A retry after a worker died mid-reply starts the live text again: readers never show
the dead attempt's words before the new ones (issue 13, defect 3)."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test import AsyncClient
from django.utils import timezone

from conversations.chat import channel, tasks
from conversations.chat.channel.redis import LiveText
from conversations.chat.services import completions
from conversations.chat.services import conversations as chat_services
from conversations.models import Completion
from conversations.upstream import sse

DEAD = "words of the attempt that died"


def test_entries_of_an_older_attempt_are_dropped_and_a_newer_one_starts_again():
    live = LiveText()
    live.add({"s": "running", "a": "1"})
    live.add({"i": "0", "d": DEAD, "a": "1"})
    assert live.take_unsent() == {0: DEAD}
    live.add({"s": "running", "a": "2"})
    assert live.take_unsent() == {0: ""}  # the page clears the dead text at once
    live.add({"i": "0", "d": "fresh", "a": "2"})
    live.add({"i": "0", "d": " late zombie words", "a": "1"})
    assert live.take_unsent() == {0: "fresh"}


def visible(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html).strip()


def text_events(raw: str) -> list[str]:
    found = []
    for block in raw.split("\n\n"):
        lines = block.split("\n")
        if lines and lines[0] == "event: text-0":
            found.append(visible("\n".join(line[6:] for line in lines[1:])))
    return found


@pytest.mark.skipif(
    not settings.REDIS_URL, reason="the live text goes through Redis only with REDIS_URL set"
)
@pytest.mark.django_db(transaction=True)
def test_a_reader_never_shows_a_dead_attempts_text_with_the_retry(
    alice, simulator, enqueued, send, settings
):
    settings.UPSTREAM_STREAM = True
    simulator.control(token_delay=0.05)
    conversation = chat_services.conversation_create(owner=alice)
    _, completion = send(conversation, "Tell me something")
    # Attempt 1 wrote some words to the live stream, and its worker died.
    claim = completions.completion_claim(completion_id=completion.pk)
    live = channel.reply_channel()
    live.publish_status(completion.pk, "running", attempt=1)
    publisher = live.publisher(completion.pk, attempt=1, write_db=lambda contents: None)
    publisher.publish([sse.StreamDelta(0, DEAD)])
    publisher.send_live()
    Completion.objects.filter(pk=claim.completion.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    url = f"/c/{conversation.pk}/completions/{completion.pk}/events/"

    def attempt_two() -> str:
        try:
            return tasks.run_completion(completion.pk)
        finally:
            connection.close()

    async def read() -> tuple[list[str], str]:
        reader = AsyncClient()
        await reader.aforce_login(alice)
        response = await reader.get(url)
        chunks = aiter(response.streaming_content)
        seen = ""
        while "event: text-0" not in seen:  # the dead attempt's words, replayed
            seen += (await asyncio.wait_for(anext(chunks), 10)).decode()
        retry = asyncio.create_task(asyncio.to_thread(attempt_two))
        async for chunk in chunks:
            seen += chunk.decode()
            if "event: done" in seen:
                break
        return text_events(seen), await asyncio.wait_for(retry, 20)

    # In a thread of its own: the browser tests' Playwright loop may run in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        texts, outcome = pool.submit(asyncio.run, asyncio.wait_for(read(), 30)).result()
    assert outcome == "succeeded"
    assert texts[0] == DEAD
    later = texts[1:]
    assert later and all(DEAD not in text for text in later), texts
    completion.refresh_from_db()
    assert completion.attempts == 2
