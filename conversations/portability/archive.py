"""All of one person's conversations as a ZIP (each as `<id>-<slug>.json` and `.md`),
streamed as it is written: never built in memory or on disk.

An async generator, because the site runs under ASGI and Django's StreamingHttpResponse
would read a sync iterator into a list there. Each batch of conversations is read and
formatted in a thread (`sync_to_async`); zipfile writes into a write-only, non-seekable
pipe, whose bytes go out after each file. `extra` adds files of the caller's after the
conversations (the account download: privacy/exports.py)."""

from __future__ import annotations

import zipfile
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime

from asgiref.sync import sync_to_async
from django.utils import timezone

from . import exports, selectors


class _Pipe:
    """A write-only file with no tell() or seek(): zipfile then writes each entry's
    sizes after its data, and what it wrote can be taken away at once."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _entry(name: str, moment: datetime) -> zipfile.ZipInfo:
    local = timezone.localtime(moment)
    # ZIP dates start in 1980.
    stamp = (max(local.year, 1980), local.month, local.day, local.hour, local.minute, local.second)
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def _batch_files(user_id: int, after: int) -> tuple[int, list[tuple[zipfile.ZipInfo, bytes]]]:
    """The next batch's files, and the last id read (`after` again when none is left)."""
    files = []
    for conversation in selectors.export_batch(user_id, after=after):
        stem = exports.file_stem(conversation)
        moment = conversation.last_activity_at
        files.append((_entry(f"{stem}.json", moment), exports.conversation_json(conversation)))
        files.append((_entry(f"{stem}.md", moment), exports.conversation_markdown(conversation)))
        after = conversation.pk
    return after, [(info, text.encode()) for info, text in files]


# More files for the ZIP: (name, content), made in a thread once the conversations are in.
ExtraFiles = Callable[[], Iterable[tuple[str, bytes]]]


async def chats_zip(user_id: int, *, extra: ExtraFiles | None = None) -> AsyncIterator[bytes]:
    """The ZIP of every conversation of the user, archived ones included, in id order,
    then the files `extra` returns (dated now)."""
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, mode="w") as archive:
        after = 0
        while True:
            last, files = await sync_to_async(_batch_files)(user_id, after)
            if not files:
                break
            for info, data in files:
                archive.writestr(info, data)
                yield pipe.take()
            after = last
        if extra is not None:
            files = await sync_to_async(lambda: list(extra()))()
            now = timezone.now()
            for name, data in files:
                archive.writestr(_entry(name, now), data)
                yield pipe.take()
    yield pipe.take()  # the central directory
