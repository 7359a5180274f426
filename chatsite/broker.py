"""Celery's filesystem broker (the embedded default), with messages that appear whole.

kombu's filesystem transport creates a message's file in the queue folder and then
writes it. A worker looking at the folder in between takes the empty file, fails to
decode it, and stops ("Unrecoverable error: JSONDecodeError"): with a web process and a
worker (or two workers) busy at once, that happens. Here the message is written in a
folder beside the queue and renamed into it, which is atomic on one filesystem, so a
worker only ever sees whole messages.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    @property
    def draft_folder(self) -> str:
        return self.transport_options["draft_folder"]

    def _put(self, queue: str, payload, **kwargs) -> None:
        # The name kombu gives it: readers sort by it and match the queue on its suffix.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        draft = os.path.join(self.draft_folder, name)
        try:
            with open(draft, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(draft, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise ChannelError(f"Cannot add file {name!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
