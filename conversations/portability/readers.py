"""An import file read into plain data, or a ValidationError saying what is wrong with it.

Accepted: our JSON export of one conversation or a JSON list of them, a ZIP made by our
export (its `.json` files), and ChatGPT's data export: `conversations.json`, or the ZIP it
comes in. The size limit is checked before anything is parsed."""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from datetime import UTC, datetime
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from conversations.chat.models import Conversation, Message
from conversations.upstream import protocol

from . import chatgpt
from .document import (
    FORMAT,
    VERSION,
    ImportedConversation,
    ImportedMessage,
    Problem,
    arrange,
    max_bytes,
    max_conversations,
    max_messages,
    shown,
)

# Every ZIP starts so (a file entry, or the end record of an empty one); no JSON does.
ZIP_MAGIC = b"PK"
CHATGPT_FILE = "conversations.json"
TITLE_LENGTH = 200


def too_large_error() -> ValidationError:
    return ValidationError(
        _("The file is larger than %(limit)s, the most this site imports at once."),
        code="too_large",
        params={"limit": filesizeformat(max_bytes())},
    )


def read_upload(upload: IO[bytes]) -> list[ImportedConversation]:
    """The conversations of an uploaded file, checked (trees, limits) and arranged."""
    limit = max_bytes()
    if getattr(upload, "size", None) is not None and upload.size > limit:
        raise too_large_error()
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise too_large_error()
    if not data.strip():
        raise ValidationError(_("The file is empty."), code="empty")
    if data.startswith(ZIP_MAGIC):
        documents = _zip_documents(data, limit)
    else:
        documents = [("", _json(data, ""))]
    conversations: list[ImportedConversation] = []
    for name, document in documents:
        conversations += _conversations_of(document, name, already=len(conversations))
    if not conversations:
        raise ValidationError(_("The file holds no conversation."), code="empty")
    count = sum(len(c.messages) for c in conversations)
    if count > max_messages():
        raise ValidationError(
            _("The file holds %(count)s messages; this site imports at most %(most)s at once."),
            code="too_many",
            params={"count": count, "most": max_messages()},
        )
    return conversations


def _json(data: bytes, name: str) -> Any:
    try:
        # utf-8-sig: a byte order mark from a Windows editor is no reason to refuse it.
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        problem = _("it is not UTF-8 text.")
    except json.JSONDecodeError as error:
        problem = _("it is not valid JSON (line %(line)s, column %(column)s).") % {
            "line": error.lineno,
            "column": error.colno,
        }
    except (ValueError, RecursionError):  # numbers too long, nesting too deep
        problem = _("it is not JSON this site can read.")
    if name:
        message = _("%(name)s in the ZIP: %(problem)s") % {"name": name, "problem": problem}
    else:
        message = _("The file is not an export: %(problem)s") % {"problem": problem}
    raise ValidationError(message, code="not_json")


def _zip_documents(data: bytes, limit: int) -> list[tuple[str, Any]]:
    """The JSON documents of a ZIP: ChatGPT's conversations.json if it holds one, else
    every .json file (our export; its .md files are for reading)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = [
            info
            for info in archive.infolist()
            if not info.is_dir()
            and not info.filename.startswith("__MACOSX/")
            and info.filename.lower().endswith(".json")
        ]
    except (zipfile.BadZipFile, ValueError):
        raise ValidationError(
            _("The file is not a ZIP this site can read."), code="bad_zip"
        ) from None
    chatgpt_files = [e for e in entries if e.filename.rsplit("/", 1)[-1] == CHATGPT_FILE]
    entries = chatgpt_files or entries
    if not entries:
        raise ValidationError(_("The ZIP holds no .json file to import."), code="empty")
    # Sizes as the ZIP states them: zipfile reads no more than that of each file.
    if sum(e.file_size for e in entries) > limit:
        raise ValidationError(
            _("The ZIP's conversations are larger than %(limit)s once unpacked."),
            code="too_large",
            params={"limit": filesizeformat(limit)},
        )
    documents = []
    for entry in entries:
        try:
            content = archive.read(entry)
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError):
            # Damaged, encrypted or compressed in a way zipfile does not know.
            raise ValidationError(
                _("%(name)s in the ZIP cannot be read.") % {"name": entry.filename},
                code="bad_zip",
            ) from None
        documents.append((entry.filename, _json(content, entry.filename)))
    return documents


def _conversations_of(document: Any, name: str, *, already: int) -> list[ImportedConversation]:
    items = document if isinstance(document, list) else [document]
    if len(items) + already > max_conversations():
        raise ValidationError(
            _("The file holds more than %(most)s conversations, the most imported at once."),
            code="too_many",
            params={"most": max_conversations()},
        )
    conversations = []
    for number, item in enumerate(items, start=1):
        try:
            if chatgpt.is_chatgpt(item):
                conversation = chatgpt.conversation_of(item)
            elif isinstance(item, dict) and item.get("format") == FORMAT:
                conversation = _ours(item)
            else:
                raise Problem(_("it is neither a chatsite export nor a ChatGPT conversation."))
            arrange(conversation)
        except Problem as problem:
            raise ValidationError(_where(name, number, item, problem.message), code="bad") from None
        conversations.append(conversation)
    return conversations


def _where(name: str, number: int, item: Any, problem: str) -> str:
    title = item.get("title") if isinstance(item, dict) else None
    if isinstance(title, str) and title:
        where = _("Conversation %(number)s (“%(title)s”)") % {
            "number": number,
            "title": title[:80],
        }
    else:
        where = _("Conversation %(number)s") % {"number": number}
    if name:
        where = f"{name}: {where}"
    return _("%(where)s: %(problem)s") % {"where": where, "problem": problem}


# --- Our own format ---


def _moment(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    moment = parse_datetime(value) if isinstance(value, str) else None
    if moment is None:
        raise Problem(_("%(what)s is not a date and time.") % {"what": what})
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


def _string(item: dict, key: str, what: str, length: int | None = None) -> str:
    value = item.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Problem(_("%(what)s is not text.") % {"what": what})
    value = protocol.clean_text(value)
    return value[:length] if length else value


def _parameters(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Problem(_("its parameters are not an object."))
    params = {name: value.get(name) for name in protocol.PARAMETERS}
    try:
        clean = protocol.validate_parameters(params)
    except protocol.ParameterError as error:
        raise Problem(
            _("its parameter %(name)s is out of range or not a number.") % {"name": error.field}
        ) from None
    if isinstance(clean.get("stop"), str):
        clean["stop"] = [clean["stop"]]
    return clean


def _ours(item: dict) -> ImportedConversation:
    """One conversation of our export (format chatsite.conversation)."""
    version = item.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise Problem(_("its format version is missing."))
    if version > VERSION:
        raise Problem(
            _("it was exported by a newer chatsite (format version %(version)s).")
            % {"version": version}
        )
    created_at = _moment(item.get("created_at"), _("its creation time")) or timezone.now()
    origin = item.get("origin")
    # Where it was written: here (now imported from our export), or where it came from.
    if origin not in Conversation.Origin.values or not origin:
        origin = Conversation.Origin.CHATSITE
    messages = item.get("messages", [])
    if not isinstance(messages, list):
        raise Problem(_("its messages are not a list."))
    title_is_auto = item.get("title_is_auto", False)
    return ImportedConversation(
        origin=origin,
        title=_string(item, "title", _("its title"), TITLE_LENGTH),
        title_is_auto=title_is_auto if isinstance(title_is_auto, bool) else False,
        model=_string(item, "model", _("its model"), protocol.MODEL_LENGTH)
        or chatgpt.DEFAULT_MODEL,
        system_prompt=_string(item, "system_prompt", _("its system prompt")),
        parameters=_parameters(item.get("parameters")),
        created_at=created_at,
        last_activity_at=_moment(item.get("last_activity_at"), _("its last activity"))
        or created_at,
        pinned_at=_moment(item.get("pinned_at"), _("its pin time")),
        archived_at=_moment(item.get("archived_at"), _("its archive time")),
        messages=[_message(m, created_at) for m in messages],
    )


def _key(value: Any, what: str) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Problem(_("%(what)s is not an id.") % {"what": what})
    return value


def _message(item: Any, fallback: datetime) -> ImportedMessage:
    if not isinstance(item, dict):
        raise Problem(_("one of its messages is not an object."))
    key = _key(item.get("id"), _("a message's id"))
    parent = item.get("parent_id")
    what = _("message %(id)s") % {"id": shown(key)}
    if parent is not None:
        parent = _key(parent, _("the parent of %(message)s") % {"message": what})
    role = item.get("role")
    if role not in Message.Role.values:
        raise Problem(
            _("%(message)s has an unknown role %(role)s.") % {"message": what, "role": shown(role)}
        )
    status = item.get("status") or Message.Status.COMPLETE
    if status not in Message.Status.values:
        raise Problem(
            _("%(message)s has an unknown status %(status)s.")
            % {"message": what, "status": shown(status)}
        )
    if status == Message.Status.STREAMING:
        status = Message.Status.STOPPED  # nothing is writing it here
    choice = item.get("choice_index")
    if choice is not None and (
        isinstance(choice, bool)
        or not isinstance(choice, int)
        or not 0 <= choice < protocol.MAX_CHOICES
    ):
        raise Problem(_("%(message)s has a choice index out of range.") % {"message": what})
    selected = item.get("selected", True)
    return ImportedMessage(
        key=key,
        parent_key=parent,
        role=role,
        content=_string(item, "content", _("the content of %(message)s") % {"message": what}),
        created_at=_moment(item.get("created_at"), _("the time of %(message)s") % {"message": what})
        or fallback,
        is_selected=selected if isinstance(selected, bool) else True,
        status=status,
        choice_index=choice,
        finish_reason=_string(
            item,
            "finish_reason",
            _("the finish reason of %(message)s") % {"message": what},
            protocol.FINISH_REASON_LENGTH,
        ),
    )
