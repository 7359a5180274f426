"""One thread per worker process looks after every call the process is making: it renews
the claims' leases in one statement for them all, cuts a stream at the time limit, and
stops a stream its reader asked to stop (heard as a Redis message the moment it is sent,
or found in one query per look without Redis). A call costs no thread of its own and no
query of its own per look, however many run at once (a worker's threads pool runs
hundreds)."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, connection

from conversations.chat import channel
from conversations.upstream.client import StopSignal

from . import completions
from .completions import Claim

logger = logging.getLogger(__name__)

# With Redis, stops arrive as messages; the keys are read again every this many looks, for
# a message missed while the subscription was down (and at once for a new call).
RECHECK_LOOKS = 8
# After the subscription failed, listen again after this long (the looks go on meanwhile).
RESUBSCRIBE_SECONDS = 5.0


@dataclass(eq=False)
class Watched:
    """One call being looked after. `stop` ends its stream; `lost` (another worker holds
    the claim now) and `timed_out` (COMPLETION_MAX_SECONDS) say why it was ended."""

    claim: Claim
    stream: bool
    stop: StopSignal = field(default_factory=StopSignal)
    started: float = field(default_factory=time.monotonic)
    renewed: float = field(default_factory=time.monotonic)
    checked: bool = False  # its stop key read at least once
    lost: bool = False
    timed_out: bool = False

    @property
    def pk(self) -> int:
        return self.claim.completion.pk

    def end(self, *, lost: bool = False, timed_out: bool = False) -> None:
        self.lost |= lost
        self.timed_out |= timed_out
        self.stop.set()


class Watch:
    """The calls of this process and the thread that looks after them."""

    def __init__(self) -> None:
        self._calls: set[Watched] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._listener: channel.database.StopListener | None = None
        self._listen_after = 0.0
        self._looks = 0
        self.database_away = False

    def add(self, claim: Claim, *, stream: bool) -> Watched:
        watched = Watched(claim, stream)
        with self._lock:
            self._calls.add(watched)
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._start()
        return watched

    def remove(self, watched: Watched) -> None:
        with self._lock:
            self._calls.discard(watched)

    def _start(self) -> None:
        # A forked child (a prefork pool) has the parent's object but not its thread.
        self._pid = os.getpid()
        self._listener = None
        self._thread = threading.Thread(target=self._run, name="stream-watch", daemon=True)
        self._thread.start()

    @property
    def calls(self) -> list[Watched]:
        with self._lock:
            return list(self._calls)

    def _run(self) -> None:
        while True:
            stops = self._wait(settings.STREAM_STOP_CHECK_INTERVAL)
            calls = self.calls
            if calls:
                try:
                    self.look(calls, heard=stops)
                except Exception:  # the next look tries again; the watch never ends
                    logger.exception("The stream watch's look failed")

    def _wait(self, timeout: float) -> set[int]:
        """Stop messages heard within `timeout` (or just the wait, without a listener)."""
        live = channel.reply_channel()
        if self._listener is None and time.monotonic() >= self._listen_after:
            try:
                self._listener = live.stop_listener()
            except Exception:
                logger.warning("Cannot listen for stop requests; looking instead")
                self._listen_after = time.monotonic() + RESUBSCRIBE_SECONDS
        if self._listener is None:
            time.sleep(timeout)
            return set()
        try:
            return self._listener.wait(timeout)
        except Exception:
            logger.warning("Stop requests' subscription lost; listening again soon")
            self._listener.close()
            self._listener = None
            self._listen_after = time.monotonic() + RESUBSCRIBE_SECONDS
            return set()

    def look(self, calls: list[Watched], *, heard: set[int] = frozenset()) -> None:
        """One look at every call: time limits, leases due, stop requests."""
        now = time.monotonic()
        self._looks += 1
        for call in calls:
            if call.stream and now - call.started > settings.COMPLETION_MAX_SECONDS:
                call.end(timed_out=True)
        try:
            renew_every = settings.COMPLETION_LEASE_SECONDS / 3
            self._renew([c for c in calls if now - c.renewed >= renew_every])
            self._stop([c for c in calls if c.stream and not c.stop.is_set()], heard)
        except DatabaseError:
            # The database is away for a moment: the calls go on, and the next look asks
            # again (a lease that runs out meanwhile is the sweep's).
            if not self.database_away:
                logger.warning("The database is unavailable to the stream watch")
            self.database_away = True
            connection.close()
            return
        self.database_away = False
        if channel.reply_channel().release_between_writes and not connection.in_atomic_block:
            connection.close()  # hold none between looks: leases are renewed rarely

    def _renew(self, due: list[Watched]) -> None:
        if not due:
            return
        held = completions.completions_renew(claims=[call.claim for call in due])
        now = time.monotonic()
        for call in due:
            if call.pk in held:
                call.renewed = now
            else:
                call.end(lost=True)

    def _stop(self, streams: list[Watched], heard: set[int]) -> None:
        live = channel.reply_channel()
        listening = self._listener is not None
        recheck = not listening or self._looks % RECHECK_LOOKS == 0
        ask = [c.pk for c in streams if recheck or not c.checked]
        asked = live.stops_requested(ask) if ask else set()
        for call in streams:
            call.checked = call.checked or call.pk in ask
            if call.pk in heard or call.pk in asked:
                call.end()


_watch = Watch()


def watch(claim: Claim, *, stream: bool) -> Watched:
    """Look after this call until `unwatch`."""
    return _watch.add(claim, stream=stream)


def unwatch(watched: Watched) -> None:
    _watch.remove(watched)
