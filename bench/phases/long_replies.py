"""6. Long replies: the web processes' CPU for one streamed reply of 1,000 and one of 4,000
characters, each watched live by several readers (SSE connections of the sender's own
session), so a cost that grows faster than the text shows as a ratio above 4."""

from __future__ import annotations

import math
import time
from typing import Any

import requests

from bench.common import Mode, log
from bench.load import Browser, Reply, run_concurrently
from bench.meters import CpuMeter
from bench.people import Person
from bench.stack import Stack

UPSTREAM_LATENCY = 0.1

# Markdown-ish prose: paragraphs, links, a list and inline code, varied so no two lines repeat.
_BLOCKS = (
    "### Part {n}: how a reply travels\n\n",
    "The message you send is stored first, and a completion row records that a reply "
    "is owed (step {n}). ",
    "A worker claims it with a conditional update, so a second delivery does nothing "
    "twice, and then calls the [upstream API](https://example.com/docs/api/{n}). ",
    "Each piece of text that arrives is handed to the page as soon as it can be, while "
    "the database copy is written in batches. ",
    "\n\n- the send: session, lock, history and two inserts ({n})\n"
    "- the worker: claim, stream, save with `sanitized HTML`\n"
    "- the page: one event per round, then the ended reply\n\n",
    "See [the benchmark notes](https://example.com/bench#part-{n}) for the figures, and "
    "remember that every number there comes from one run on one machine. ",
    "When the stream breaks, the page falls back to polling every two seconds until the "
    "reply has ended, so nothing is lost. ",
    "A reader who joins late gets the whole text so far, then only what is new.\n\n",
)


def long_text(size: int) -> str:
    """Deterministic Markdown prose of about `size` characters (cut at a word)."""
    pieces: list[str] = []
    length, n = 0, 0
    while length < size:
        block = _BLOCKS[n % len(_BLOCKS)].format(n=n // len(_BLOCKS) + 1)
        pieces.append(block)
        length += len(block)
        n += 1
    text = "".join(pieces)[: size - 1]
    return text[: text.rstrip().rfind(" ")].rstrip(" ,.-:") + "."


def long_replies(stack: Stack, mode: Mode, people: list[Person]) -> dict[str, Any]:
    from conversations.upstream.simulated_text import split_tokens

    person = people[0]
    readers = [person.browser.tab() for _ in range(mode.long_readers)]
    sizes = sorted(mode.long_sizes)
    texts = {size: long_text(size) for size in sizes}
    # One token rate for every size, as a model streams: the longest reply takes long_seconds.
    token_delay = mode.long_seconds / len(split_tokens(texts[sizes[-1]]))
    runs: dict[int, list[dict[str, Any]]] = {size: [] for size in sizes}
    for round_ in range(mode.long_rounds):
        for size in sizes:
            log(
                f"long replies: {len(texts[size]):,} characters, {len(readers)} readers "
                f"(round {round_ + 1} of {mode.long_rounds})"
            )
            runs[size].append(_one_reply(stack, person, readers, texts[size], token_delay))
    stack.check_alive()
    rows = [_row(size, texts[size], runs[size], len(readers)) for size in sizes]
    short, long = rows[0], rows[-1]
    return {
        "readers": len(readers),
        "rounds": mode.long_rounds,
        "token_delay": token_delay,
        "rows": rows,
        "ratio": long["web_cpu_ms"] / short["web_cpu_ms"] if short["web_cpu_ms"] else math.nan,
        "length_ratio": long["chars"] / short["chars"],
        "bytes_ratio": long["kb_per_reader"] / short["kb_per_reader"],
    }


def _one_reply(
    stack: Stack, person: Person, readers: list[Browser], text: str, token_delay: float
) -> dict[str, Any]:
    """One send whose reply is `text`, read live by every reader; the web processes' CPU
    from just before the send to the end of the last reader."""
    from django.contrib.auth.models import User

    from conversations.chat.services import conversations as chat_services

    owner = User.objects.get(pk=person.user_id)
    conversation = chat_services.conversation_create(owner=owner)
    stack.simulator_control(
        reset=True,
        latency=UPSTREAM_LATENCY,
        token_delay=token_delay,
        faults=[{"kind": "content", "content": text}],
    )
    meter = CpuMeter(stack)
    before = meter.snapshot()
    sent = Reply()
    pending = person.browser.send(conversation.pk, "How does a reply travel? At length.", sent)
    if pending is None or pending.events_url is None:
        raise RuntimeError(f"long replies: no event stream to read ({sent.error or 'no SSE'})")
    watched = [Reply(cid=pending.cid, sent=sent.sent) for _ in readers]

    def read(index: int) -> None:
        try:
            readers[index].read_events(pending.events_url, watched[index], deadline=60)
        except requests.RequestException as error:
            watched[index].error = f"{type(error).__name__}: {error}"[:300]

    run_concurrently(len(readers), read)
    after = meter.snapshot()
    return {
        "web_cpu_ms": (after["web"] - before["web"]) * 1000,
        "seconds": max((r.done or time.monotonic()) for r in watched) - sent.sent,
        "readers": watched,
        "intact": _saved_text(pending.cid) == text,
    }


def _saved_text(cid: int) -> str:
    from conversations.models import Message

    return "".join(
        Message.objects.filter(completion_id=cid, choice_index=0).values_list("content", flat=True)
    )


def _row(size: int, text: str, runs: list[dict[str, Any]], readers: int) -> dict[str, Any]:
    watched = [reader for run in runs for reader in run["readers"]]
    cpu = sum(run["web_cpu_ms"] for run in runs) / len(runs)
    return {
        "size": size,
        "chars": len(text),
        "web_cpu_ms": cpu,
        "per_reader_ms": cpu / readers,
        "seconds": sum(run["seconds"] for run in runs) / len(runs),
        "events_per_reader": sum(r.events for r in watched) / len(watched),
        "kb_per_reader": sum(r.received_bytes for r in watched) / len(watched) / 1024,
        "failures": [
            r.error or f"ended {r.final_status or 'without `done`'}"
            for r in watched
            if r.error or r.final_status != "succeeded"
        ],
        "intact": all(run["intact"] for run in runs),
    }
