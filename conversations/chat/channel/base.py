"""What the channel's two sides share: the worker's Publisher, the readers' pacing, and
the updates a reader yields to the event stream."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.conf import settings

from conversations.upstream.sse import StreamDelta

# A reader gives up after this long; the page's fallback poll takes over.
MAX_STREAM_SECONDS = 600.0


@dataclass(frozen=True)
class Status:
    """The call is queued, retrying or running (a LiveState)."""

    state: str


@dataclass(frozen=True)
class Texts:
    """Text to add to each choice that changed; for the choices in `replaced`, the whole
    text so far instead (a reader's first, or a retry that starts again). `event_id` lets
    a reader that reconnects go on from here (None: it starts again)."""

    texts: dict[int, str]
    replaced: frozenset[int] = frozenset()
    event_id: str | None = None


@dataclass(frozen=True)
class Ended:
    """The reply has ended (saved, stopped or failed): the database has it whole, and
    `html` the ended reply's HTML in each language when the worker sent it along."""

    html: dict[str, str] | None = None


@dataclass(frozen=True)
class KeepAlive:
    """Nothing new for a while: a comment keeps proxies from closing the stream."""


Update = Status | Texts | Ended | KeepAlive


class Pacer:
    """When a reader may send text next: at most one round per STREAM_EVENT_MIN_INTERVAL,
    however fast tokens come, and rarer when a round costs more (`cost`, reported by the
    event stream after each)."""

    def __init__(self) -> None:
        self.last = 0.0
        self.cost = 0.0

    @property
    def interval(self) -> float:
        return max(settings.STREAM_EVENT_MIN_INTERVAL, 4 * self.cost)

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.interval

    def wait(self) -> float:
        """Seconds until the next round is due."""
        return max(0.0, self.interval - (time.monotonic() - self.last))

    def sent(self, *, cost: float) -> None:
        self.last = time.monotonic()
        self.cost = cost


@dataclass
class Publisher:
    """Worker side: hands deltas on to the channel's live copy (batched per `send_interval`,
    the first at once; none in the database channel) and to the database rows (batched per
    `flush_interval`)."""

    flush_interval: float
    write_db: Callable[[dict[int, str]], None]
    # Sends a batch {choice: text added} to the live copy; None when there is none.
    send: Callable[[dict[int, str]], None] | None = None
    send_interval: float = 0.02
    contents: dict[int, str] = field(default_factory=dict)
    # The first database write waits a whole interval: a short reply needs none before its
    # save (with Redis, the live copy is there at once).
    last_flush: float = field(default_factory=time.monotonic)
    dirty: bool = False
    unsent: dict[int, str] = field(default_factory=dict)  # text not yet sent live
    last_send: float = 0.0

    def publish(self, deltas: Iterable[StreamDelta]) -> None:
        for delta in deltas:
            self.contents[delta.index] = self.contents.get(delta.index, "") + delta.content
            if delta.content and self.send is not None:
                self.unsent[delta.index] = self.unsent.get(delta.index, "") + delta.content
        now = time.monotonic()
        if self.unsent and (self.last_send == 0.0 or now - self.last_send >= self.send_interval):
            self.send_live()
        self.dirty = True
        # At most one write per interval.
        if now - self.last_flush >= self.flush_interval:
            self.flush()

    def take_unsent(self) -> dict[int, str]:
        """The text not yet in the live copy, now the caller's to send (with the end)."""
        unsent = dict(self.unsent) if self.send is not None else {}
        self.unsent.clear()
        return unsent

    def send_live(self) -> None:
        """One round trip for everything not yet in the live copy."""
        if self.send is not None and self.unsent:
            self.send(dict(self.unsent))
        self.unsent.clear()
        self.last_send = time.monotonic()

    def flush(self) -> None:
        """Write everything out: the live batch and the database copy."""
        self.send_live()
        if self.dirty:
            self.write_db(dict(self.contents))
            self.dirty = False
            self.last_flush = time.monotonic()

    @property
    def has_text(self) -> bool:
        return any(self.contents.values())
