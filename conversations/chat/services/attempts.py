"""One attempt at a completion's call, on the worker: the upstream call (one JSON answer
or a stream whose text goes out live as it arrives), then its result saved (results.py)
only while the attempt still holds the claim, and the end told to the reply's readers."""

from __future__ import annotations

import logging
import threading

import requests
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils.translation import gettext as _

from conversations.chat import channel, replies
from conversations.chat.models import Completion, LiveState, Message
from conversations.providers import services as providers
from conversations.upstream import protocol
from conversations.upstream.client import ChatClient
from conversations.upstream.sse import StreamDelta

from . import results, watch
from .completions import Claim, Outcome

logger = logging.getLogger(__name__)


_sessions = threading.local()


def upstream_client(provider_id: int | None = None) -> ChatClient:
    """A client for the provider a call was queued for (None: the environment's own), on
    this worker thread's own HTTP session: its connections to each upstream are kept
    alive from one call to the next (no new TCP and TLS handshake per reply)."""
    session = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = requests.Session()
    where = providers.route(provider_id)
    return ChatClient(
        base_url=where.base_url,
        api_key=where.api_key,
        timeout=where.timeout,
        connect_timeout=where.connect_timeout,
        session=session,
    )


def completion_attempt(*, claim: Claim) -> Outcome:
    """One attempt at the call. Raises protocol.UpstreamError when nothing was saved; the
    task decides on a retry."""
    if claim.completion.request_body.get("stream"):
        return StreamAttempt(claim).run()
    response = completion_call(claim=claim)
    saved = results.save_result(
        claim=claim, response=response, message_status=Message.Status.COMPLETE
    )
    if saved is None:
        return Outcome.LOST
    _publish_end(claim, Outcome.SUCCEEDED, saved)
    return Outcome.SUCCEEDED


def _publish_end(
    claim: Claim, outcome: Outcome, saved: list[Message], *, tail: dict[int, str] | None = None
) -> None:
    """Tell readers the reply ended, with its HTML when the channel carries it (made here
    once, from the rows just saved, rather than by each reader's web process), after the
    live text not yet sent (`tail`)."""
    live = channel.reply_channel()
    html = replies.ended_html(claim.completion, saved) if live.carries_ended_html else None
    live.publish_end(
        claim.completion.pk, outcome, html=html, tail=tail, attempt=claim.completion.attempts
    )


def _release_connection() -> None:
    if not connection.in_atomic_block:
        # Hold no database connection while waiting on the model.
        connection.close()


def completion_call(*, claim: Claim) -> protocol.ChatResponse:
    """One non-streaming call to the upstream with the body stored at queue time (the
    process's watch renews its lease meanwhile)."""
    _release_connection()
    body = {
        k: v
        for k, v in claim.completion.request_body.items()
        if k not in ("stream", "stream_options")
    }
    watched = watch.watch(claim, stream=False)
    try:
        return upstream_client(claim.completion.provider_id).create(body)
    finally:
        watch.unwatch(watched)


class StreamAttempt:
    """One streamed call: the text goes out live as it arrives, the claim's lease is renewed
    while it lasts, and it ends saved, stopped by the user, cut at the time limit (its text
    kept), or lost to another worker (then nothing is saved or published)."""

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self.completion = claim.completion
        # The reply's rows by choice index once this attempt has made them (None before).
        self.rows: dict[int, int] | None = None
        self.live = channel.reply_channel()
        self.publisher = self.live.publisher(
            self.completion.pk, attempt=self.completion.attempts, write_db=self.write_db
        )
        self.watched: watch.Watched | None = None

    @property
    def lost(self) -> bool:
        return bool(self.watched and self.watched.lost)

    def run(self) -> Outcome:
        self.live.publish_status(
            self.completion.pk, LiveState.RUNNING, attempt=self.completion.attempts
        )
        _release_connection()
        # The process's watch renews the lease, cuts the stream at the time limit, and
        # stops it when its reader asks.
        self.watched = watch.watch(self.claim, stream=True)
        try:
            return self._call()
        finally:
            watch.unwatch(self.watched)

    def _call(self) -> Outcome:
        try:
            state, stopped = upstream_client(self.completion.provider_id).stream(
                self.completion.request_body,
                on_delta=lambda state, deltas: self.publisher.publish(_tagged(deltas)),
                stop=self.watched.stop,
            )
        except protocol.StreamInterrupted as error:
            if self.lost:
                return Outcome.LOST
            if not self.publisher.has_text:
                self.discard()
                raise
            # Some text arrived: keep it, shown as an error, never as a clean finish.
            return self.save_partial(error)
        except protocol.UpstreamError:
            self.discard()
            raise
        if self.lost:
            return Outcome.LOST
        if self.watched.timed_out:
            return self.cut_at_time_limit()
        return self.save(state.response(), stopped=stopped)

    def write_db(self, contents: dict[int, str]) -> None:
        """The text so far into the rows. While a reply streams its row's content is its
        tagged text (reasoning in a leading <think> block), which the database channel's
        readers follow; the reply's save puts each part in its own column."""
        if self.rows is None:
            self.rows = results.rows_prepare(claim=self.claim, indexes=sorted(contents))
            if self.rows is None:
                self.watched.end(lost=True)  # another worker has the claim: stop here
                return
        for index, text in contents.items():
            Message.objects.filter(
                completion_id=self.completion.pk,
                choice_index=index,
                completion__claim_token=self.claim.token,
            ).update(content=text)
        if self.live.release_between_writes:
            _release_connection()

    def save(self, response: protocol.ChatResponse, *, stopped: bool) -> Outcome:
        # The last text goes out with the end entry, in one round trip.
        tail = self.publisher.take_unsent()
        if stopped:
            for choice in response.choices:
                choice.finish_reason = "stopped"
        status = Message.Status.STOPPED if stopped else Message.Status.COMPLETE
        saved = results.save_result(
            claim=self.claim, response=response, message_status=status, rows=self.rows
        )
        if saved is None:
            return Outcome.LOST
        outcome = Outcome.STOPPED if stopped else Outcome.SUCCEEDED
        _publish_end(self.claim, outcome, saved, tail=tail)
        return outcome

    def save_partial(self, error: protocol.UpstreamError) -> Outcome:
        self.publisher.flush()
        saved = results.save_result(
            claim=self.claim,
            rows=self.rows,
            response=_partial_response(self.publisher.contents),
            message_status=Message.Status.FAILED,
            completion_status=Completion.Status.FAILED,
            error=error,
        )
        if saved is None:
            return Outcome.LOST
        _publish_end(self.claim, Outcome.FAILED, saved)
        return Outcome.FAILED

    def cut_at_time_limit(self) -> Outcome:
        error = protocol.PermanentError(
            _("The reply took longer than %(seconds)s seconds and was cut off.")
            % {"seconds": f"{settings.COMPLETION_MAX_SECONDS:g}"},
            error_type="time_limit",
        )
        if not self.publisher.has_text:
            self.discard()
            raise error
        return self.save_partial(error)

    def discard(self) -> None:
        results.rows_discard(claim=self.claim)


def _tagged(deltas: list[StreamDelta]) -> list[StreamDelta]:
    """The deltas as the live copy carries them: one text per choice, its reasoning first
    in a <think> block (the page shows it apart, as "Thinking")."""
    return [StreamDelta(d.index, d.tagged, d.finish_reason) for d in deltas]


def _partial_response(contents: dict[int, str]) -> protocol.ChatResponse:
    """What a broken stream had written (its tagged texts), each reasoning apart."""
    choices = []
    for index, text in sorted(contents.items()):
        reasoning, answer = protocol.split_reasoning(text)
        choices.append(
            protocol.Choice(index=index, content=answer, finish_reason="error", reasoning=reasoning)
        )
    return protocol.ChatResponse(
        id="", created=None, model="", object="", choices=choices, usage=None
    )


def completion_attempt_discard(*, claim: Claim) -> None:
    """After an unexpected error: drop what this attempt began to write, if the database
    lets us (else the next attempt takes the rows back)."""
    try:
        results.rows_discard(claim=claim)
    except DatabaseError:
        logger.warning("Could not discard the rows of completion %s", claim.completion.pk)
