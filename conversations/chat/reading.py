"""Whether staff may read people's chats: the site's setting (SiteSettings.staff_reading)
as the one rule that every admin page and export showing chat content asks (review's
transcripts and exports, sharing's list of links, privacy's download of a person's data).

Reading means the content: titles, messages, system prompts, requests and replies. What
a conversation costs, who owns it, its dates and its flag stay visible to staff whatever
the setting, so budgets, reports and flagging go on."""

from __future__ import annotations

from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet, Value
from django.db.models.expressions import Expression
from django.utils.translation import gettext as _

from conversations.accounts.models import SiteSettings
from conversations.accounts.selectors import site_settings
from conversations.chat.models import Completion, Conversation

StaffReading = SiteSettings.StaffReading


def staff_reading() -> str:
    return site_settings().staff_reading


def reads_all() -> bool:
    return staff_reading() == StaffReading.ALL


def may_read(conversation: Conversation) -> bool:
    """Whether staff may open this conversation's content."""
    reading = staff_reading()
    if reading == StaffReading.FLAGGED:
        return conversation.flagged
    return reading == StaffReading.ALL


def may_read_completion(completion: Completion) -> bool:
    """A chat's call is read with its conversation. An API call belongs to none and nobody
    flags it: it is readable only while staff may read everything."""
    if completion.conversation_id is None:
        return reads_all()
    return may_read(completion.conversation)


def readable_filter(prefix: str = "") -> Q | None:
    """The conversations staff may read as a filter (Q() for all, None for none);
    `prefix` reaches them from a related model, e.g. "conversation__"."""
    reading = staff_reading()
    if reading == StaffReading.ALL:
        return Q()
    if reading == StaffReading.FLAGGED:
        return Q(**{f"{prefix}flagged": True})
    return None


def readable(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Only the conversations staff may read."""
    where = readable_filter()
    return conversations.none() if where is None else conversations.filter(where)


def may_read_column(prefix: str = "") -> Expression:
    """Whether staff may read each row's conversation, as an annotation: a list page asks
    its rows without a query (or a settings read) each."""
    where = readable_filter(prefix)
    if where is None:
        return Value(False)
    if not where:
        return Value(True)
    return ExpressionWrapper(where, output_field=BooleanField())


def unreadable(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """The conversations staff may not read."""
    where = readable_filter()
    if where is None:
        return conversations
    return conversations.exclude(where) if where else conversations.none()


def hidden_title(conversation_id: int) -> str:
    """What staff see instead of a title they may not read."""
    return _("Conversation #%(number)d") % {"number": conversation_id}
