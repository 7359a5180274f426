"""Group budgets: a monthly limit pooled across a group's members, beside each member's
own. A call reserves against every limit that applies in one transaction, settles or
releases against the same rows (even after a change of groups), and parallel sends from
many members at the group's edge never pass it (proved against PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from conversations.api import contract
from conversations.api import services as api_services
from conversations.api.errors import ApiError
from conversations.billing import budgets
from conversations.billing.budgets import BudgetExceeded
from conversations.chat.services import completions
from conversations.chat.services import conversations as chat_services
from conversations.models import (
    BudgetPeriod,
    Completion,
    GroupBudget,
    GroupBudgetPeriod,
    Message,
    ModelPrice,
    UserBudget,
)
from tests.billing.test_budgets import MAX_TOKENS, estimate, sends_at_once

User = get_user_model()


def chat(owner):
    return chat_services.conversation_create(
        owner=owner, model="gpt-4o-mini", max_tokens=MAX_TOKENS
    )


def group_of(*members, tokens=None, cost=None, name="sales") -> Group:
    group = Group.objects.create(name=name)
    group.user_set.add(*members)
    if tokens is not None or cost is not None:
        GroupBudget.objects.create(group=group, monthly_token_limit=tokens, monthly_cost_limit=cost)
    return group


def pooled(group) -> GroupBudgetPeriod:
    month = budgets.month_of(timezone.now())
    return GroupBudgetPeriod.objects.filter(group=group, month=month).first() or (
        GroupBudgetPeriod(group=group, month=month)
    )


def test_the_groups_limit_is_shared_by_its_members(alice, bob, charlie, send, enqueued):
    each = estimate(chat(alice), "hello")
    sales = group_of(alice, bob, charlie, tokens=each * 2 + each // 2)
    first, second, third = chat(alice), chat(bob), chat(charlie)
    send(first, "hello")
    send(second, "hello")
    # Alice's and Bob's reservations are in the pool; Charlie's does not fit, though he
    # has used nothing himself.
    assert pooled(sales).reserved_tokens == 2 * each
    with pytest.raises(BudgetExceeded) as refused:
        send(third, "hello")
    assert refused.value.code == "group_budget_tokens"
    assert "sales" in refused.value.message and "saved" in refused.value.message
    # The message is kept, nothing was queued, and no row changed.
    assert third.messages.get(role=Message.Role.USER).content == "hello"
    assert not third.completions.exists()
    assert pooled(sales).reserved_tokens == 2 * each
    assert budgets.period_usage(charlie.pk).reserved_tokens == 0
    # Each member's own period carries their own share.
    assert budgets.period_usage(alice.pk).reserved_tokens == each
    assert Completion.objects.get(conversation=first).budget_groups == [sales.pk]
    assert len(enqueued.ids) == 2


def test_a_call_must_fit_every_limit(alice, bob, send):
    each = estimate(chat(alice), "hello")
    group_of(alice, tokens=each * 10, name="sales")
    group_of(alice, tokens=each * 10, name="emea")
    UserBudget.objects.create(user=alice, monthly_token_limit=each // 2)
    with pytest.raises(BudgetExceeded) as refused:
        send(chat(alice), "hello")
    assert refused.value.code == "budget_tokens"  # her own, though both groups had room
    assert not GroupBudgetPeriod.objects.filter(reserved_tokens__gt=0).exists()
    # The tightest group refuses when her own limit is lifted; the other group is left
    # alone (every row is checked before any is changed).
    UserBudget.objects.filter(user=alice).update(unlimited=True)
    GroupBudget.objects.filter(group__name="emea").update(monthly_token_limit=each // 2)
    with pytest.raises(BudgetExceeded) as refused:
        send(chat(alice), "hello")
    assert refused.value.code == "group_budget_tokens" and "emea" in refused.value.message
    assert not GroupBudgetPeriod.objects.filter(reserved_tokens__gt=0).exists()
    assert budgets.period_usage(alice.pk).reserved_tokens == 0


def test_a_cost_limit_of_the_group(alice, send):
    ModelPrice.objects.create(
        model="gpt-4o-mini",
        prompt_price_per_million=Decimal("2"),
        completion_price_per_million=Decimal("8"),
        valid_from=timezone.now() - timedelta(days=1),
    )
    group_of(alice, cost=Decimal("0.0001"))
    with pytest.raises(BudgetExceeded) as refused:
        send(chat(alice), "hello")
    assert refused.value.code == "group_budget_cost"


def test_settling_and_releasing_touch_the_groups_reserved_against(
    alice, bob, simulator, send, enqueued
):
    sales = group_of(alice, bob, tokens=100_000)
    _, kept = send(chat(alice), "hello")
    _, dropped = send(chat(bob), "hello")
    # Alice leaves the group and Bob joins another budgeted one before the calls end:
    # the rows reserved against are the ones settled and released.
    sales.user_set.remove(alice)
    group_of(bob, tokens=100_000, name="emea")
    completions.budget_release(completion_id=dropped.pk)
    enqueued.calls = [(kept.pk, None)]
    enqueued.drain()
    kept.refresh_from_db()
    assert kept.status == Completion.Status.SUCCEEDED and kept.total_tokens > 0
    now = pooled(sales)
    assert (now.reserved_tokens, now.used_tokens) == (0, kept.total_tokens)
    assert (
        not GroupBudgetPeriod.objects.filter(group__name="emea")
        .exclude(reserved_tokens=0, used_tokens=0)
        .exists()
    )
    assert budgets.period_usage(bob.pk).reserved_tokens == 0
    # Settling again changes nothing.
    completions.budget_settle(completion_id=kept.pk)
    assert pooled(sales).used_tokens == kept.total_tokens


def test_a_call_reserved_nothing_ahead_counts_for_the_groups_of_now(alice):
    sales = group_of(alice, tokens=1000)
    budgets.period_adjust(
        user_id=alice.pk,
        at=timezone.now(),
        reserved=budgets.UNRESERVED,
        used_tokens=12,
        used_cost=Decimal(0),
    )
    assert pooled(sales).used_tokens == 12
    assert budgets.period_usage(alice.pk).used_tokens == 12


def test_an_unlimited_override_does_not_lift_the_groups_limit(alice, send):
    UserBudget.objects.create(user=alice, unlimited=True)
    group_of(alice, tokens=1)
    with pytest.raises(BudgetExceeded):
        send(chat(alice), "hello")


def test_a_group_without_limits_reserves_nothing(alice, send):
    GroupBudget.objects.create(group=group_of(alice), monthly_token_limit=None)
    _, completion = send(chat(alice), "hello")
    assert completion.reserved_tokens == 0 and completion.budget_groups == []
    assert not GroupBudgetPeriod.objects.exists()


def test_an_api_call_over_the_groups_budget_is_402(alice):
    group_of(alice, tokens=10)
    _key, secret = api_services.api_key_create(user=alice, name="k")
    key = api_services.key_authenticate(f"Bearer {secret}")
    assert key.in_budgeted_group
    asked = contract.asked(
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}',
        models=["gpt-4o-mini"],
        max_choices=4,
    )
    with pytest.raises(ApiError) as refused:
        api_services.call_open(key=key, asked=asked)
    assert refused.value.status == 402 and "sales" in refused.value.message
    assert not Completion.objects.exists()


def test_the_admin_starts_a_new_budget_from_the_members_use_this_month(
    client, superuser, alice, bob
):
    sales = group_of(alice, bob)
    month = budgets.month_of(timezone.now())
    BudgetPeriod.objects.create(user=alice, month=month, used_tokens=300, used_cost=1)
    BudgetPeriod.objects.create(user=bob, month=month, used_tokens=200, used_cost=2)
    client.force_login(superuser)
    response = client.post(
        reverse("admin:conversations_groupbudget_add"),
        {"group": sales.pk, "monthly_token_limit": "1000", "monthly_cost_limit": ""},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert (pooled(sales).used_tokens, pooled(sales).used_cost) == (500, 3)
    listing = client.get(reverse("admin:conversations_groupbudget_changelist"))
    assert listing.status_code == 200 and "500" in listing.content.decode()


def test_group_meters_for_the_members(alice, bob, send):
    sales = group_of(alice, tokens=100_000)
    group_of(alice, bob, name="emea")  # no budget: no meter
    send(chat(alice), "hello")
    (meter,) = budgets.group_budget_statuses(alice.pk)
    assert meter.group == "sales" and meter.limits.tokens == 100_000
    assert meter.committed_tokens == pooled(sales).reserved_tokens > 0
    assert budgets.group_budget_statuses(bob.pk) == []
    assert not budgets.exhausted(alice.pk)
    GroupBudget.objects.filter(group=sales).update(monthly_token_limit=1)
    assert budgets.exhausted(alice.pk)


# --- Parallel sends from many members at the group's edge ---

ALLOWED = 10  # the pool fits this many reservations, and half of one more


def _race(members: int, simulator, enqueued, settings) -> None:
    settings.MAX_REPLIES_IN_FLIGHT = 0
    settings.MESSAGES_PER_MINUTE = 0
    people = [User.objects.create_user(f"member{i}") for i in range(members)]
    conversations = [chat(person) for person in people]
    each = estimate(conversations[0], "race")
    limit = each * ALLOWED + each // 2
    sales = group_of(*people, tokens=limit)
    results = sends_at_once(conversations)
    sent = [pk for outcome, pk in results if outcome == "sent"]
    refusals = {code for outcome, code in results if outcome == "refused"}
    now = pooled(sales)
    # The pool never passes its limit: the reservations that fit, and not one more.
    assert now.reserved_tokens + now.used_tokens <= limit
    assert now.reserved_tokens == each * len(sent)
    assert len(sent) == ALLOWED and refusals == {"group_budget_tokens"}
    assert Message.objects.filter(role=Message.Role.USER, content="race").count() == members
    assert sorted(enqueued.ids) == sorted(sent)
    # The replies arrive: the reservations become real use, still within the limit.
    enqueued.drain(timeout=120)
    now = pooled(sales)
    used = sum(Completion.objects.filter(pk__in=sent).values_list("total_tokens", flat=True))
    assert now.reserved_tokens == 0
    assert now.used_tokens == used <= limit


def test_parallel_sends_of_members_never_pass_the_pool(
    transactional_db, simulator, enqueued, settings
):
    _race(20, simulator, enqueued, settings)


@pytest.mark.postgres
def test_fifty_members_sending_at_once_never_pass_the_pool_on_postgresql(
    postgresql, simulator, enqueued, settings
):
    assert connection.vendor == "postgresql"
    _race(50, simulator, enqueued, settings)


def test_my_usage_shows_each_groups_meter(client, alice, bob, send):
    sales = group_of(alice, tokens=100_000)
    group_of(alice, tokens=50_000, name="emea")
    send(chat(alice), "hello")
    client.force_login(alice)
    page = client.get(reverse("usage_mine")).content.decode()
    assert "Budget of the group sales" in page and "Budget of the group emea" in page
    assert f'id="group-budget-{sales.pk}-tokens"' in page
    assert f"{pooled(sales).reserved_tokens} of 100000 tokens used or reserved" in page
    # No limit of her own: no meter of her own.
    assert 'id="budget-tokens"' not in page
    client.force_login(bob)
    assert "Budget of the group" not in client.get(reverse("usage_mine")).content.decode()
