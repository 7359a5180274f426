"""A retry after a worker died mid-reply starts the live text again: readers never show
the dead attempt's words before the new ones (issue 13, defect 3)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test import AsyncClient
from django.utils import timezone

from conversations.chat import channel, tasks
from conversations.chat.channel.base import Texts
from conversations.chat.channel.redis import LiveText, _resume_point
from conversations.chat.services import completions
from conversations.chat.services import conversations as chat_services
from conversations.models import Completion
from conversations.upstream import sse
from tests.http import Shown, split_events

DEAD = "words of the attempt that died"


def test_entries_of_an_older_attempt_are_dropped_and_a_newer_one_starts_again():
    live = LiveText()
    live.add({"s": "running", "a": "1"})
    live.add({"i": "0", "d": DEAD, "a": "1"})
    first = live.take("1-0.1")
    assert first.texts == {0: DEAD} and first.replaced == {0}  # a new reader: the whole text
    live.add({"i": "0", "d": " more", "a": "1"})
    assert live.take("2-0.1") == Texts({0: " more"}, frozenset(), "2-0.1")  # then pieces
    live.add({"s": "running", "a": "2"})
    assert live.take("3-0.2") == Texts({0: ""}, frozenset({0}), "3-0.2")  # cleared at once
    live.add({"i": "0", "d": "fresh", "a": "2"})
    live.add({"i": "0", "d": " late zombie words", "a": "1"})
    assert live.take("5-0.2").texts == {0: "fresh"}


def test_a_reader_resuming_from_an_event_id_gets_pieces_and_a_retry_clears_the_page():
    entry, live = _resume_point("7-0.1", choices=2)
    assert entry == "7-0"
    live.add({"i": "1", "d": " on", "a": "1"})
    assert live.take("8-0.1") == Texts({1: " on"}, frozenset(), "8-0.1")
    live.add({"s": "running", "a": "2"})  # the page shows attempt 1's text in both choices
    assert live.take("9-0.2") == Texts({0: "", 1: ""}, frozenset({0, 1}), "9-0.2")
    assert _resume_point("garbage", choices=1)[0] == "0-0"  # from the start, whole texts
    assert _resume_point(None, choices=1)[1].fresh


def shown_texts(raw: str) -> list[str]:
    """Choice 0's text as the page shows it after each of its events."""
    shown, found = Shown(), []
    for event, data, _ in split_events(raw):
        if event.endswith("-0") and (now := shown.apply(event, data)) is not None:
            found.append(now)
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
        while "event: reset-0" not in seen:  # the dead attempt's words, replayed
            seen += (await asyncio.wait_for(anext(chunks), 10)).decode()
        retry = asyncio.create_task(asyncio.to_thread(attempt_two))
        async for chunk in chunks:
            seen += chunk.decode()
            if "event: done" in seen:
                break
        return shown_texts(seen), await asyncio.wait_for(retry, 20)

    # In a thread of its own: the browser tests' Playwright loop may run in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        texts, outcome = pool.submit(asyncio.run, asyncio.wait_for(read(), 30)).result()
    assert outcome == "succeeded"
    assert texts[0] == DEAD
    later = texts[1:]
    assert later and all(DEAD not in text for text in later), texts
    completion.refresh_from_db()
    assert completion.attempts == 2


@pytest.mark.skipif(
    not settings.REDIS_URL, reason="the live text goes through Redis only with REDIS_URL set"
)
def test_the_last_text_goes_out_with_the_end_entry_in_one_round_trip(monkeypatch):
    import redis.client

    from conversations.chat.channel.redis import stream_key

    live = channel.reply_channel()
    publisher = live.publisher(987_654, attempt=3, write_db=lambda contents: None)
    publisher.publish([sse.StreamDelta(0, "Hello")])  # the first batch goes out at once
    publisher.publish([sse.StreamDelta(0, " world")])  # this one waits for the interval
    tail = publisher.take_unsent()
    assert tail == {0: " world"} and publisher.take_unsent() == {}
    trips = []
    execute = redis.client.Pipeline.execute
    monkeypatch.setattr(
        redis.client.Pipeline, "execute", lambda self: trips.append(1) or execute(self)
    )

    live.publish_end(987_654, "succeeded", html={"en": "<p>Hello world</p>"}, tail=tail, attempt=3)

    assert len(trips) == 1
    entries = [fields for _, fields in live.client.xrange(stream_key(987_654))]
    live.client.delete(stream_key(987_654))
    assert entries[-2:] == [
        {"i": "0", "d": " world", "a": "3"},
        {"end": "succeeded", "html:en": "<p>Hello world</p>"},
    ]
