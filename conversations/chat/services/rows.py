"""What the web's writes and the worker's share: row locks in their one order, and what a
send reads of the user, the conversation and its messages, each in one statement.

One lock order in every transaction that takes these rows: the user's, the conversation's,
the completion's, then the budget period's; all NO KEY locks, so the foreign-key checks of
rows inserted meanwhile (KEY SHARE) never wait on them."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db.models import Count, Max, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404

from conversations.billing import budgets
from conversations.chat.models import Completion, Conversation, Message

BUDGET_FIELDS = ("budget__monthly_token_limit", "budget__monthly_cost_limit", "budget__unlimited")


def next_position(conversation: Conversation) -> int:
    top = conversation.messages.aggregate(top=Max("position"))["top"]
    return 0 if top is None else top + 1


def lock_conversation(conversation: Conversation) -> Conversation:
    # Serialises writes in one conversation (positions, one reply at a time).
    return Conversation.objects.select_for_update(no_key=True).get(pk=conversation.pk)


def lock_sender(user_id: int) -> budgets.Limits:
    """Lock the user's row until the transaction ends, so one user's sends (and the counts
    they check) go one by one; and read the budget limits that apply, in the same
    statement."""
    user = (
        get_user_model()
        .objects.select_for_update(no_key=True, of=("self",))
        .select_related("budget")
        .only("pk", *BUDGET_FIELDS)
        .get(pk=user_id)
    )
    try:
        override = user.budget
    except get_user_model().budget.RelatedObjectDoesNotExist:
        override = None
    return budgets.limits_of(override)


@dataclass(frozen=True)
class Active:
    """The user's completions queued or being written: in this conversation, and in all."""

    here: int
    everywhere: int


def _count(rows: QuerySet[Completion], by: str) -> Coalesce:
    counted = rows.values(by).annotate(count=Count("pk")).values("count")
    return Coalesce(Subquery(counted), 0)


def lock_own_conversation(user_id: int, conversation_id: int) -> tuple[Conversation, Active]:
    """The user's conversation, locked until the transaction ends (404 for anyone else's),
    and the user's active completions, in one statement. Only after `lock_sender`: a
    statement's counts are of the moment it began, before any wait for the conversation's
    lock, and they hold because every completion of the user is made under the user's
    lock, which this transaction already has."""
    active = Completion.objects.filter(user_id=user_id, status__in=Completion.ACTIVE)
    try:
        conversation = (
            Conversation.objects.select_for_update(no_key=True)
            .annotate(
                active_here=_count(active.filter(conversation_id=OuterRef("pk")), "conversation"),
                active_everywhere=_count(active, "user"),
            )
            .get(pk=conversation_id, owner_id=user_id)
        )
    except Conversation.DoesNotExist:
        raise Http404("No such conversation") from None
    return conversation, Active(conversation.active_here, conversation.active_everywhere)


@dataclass(frozen=True)
class Turns:
    """What the call's history needs of the conversation, and where a new message goes."""

    history: list[dict[str, str]]
    next_position: int


SENT = (Message.Status.COMPLETE, Message.Status.STOPPED)


def turns(conversation: Conversation, *, upto_position: int | None = None) -> Turns:
    """The messages sent with a call (one query): the system prompt first, then the
    conversation with only the selected choice of each reply, and never a reply that broke
    off; and the next free position."""
    rows = conversation.messages.order_by("position", "choice_index").values_list(
        "role", "content", "position", "is_selected", "status"
    )
    history = [{"role": "system", "content": conversation.system_prompt}]
    if not conversation.system_prompt:
        history = []
    top = -1
    for role, content, position, selected, status in rows:
        top = max(top, position)
        if upto_position is not None and position > upto_position:
            continue
        chosen = role == Message.Role.USER or (role == Message.Role.ASSISTANT and selected)
        if status in SENT and chosen:
            history.append({"role": role, "content": content})
    return Turns(history, top + 1)
