"""The database channel (the embedded default): the worker writes the growing reply to
its Message rows every STREAM_DB_FLUSH_INTERVAL, and a reader looks at them every
STREAM_POLL_INTERVAL. Stop requests are the completion's `stop_requested` flag."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from conversations.chat.models import Completion, LiveState, Message

from .base import MAX_STREAM_SECONDS, Ended, KeepAlive, Pacer, Publisher, Status, Texts, Update


@dataclass
class Snapshot:
    """A completion as the database has it now."""

    active: bool
    live_state: str  # a LiveState while active
    contents: dict[int, str]


async def snapshot(completion_id: int) -> Snapshot:
    row = await Completion.objects.filter(pk=completion_id).only("status", "attempts").afirst()
    contents = {
        index: content
        async for index, content in Message.objects.filter(completion_id=completion_id)
        .order_by("choice_index")
        .values_list("choice_index", "content")
    }
    if row is None:  # deleted with its conversation
        return Snapshot(False, LiveState.RUNNING, contents)
    return Snapshot(row.is_active, row.live_state, contents)


def close_connection() -> None:
    # `connection` is per thread: it must be looked up in the thread that closes it, not
    # where sync_to_async is called (the event loop's), or Django refuses the close.
    connection.close()


class StopListener:
    """Stop requests as messages, for the stream watcher of a worker process."""

    def wait(self, timeout: float) -> set[int]:
        """The replies asked to stop within `timeout` seconds (empty if none was)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop listening."""


class DatabaseChannel:
    """Readers poll the rows; nothing but the database carries the text."""

    # The worker writes the rows often (they are the live copy) and keeps its connection.
    release_between_writes = False
    # A reader uses the database all along (its looks); the Redis channel only at the ends.
    reader_releases_connection = False

    @property
    def db_flush_interval(self) -> float:
        return settings.STREAM_DB_FLUSH_INTERVAL

    # --- Worker side ---

    def publisher(self, completion_id: int, *, attempt: int, write_db: Callable) -> Publisher:
        return Publisher(flush_interval=self.db_flush_interval, write_db=write_db)

    def publish_status(self, completion_id: int, state: str, *, attempt: int) -> None:
        """Readers see the state in the completion's row."""

    def publish_end(
        self,
        completion_id: int,
        ending: str,
        *,
        html: dict | None = None,
        tail: dict[int, str] | None = None,
        attempt: int = 0,
    ) -> None:
        """Readers see the end (and all of the text) in the completion's row."""

    # The ended reply's HTML is worth making in the worker only if the channel carries it.
    carries_ended_html = False

    def request_stop(self, completion_id: int) -> None:
        """The completion's `stop_requested` flag, set by the service, is the request."""

    def stops_requested(self, completion_ids: list[int]) -> set[int]:
        """Which of these replies their readers asked to stop: one query for them all."""
        return set(
            Completion.objects.filter(pk__in=completion_ids, stop_requested=True).values_list(
                "pk", flat=True
            )
        )

    def stop_listener(self) -> StopListener | None:
        """Stop requests as they are made, where the channel sends them (else None: the
        worker asks `stops_requested` at each look)."""
        return None

    # --- Reader side ---

    async def follow(
        self, completion: Completion, pacer: Pacer, *, resume: str | None = None
    ) -> AsyncIterator[Update]:
        """The reply's state and text as they change, until it ends. Each choice's first
        text is its whole text so far (the page may show an older one); then what was added,
        or the whole text again when it changed otherwise (a retry). No resuming here."""
        sent: dict[int, str] = {}
        sent_state = None  # the page may show an older state than the one at connection time
        started = last_beat = time.monotonic()
        pooled = connection.vendor != "sqlite"
        while True:
            now = await snapshot(completion.pk)
            if pooled:
                # Give the connection back between looks: many streams share a small pool.
                await sync_to_async(close_connection)()
            if now.active and now.live_state != sent_state:
                sent_state = now.live_state
                yield Status(now.live_state)
            if now.active and pacer.due():
                update = _changes(sent, now.contents)
                if update.texts:
                    yield update
            moment = time.monotonic()
            if not now.active:
                yield Ended()
                return
            if moment - started > MAX_STREAM_SECONDS:
                return
            if moment - last_beat > settings.STREAM_HEARTBEAT_SECONDS:
                last_beat = moment
                yield KeepAlive()
            await asyncio.sleep(settings.STREAM_POLL_INTERVAL)


def _changes(sent: dict[int, str], contents: dict[int, str]) -> Texts:
    """What a reader that has `sent` must be sent to show `contents` (and `sent` updated)."""
    texts, replaced = {}, set()
    for index, text in contents.items():
        before = sent.get(index)
        if before == text:
            continue
        if before is not None and text.startswith(before):
            texts[index] = text[len(before) :]
        else:
            texts[index] = text
            replaced.add(index)
        sent[index] = text
    return Texts(texts, frozenset(replaced))
