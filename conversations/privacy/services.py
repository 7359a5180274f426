"""Writes of privacy: the deletion of an account, by its owner or by staff.

The account is locked out first (its sessions and keys stop at once), then its
conversations and API calls go in batches, each batch its own short transaction, what
their calls used folded into daily usage rows first (billing.UsageDay), so reports and
budgets keep their totals; then the user's row, whose usage rows stay without them
("Deleted accounts"). Unlike the retention purge, nothing is skipped: a batch waits for
a row a worker holds. One audit record keeps the user's id and the counts, never
content or their name."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from conversations.accounts.services import account_lock
from conversations.api.models import ApiKey
from conversations.api.services import api_key_revoke
from conversations.chat.models import Completion, Conversation
from conversations.chat.services.conversations import completions_delete, conversations_delete
from conversations.review.models import AuditEvent
from conversations.review.services import audit_record
from conversations.shared import transactions

# Conversations per transaction (with all their messages and calls), and API calls.
BATCH_SIZE = 100
API_CALLS_BATCH_SIZE = 500


@dataclass
class Deleted:
    """What an account's deletion removed: counts only."""

    conversations: int = 0
    messages: int = 0
    completions: int = 0  # the calls of its conversations
    api_calls: int = 0


def conversations_batch_delete(*, owner_id: int) -> dict[str, int]:
    """Delete the owner's next BATCH_SIZE conversations in one transaction of their own
    (counts from conversations_delete; all zero once none is left)."""

    def batch() -> dict[str, int]:
        # Locked before their rows go, in id order: a worker saving a reply in one takes
        # its conversation's lock first, so the batch waits for it (never skips it).
        ids = list(
            Conversation.objects.filter(owner_id=owner_id)
            .order_by("pk")
            .select_for_update()
            .values_list("pk", flat=True)[:BATCH_SIZE]
        )
        if not ids:
            return {"conversations": 0, "messages": 0, "completions": 0}
        return conversations_delete(conversations=Conversation.objects.filter(pk__in=ids))

    return transactions.atomic_with_retry(batch)


def api_calls_batch_delete(*, user_id: int) -> int:
    """Fold and delete the user's next API_CALLS_BATCH_SIZE calls that belong to no
    conversation, in one transaction of their own; returns how many went."""

    def batch() -> int:
        ids = list(
            Completion.objects.filter(user_id=user_id, conversation__isnull=True)
            .order_by("pk")
            .select_for_update()
            .values_list("pk", flat=True)[:API_CALLS_BATCH_SIZE]
        )
        # A call still running gives its reservation back; its end then saves nothing.
        return completions_delete(completions=Completion.objects.filter(pk__in=ids))

    return transactions.atomic_with_retry(batch)


def _user_row_delete(user_id: int, actor: AbstractBaseUser | None, deleted: Deleted) -> bool:
    """Delete the user's row with the audit record, in one transaction; False (nothing
    done) when a conversation or call of theirs appeared meanwhile (a request that was
    under way when the account was locked): another round of batches takes it."""
    users = get_user_model().objects
    with transaction.atomic():
        # Under the user's lock no send of theirs is half-way (a send takes it first).
        if not list(users.select_for_update().filter(pk=user_id).values_list("pk", flat=True)):
            return True  # deleted meanwhile by someone else
        if (
            Conversation.objects.filter(owner_id=user_id).exists()
            or Completion.objects.filter(user_id=user_id, conversation__isnull=True).exists()
        ):
            return False
        audit_record(
            actor=actor,
            action=AuditEvent.Action.DELETE_ACCOUNT,
            details={
                "user_id": user_id,
                "conversations": deleted.conversations,
                "messages": deleted.messages,
                "api_calls": deleted.api_calls,
            },
        )
        users.filter(pk=user_id).delete()
    return True


def account_delete(*, user: AbstractBaseUser, actor: AbstractBaseUser | None = None) -> Deleted:
    """Delete the user's account with everything of theirs; their usage stays in the
    reports without them. `actor`: the staff member deleting it, None for its owner.
    Commits batch by batch: call it outside a transaction (a caller's would hold it all)."""
    account_lock(user=user)
    for key in ApiKey.objects.filter(user_id=user.pk, revoked_at__isnull=True):
        api_key_revoke(key=key)
    deleted = Deleted()
    while True:
        while (counts := conversations_batch_delete(owner_id=user.pk))["conversations"]:
            deleted.conversations += counts["conversations"]
            deleted.messages += counts["messages"]
            deleted.completions += counts["completions"]
        while calls := api_calls_batch_delete(user_id=user.pk):
            deleted.api_calls += calls
        if _user_row_delete(user.pk, actor, deleted):
            return deleted
