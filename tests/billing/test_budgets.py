"""Monthly budgets: reserve before queueing, settle to real usage, release on failure,
and no overshoot when sends race (proved against PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import ROUND_UP, Decimal

import pytest
from django.db import connection, connections
from django.utils import timezone

from conversations.billing import budgets
from conversations.billing.budgets import BudgetExceeded
from conversations.chat.services import completions
from conversations.chat.services import conversations as chat_services
from conversations.models import BudgetPeriod, Completion, Message, ModelPrice, UserBudget

MAX_TOKENS = 50


@pytest.fixture
def budgeted(alice):
    return chat_services.conversation_create(
        owner=alice, model="gpt-4o-mini", max_tokens=MAX_TOKENS
    )


@pytest.fixture
def price(db) -> ModelPrice:
    return ModelPrice.objects.create(
        model="gpt-4o-mini",
        prompt_price_per_million=Decimal("2"),
        completion_price_per_million=Decimal("8"),
        valid_from=timezone.now() - timedelta(days=30),
    )


def estimate(budgeted, content: str) -> int:
    """The reservation a send of `content` makes: prompt estimate plus max_tokens."""
    body = chat_services.request_body(
        budgeted, [*chat_services.history(budgeted), {"role": "user", "content": content}]
    )
    return budgets.reservation_tokens(body)


def period(user) -> BudgetPeriod:
    return budgets.period_usage(user.pk)


def limit_tokens(user, tokens: int | None, **extra) -> UserBudget:
    return UserBudget.objects.update_or_create(
        user=user, defaults={"monthly_token_limit": tokens, **extra}
    )[0]


def test_the_reservation_is_the_prompt_estimate_plus_max_tokens(alice, budgeted, send):
    limit_tokens(alice, 100_000)
    expected = estimate(budgeted, "hello there")
    assert expected > MAX_TOKENS
    _, completion = send(budgeted, "hello there")
    completion.refresh_from_db()
    assert completion.reserved_tokens == expected
    assert (period(alice).reserved_tokens, period(alice).used_tokens) == (expected, 0)


def test_success_settles_the_reservation_to_the_real_usage(
    alice, budgeted, price, simulator, send, enqueued
):
    limit_tokens(alice, 100_000)
    _, completion = send(budgeted, "/echo a short answer")
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.SUCCEEDED and completion.budget_settled
    now = period(alice)
    assert now.reserved_tokens == 0 and now.reserved_cost == 0
    assert now.used_tokens == completion.total_tokens
    assert now.used_cost == completion.cost > 0


def test_a_failed_call_releases_its_reservation(alice, budgeted, simulator, send, enqueued):
    limit_tokens(alice, 100_000)
    simulator.control(faults=[{"status": 400, "message": "no"}])
    _, completion = send(budgeted, "hello")
    assert period(alice).reserved_tokens > 0
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.FAILED and completion.budget_settled
    assert (period(alice).reserved_tokens, period(alice).used_tokens) == (0, 0)


def test_settle_and_release_count_once(alice, budgeted, simulator, send, enqueued):
    limit_tokens(alice, 100_000)
    _, completion = send(budgeted, "/echo once")
    enqueued.drain()
    completion.refresh_from_db()
    completions.budget_settle(completion_id=completion.pk)
    completions.budget_release(completion_id=completion.pk)
    assert (period(alice).reserved_tokens, period(alice).used_tokens) == (
        0,
        completion.total_tokens,
    )


def test_deleting_a_conversation_with_a_reply_under_way_releases_it(alice, budgeted, send):
    limit_tokens(alice, 100_000)
    send(budgeted, "hello")
    chat_services.conversation_delete(conversation=budgeted)
    assert period(alice).reserved_tokens == 0


def test_over_budget_keeps_the_message_and_queues_nothing(alice, budgeted, send, enqueued):
    limit_tokens(alice, estimate(budgeted, "too much") - 1)
    with pytest.raises(BudgetExceeded) as refused:
        send(budgeted, "too much")
    assert "Monthly token budget reached" in refused.value.messages[0]
    assert "Your message is saved but was not sent" in refused.value.messages[0]
    assert list(budgeted.messages.values_list("role", "content")) == [("user", "too much")]
    assert not Completion.objects.exists()
    assert enqueued.calls == []
    assert period(alice).reserved_tokens == 0


def test_real_usage_counts_against_the_limit(alice, budgeted, simulator, send, enqueued):
    limit_tokens(alice, 100_000)
    _, completion = send(budgeted, "/echo one")
    enqueued.drain()
    completion.refresh_from_db()
    used = period(alice).used_tokens
    assert used == completion.total_tokens
    # The next send needs its reservation beside what the first one really used.
    needed = estimate(budgeted, "/echo two")
    limit_tokens(alice, used + needed - 1)
    with pytest.raises(BudgetExceeded):
        send(budgeted, "/echo two")
    # The refused message stays in the budgeted, so the next send carries it too.
    needed = estimate(budgeted, "/echo three")
    limit_tokens(alice, used + needed)
    send(budgeted, "/echo three")
    assert period(alice).reserved_tokens == needed


def test_a_cost_limit_refuses_when_the_expected_cost_does_not_fit(
    alice, budgeted, price, send, enqueued
):
    def expected_cost(content: str) -> Decimal:
        # The reservation is priced at the dearer rate (8 per million tokens).
        return Decimal(estimate(budgeted, content)) * Decimal(8) / Decimal(1_000_000)

    budget = UserBudget.objects.create(user=alice, monthly_cost_limit=Decimal("0.0001"))
    assert expected_cost("pricey") > budget.monthly_cost_limit
    with pytest.raises(BudgetExceeded) as refused:
        send(budgeted, "pricey")
    assert "Monthly cost budget reached" in refused.value.messages[0]
    needed = expected_cost("pricey again")
    budget.monthly_cost_limit = needed.quantize(Decimal("0.0001"), rounding=ROUND_UP)
    budget.save()
    _, completion = send(budgeted, "pricey again")
    completion.refresh_from_db()
    assert completion.reserved_cost == needed
    assert period(alice).reserved_cost == needed


def test_the_site_default_applies_unless_overridden(alice, bob, charlie, settings):
    settings.BUDGET_MONTHLY_TOKENS = 1000
    settings.BUDGET_MONTHLY_COST = Decimal("5")
    limit_tokens(bob, 50)  # bob's own token limit; the site's cost limit still applies
    UserBudget.objects.create(user=charlie, unlimited=True)
    assert budgets.limits_for(alice.pk) == budgets.Limits(1000, Decimal("5"))
    assert budgets.limits_for(bob.pk) == budgets.Limits(50, Decimal("5"))
    assert budgets.limits_for(charlie.pk) == budgets.Limits(None, None)


def test_without_any_limit_nothing_is_reserved_but_use_is_tracked(
    alice, budgeted, simulator, send, enqueued
):
    _, completion = send(budgeted, "/echo free")
    completion.refresh_from_db()
    assert completion.reserved_tokens == 0
    enqueued.drain()
    completion.refresh_from_db()
    assert period(alice).used_tokens == completion.total_tokens


def test_budget_status_reports_this_months_share(alice, budgeted, send, settings):
    settings.BUDGET_MONTHLY_TOKENS = 1000
    send(budgeted, "hello")
    status = budgets.budget_status(alice.pk)
    reserved = period(alice).reserved_tokens
    assert status.committed_tokens == reserved
    assert status.token_percent == reserved * 100 // 1000
    assert status.cost_percent is None


# --- Parallel sends ---

SENDERS = 20
ALLOWED = 5  # the limit fits this many reservations, and half of one more


def sends_at_once(conversations: list, content: str = "race") -> list[tuple[str, object]]:
    """Each conversation's owner sends `content` in it, all at once (one thread each, a
    barrier between them): ("sent", completion id) or ("refused", the refusal's code)."""
    barrier = threading.Barrier(len(conversations))
    results: list[tuple[str, object]] = [("", None)] * len(conversations)

    def sender(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            _, completion = chat_services.message_send(
                owner=conversations[i].owner, conversation_id=conversations[i].pk, content=content
            )
            results[i] = ("sent", completion.pk)
        except BudgetExceeded as refusal:
            results[i] = ("refused", refusal.code)
        except Exception as exc:  # reported below, with the thread's number
            results[i] = ("error", repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(len(conversations))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [r for r in results if r[0] not in ("sent", "refused")] == []
    return results


def _race(alice, simulator, enqueued, settings) -> None:
    """SENDERS threads send at once, each in its own conversation; only ALLOWED fit."""
    # Only the budget may refuse here, not the abuse limits.
    settings.MAX_REPLIES_IN_FLIGHT = 0
    settings.MESSAGES_PER_MINUTE = 0
    conversations = [
        chat_services.conversation_create(owner=alice, model="gpt-4o-mini", max_tokens=MAX_TOKENS)
        for _ in range(SENDERS)
    ]
    each = estimate(conversations[0], "race")
    limit = each * ALLOWED + each // 2
    limit_tokens(alice, limit)
    results = sends_at_once(conversations)

    sent = [pk for outcome, pk in results if outcome == "sent"]
    refused = [i for i, (outcome, _) in enumerate(results) if outcome == "refused"]
    now = period(alice)
    # Never past the limit: the reservations that fit, and not one more.
    assert now.reserved_tokens + now.used_tokens <= limit
    assert now.reserved_tokens == each * len(sent)
    assert len(sent) == ALLOWED
    assert len(refused) == SENDERS - ALLOWED
    # Every message is kept; the refused ones queued nothing.
    assert Message.objects.filter(role=Message.Role.USER, content="race").count() == SENDERS
    for i in refused:
        assert not conversations[i].completions.exists()
    assert sorted(enqueued.ids) == sorted(sent)

    # The replies arrive: reservations become real usage, still within the limit.
    enqueued.drain(timeout=60)
    now = period(alice)
    used = sum(Completion.objects.filter(pk__in=sent).values_list("total_tokens", flat=True))
    assert now.reserved_tokens == 0
    assert now.used_tokens == used <= limit


def test_parallel_sends_never_pass_the_limit(
    transactional_db, alice, simulator, enqueued, settings
):
    _race(alice, simulator, enqueued, settings)


@pytest.mark.postgres
def test_parallel_sends_never_pass_the_limit_on_postgresql(
    postgresql, alice, simulator, enqueued, settings
):
    assert connection.vendor == "postgresql"
    _race(alice, simulator, enqueued, settings)
