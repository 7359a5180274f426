"""The Redis channel (REDIS_URL set): the worker adds each batch of deltas to a Redis Stream
per reply, so a reader in any web process on any host replays the reply from its start and
follows it with a blocking XREAD. The database rows are still written (seconds apart), and
a reader falls back to them when Redis is gone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import cache

from asgiref.sync import sync_to_async
from django.conf import settings

from conversations.chat.models import Completion

from .base import MAX_STREAM_SECONDS, Ended, KeepAlive, Pacer, Publisher, Status, Texts, Update
from .database import DatabaseChannel, StopListener, close_connection, snapshot

logger = logging.getLogger(__name__)

# A finished reply's stream stays readable this long, for late readers.
STREAM_TTL_SECONDS = 3600


@cache
def redis_client():
    """The shared Redis connection pool, or None in the embedded default."""
    if not settings.REDIS_URL:
        return None
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)


_async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _async_client():
    """The event loop's own asyncio Redis client (a connection belongs to one loop; a web
    process has one loop, a test may run several one after the other)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        import redis.asyncio

        # A blocking XREAD waits up to a heartbeat: the socket must wait longer than that.
        client = _async_clients[loop] = redis.asyncio.Redis.from_url(
            settings.REDIS_URL,
            decode_responses=True,
            socket_timeout=settings.STREAM_HEARTBEAT_SECONDS + 10,
        )
    return client


def stream_key(completion_id: int) -> str:
    return f"{settings.REDIS_KEY_PREFIX}reply:{completion_id}"


def stop_key(completion_id: int) -> str:
    return f"{settings.REDIS_KEY_PREFIX}stop:{completion_id}"


def stops_topic() -> str:
    """Where stop requests are published, for every worker process to hear at once."""
    return f"{settings.REDIS_KEY_PREFIX}stops"


@dataclass
class LiveText:
    """A reply's text as its Redis Stream tells it, for the attempt in force: entries of an
    earlier attempt (a worker that died mid-reply) are dropped, and a newer attempt starts
    the text again, so a retry never shows the text twice. What is taken out is what the
    reader has not shown yet: pieces to add, or the whole text of a choice in `replaced`
    (every choice's first, for a reader that starts from the beginning: `fresh`)."""

    attempt: int = 0
    fresh: bool = True
    choices: int = 1  # how many the call asked for (n)
    contents: dict[int, str] = field(default_factory=dict)
    pending: dict[int, str] = field(default_factory=dict)
    replaced: set[int] = field(default_factory=set)

    @property
    def unsent(self) -> bool:
        return bool(self.pending or self.replaced)

    def _current(self, fields: dict[str, str]) -> bool:
        attempt = int(fields.get("a") or 0)
        if attempt < self.attempt:
            return False
        if attempt > self.attempt:
            if not self.fresh:  # the page shows an older attempt's text: clear it
                self.replaced |= set(range(self.choices)) | set(self.contents)
            self.attempt = attempt
            self.contents = dict.fromkeys(self.contents, "")
            self.pending.clear()
        return True

    def add(self, fields: dict[str, str]) -> str | None:
        """Take one entry in; returns the state it announces ("running"...), if any."""
        if not self._current(fields):
            return None
        if "s" in fields:
            return fields["s"]
        index = int(fields["i"])
        self.contents[index] = self.contents.get(index, "") + fields["d"]
        if self.fresh:
            self.replaced.add(index)
        elif index not in self.replaced:
            self.pending[index] = self.pending.get(index, "") + fields["d"]
        return None

    def take(self, event_id: str) -> Texts:
        texts = {index: self.contents.get(index, "") for index in self.replaced}
        for index, piece in self.pending.items():
            texts.setdefault(index, piece)
        update = Texts(dict(sorted(texts.items())), frozenset(self.replaced), event_id)
        self.pending.clear()
        self.replaced.clear()
        self.fresh = False
        return update


def _resume_point(resume: str | None, choices: int) -> tuple[str, LiveText]:
    """Where to read from, given the last event id a reader has ("<entry id>.<attempt>")."""
    if resume:
        entry, _, attempt = resume.rpartition(".")
        if entry and attempt.isdigit():
            return entry, LiveText(attempt=int(attempt), fresh=False, choices=choices)
    return "0-0", LiveText(choices=choices)


def _add_deltas(pipe, completion_id: int, batch: dict[int, str], attempt: int) -> None:
    # Each entry names its attempt: a reader drops what an earlier attempt wrote.
    for index, text in batch.items():
        pipe.xadd(stream_key(completion_id), {"i": index, "d": text, "a": attempt})


class RedisChannel(DatabaseChannel):
    # Database writes are seconds apart: hold no connection in between (hundreds stream at
    # once), and a reader holds none while it follows the stream.
    release_between_writes = True
    reader_releases_connection = True

    def __init__(self, client) -> None:
        self.client = client

    @property
    def db_flush_interval(self) -> float:
        return settings.STREAM_REDIS_DB_FLUSH_INTERVAL

    def _add(self, completion_id: int, entry: dict, what: str) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.xadd(stream_key(completion_id), entry)
            pipe.expire(stream_key(completion_id), STREAM_TTL_SECONDS)
            pipe.execute()
        except Exception:  # readers fall back to the database, which has it too
            logger.warning("Could not publish the %s of %s to Redis", what, completion_id)

    # --- Worker side ---

    def publisher(self, completion_id: int, *, attempt: int, write_db: Callable) -> Publisher:
        def send(batch: dict[int, str]) -> None:
            try:
                pipe = self.client.pipeline(transaction=False)
                _add_deltas(pipe, completion_id, batch, attempt)
                pipe.expire(stream_key(completion_id), STREAM_TTL_SECONDS)
                pipe.execute()
            except Exception:  # the database copy still carries the text
                logger.warning("Could not publish deltas of %s to Redis", completion_id)

        return Publisher(flush_interval=self.db_flush_interval, write_db=write_db, send=send)

    def publish_status(self, completion_id: int, state: str, *, attempt: int) -> None:
        """ "running" starts an attempt: readers forget the text of the attempts before it."""
        self._add(completion_id, {"s": state, "a": attempt}, "state")

    carries_ended_html = True

    def publish_end(
        self,
        completion_id: int,
        ending: str,
        *,
        html: dict | None = None,
        tail: dict[int, str] | None = None,
        attempt: int = 0,
    ) -> None:
        """The end entry, with the ended reply's HTML in each language when the worker has
        made it (then a reader sends it on without a query or a template), after the text
        not yet sent (`tail`, of `attempt`), in the same round trip."""
        entry = {"end": str(ending)}
        entry |= {f"html:{language}": text for language, text in (html or {}).items()}
        try:
            pipe = self.client.pipeline(transaction=False)
            _add_deltas(pipe, completion_id, tail or {}, attempt)
            pipe.xadd(stream_key(completion_id), entry)
            pipe.expire(stream_key(completion_id), STREAM_TTL_SECONDS)
            pipe.execute()
        except Exception:  # readers fall back to the database, which has it too
            logger.warning("Could not publish the end of %s to Redis", completion_id)

    def request_stop(self, completion_id: int) -> None:
        """A key (what a worker that was not listening finds later) and a message (what
        the worker writing the reply hears at once)."""
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.set(stop_key(completion_id), "1", ex=STREAM_TTL_SECONDS)
            pipe.publish(stops_topic(), str(completion_id))
            pipe.execute()
        except Exception:  # the database flag is the record
            logger.warning("Could not set the stop flag of %s in Redis", completion_id)

    def stops_requested(self, completion_ids: list[int]) -> set[int]:
        if not completion_ids:
            return set()
        try:
            found = self.client.mget([stop_key(pk) for pk in completion_ids])
        except Exception:
            return super().stops_requested(completion_ids)
        return {pk for pk, flag in zip(completion_ids, found, strict=True) if flag}

    def stop_listener(self) -> RedisStopListener:
        return RedisStopListener(self.client)

    # --- Reader side ---

    async def follow(
        self, completion: Completion, pacer: Pacer, *, resume: str | None = None
    ) -> AsyncIterator[Update]:
        """Replay the reply's stream from its start (or from `resume`, the last event id a
        reader has), then follow it until its end entry."""
        key = stream_key(completion.pk)
        last_id, live = _resume_point(resume, len(completion.choice_indexes))
        if completion.is_active and resume is None:
            yield Status(completion.live_state)
        started = time.monotonic()
        while time.monotonic() - started < MAX_STREAM_SECONDS:
            # Text waiting for its turn wakes the read at the end of the interval at the
            # latest, or at once for the end entry (one round per interval however fast
            # tokens come); else it waits up to a heartbeat.
            wait = pacer.wait() if live.unsent else settings.STREAM_HEARTBEAT_SECONDS
            try:
                batches = await _async_client().xread(
                    {key: last_id}, block=max(1, int(wait * 1000))
                )
            except Exception:  # Redis gone: the database still has the text
                logger.warning(
                    "Redis unavailable for reply %s; reading the database",
                    completion.pk,
                    exc_info=True,
                )
                async for update in super().follow(completion, pacer):
                    yield update
                return
            if not batches and not live.unsent:
                # Nothing for a while: the reply may have ended before its stream began
                # (or the stream expired); the database knows.
                now = await snapshot(completion.pk)
                await sync_to_async(close_connection)()
                yield KeepAlive() if now.active else Ended()
                if not now.active:
                    return
                continue
            ended, state, last_id = _read(batches, live, last_id)
            if ended is not None:
                yield Ended(ended or None)
                return
            if state is not None:
                yield Status(state)
            if live.unsent and pacer.due():
                yield live.take(f"{last_id}.{live.attempt}")


class RedisStopListener(StopListener):
    """The stop messages of every reply, on one subscription per worker process."""

    def __init__(self, client) -> None:
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(stops_topic())

    def wait(self, timeout: float) -> set[int]:
        found = set()
        message = self.pubsub.get_message(timeout=timeout)
        while message is not None:
            with contextlib.suppress(TypeError, ValueError):
                found.add(int(message["data"]))
            message = self.pubsub.get_message(timeout=0)
        return found

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.pubsub.close()


def _read(batches, live: LiveText, last_id: str) -> tuple[dict | None, str | None, str]:
    """Take a batch of entries in: the end's HTML by language when it holds the end entry
    (else None), the newest state, and the last entry's id."""
    ended, state = None, None
    for _key, entries in batches:
        for entry_id, fields in entries:
            last_id = entry_id
            if "end" in fields:
                ended = {k[5:]: v for k, v in fields.items() if k.startswith("html:")}
            else:
                state = live.add(fields) or state
    return ended, state, last_id
