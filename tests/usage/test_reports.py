"""Usage reports against known usage: real calls to the simulator, exact Decimal costs."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from conversations.chat.services import conversations as chat_services
from conversations.models import Completion, ModelPrice
from conversations.usage import charts, reports
from tests.usage.helpers import (
    COMPLETION_RATE,
    DAY1,
    DAY2,
    PROMPT_RATE,
    at,
    chat,
    expected_cost,
    expected_usage,
)


def test_stored_usage_is_what_the_simulator_counted(history):
    for completion in history.values():
        prompt, reply = expected_usage(completion)
        assert (completion.prompt_tokens, completion.completion_tokens) == (prompt, reply)
        assert completion.total_tokens == prompt + reply


def test_summary_totals_equal_the_upstream_usage_and_exact_costs(history, alice):
    mine = [history[k] for k in ("a1", "a2", "a3", "a4")]
    usage = [expected_usage(c) for c in mine]
    summary = reports.user_summary(alice.pk, DAY1, DAY2)
    assert summary["requests"] == 4
    assert summary["failed"] == 0
    assert summary["prompt_tokens"] == sum(p for p, _ in usage)
    assert summary["completion_tokens"] == sum(c for _, c in usage)
    assert summary["total_tokens"] == sum(p + c for p, c in usage)
    # gpt-4o has no price: its call is counted as unpriced, not as a free one.
    assert summary["cost"] == sum((expected_cost(*u) for u in usage[:3]), Decimal(0))
    assert isinstance(summary["cost"], Decimal)
    assert summary["unpriced"] == 1
    assert summary["cost_complete"] is False
    assert summary["currency"] == "USD"


def test_per_day_rows_split_the_totals_by_day(history, alice):
    days = reports.per_day(alice.pk, DAY1, DAY2)
    assert [row["day"] for row in days] == [DAY1 + timedelta(days=i) for i in range(4)]
    by_day = {row["day"]: row for row in days}
    a1, a2, a3, a4 = (expected_usage(history[k]) for k in ("a1", "a2", "a3", "a4"))
    assert by_day[DAY1]["requests"] == 2
    assert by_day[DAY1]["prompt_tokens"] == a1[0] + a2[0]
    assert by_day[DAY1]["completion_tokens"] == a1[1] + a2[1]
    assert by_day[DAY1]["cost"] == expected_cost(*a1) + expected_cost(*a2)
    assert by_day[DAY2]["total_tokens"] == sum(a3) + sum(a4)
    assert by_day[DAY2]["cost"] == expected_cost(*a3)
    assert by_day[DAY2]["unpriced"] == 1
    # Days without calls are zero rows, with a true zero cost.
    empty = by_day[DAY1 + timedelta(days=1)]
    assert (empty["requests"], empty["total_tokens"], empty["cost"]) == (0, 0, Decimal(0))


def test_per_day_uses_the_site_time_zone(history, alice, settings):
    # 20:00 UTC on DAY1 is 04:00 the next day in Shanghai (UTC+8).
    Completion.objects.filter(pk=history["a2"].pk).update(queued_at=at(DAY1, 20))
    settings.TIME_ZONE = "Asia/Shanghai"
    by_day = {row["day"]: row for row in reports.per_day(alice.pk, DAY1, DAY2, fill=False)}
    assert by_day[DAY1]["requests"] == 1
    assert by_day[DAY1 + timedelta(days=1)]["requests"] == 1


def test_per_model_rows_and_no_price(history, alice):
    models = {row["model"]: row for row in reports.per_model(alice.pk, DAY1, DAY2)}
    assert set(models) == {"gpt-4o-mini", "gpt-4o"}
    mini = [expected_usage(history[k]) for k in ("a1", "a2", "a3")]
    assert models["gpt-4o-mini"]["requests"] == 3
    assert models["gpt-4o-mini"]["total_tokens"] == sum(p + c for p, c in mini)
    assert models["gpt-4o-mini"]["cost"] == sum((expected_cost(*u) for u in mini), Decimal(0))
    assert models["gpt-4o-mini"]["cost_complete"] is True
    assert models["gpt-4o"]["cost"] is None
    assert models["gpt-4o"]["unpriced"] == 1
    assert models["gpt-4o"]["total_tokens"] == sum(expected_usage(history["a4"]))


def test_all_users_has_one_row_per_user_with_their_own_numbers(history, alice, bob):
    rows = {row["username"]: row for row in reports.all_users(DAY1, DAY2)}
    assert set(rows) == {"alice", "bob"}
    assert rows["alice"]["user_id"] == alice.pk
    assert rows["alice"]["requests"] == 4
    assert rows["alice"] == {
        **reports.user_summary(alice.pk, DAY1, DAY2),
        "user_id": alice.pk,
        "username": "alice",
        "source": "browser",
    }
    b1 = expected_usage(history["b1"])
    assert rows["bob"]["total_tokens"] == sum(b1)
    assert rows["bob"]["cost"] == expected_cost(*b1)


def test_all_users_per_model_rows_add_up_to_the_user_rows(history, alice):
    rows = reports.all_users(DAY1, DAY2, by_model=True, order="username")
    assert [(r["username"], r["model"]) for r in rows] == [
        ("alice", "gpt-4o"),
        ("alice", "gpt-4o-mini"),
        ("bob", "gpt-4o-mini"),
    ]
    alice_rows = [r for r in rows if r["user_id"] == alice.pk]
    summary = reports.user_summary(alice.pk, DAY1, DAY2)
    assert sum(r["total_tokens"] for r in alice_rows) == summary["total_tokens"]


def test_all_users_total_matches_the_sum_of_the_rows(history):
    rows = reports.all_users(DAY1, DAY2)
    assert reports.combined(rows) == reports.all_users_total(DAY1, DAY2)


def test_all_users_sorts_by_whitelisted_columns_only(history):
    def names(order: str) -> list[str]:
        return [row["username"] for row in reports.all_users(DAY1, DAY2, order=order)]

    assert names("username") == ["alice", "bob"]
    assert names("-username") == ["bob", "alice"]
    assert names("-requests") == ["alice", "bob"]
    assert names("requests") == ["bob", "alice"]
    # Anything else falls back to the default (most tokens first), never reaching SQL.
    assert names("password") == names("-total_tokens") == ["alice", "bob"]
    assert reports.clean_order("model") == reports.DEFAULT_ORDER
    assert reports.clean_order("model", by_model=True) == "model"


def test_rows_without_a_price_sort_last_by_cost(history, alice):
    rows = reports.all_users(DAY1, DAY2, by_model=True, order="-cost")
    assert rows[-1]["model"] == "gpt-4o"
    rows = reports.all_users(DAY1, DAY2, by_model=True, order="cost")
    assert rows[-1]["model"] == "gpt-4o"


def test_range_leaves_out_calls_outside_it(history, alice):
    assert reports.user_summary(alice.pk, DAY1, DAY1)["requests"] == 2
    assert reports.user_summary(alice.pk, DAY2, DAY2)["requests"] == 2
    assert reports.user_summary(alice.pk, DAY2 + timedelta(days=1), DAY2 + timedelta(days=9)) == {
        "failed": 0,
        "unpriced": 0,
        "estimated": 0,
        "title_calls": 0,
        "requests": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "cost": Decimal(0),
        "mixed_currency": False,
        "currency": "",
        "cost_complete": True,
    }


def test_failed_calls_count_as_failed_without_tokens_or_cost(
    alice, price, simulator, send, enqueued
):
    conversation = chat_services.conversation_create(owner=alice, model="gpt-4o-mini")
    simulator.control(faults=[{"status": 400, "message": "bad request"}])
    failed = chat(send, enqueued, conversation, "/echo never")
    assert failed.status == Completion.Status.FAILED
    ok = chat(send, enqueued, conversation, "/echo fine")
    today = timezone.localdate()
    summary = reports.user_summary(alice.pk, today, today)
    assert (summary["requests"], summary["failed"], summary["unpriced"]) == (2, 1, 0)
    assert summary["total_tokens"] == ok.total_tokens
    assert summary["cost"] == ok.cost == expected_cost(*expected_usage(ok))


def test_a_price_change_leaves_earlier_costs_unchanged(alice, price, simulator, send, enqueued):
    conversation = chat_services.conversation_create(owner=alice, model="gpt-4o-mini")
    before = chat(send, enqueued, conversation, "/echo priced at the old rate")
    old_cost = before.cost
    assert old_cost == expected_cost(*expected_usage(before))
    assert before.price == price
    # The price goes up tenfold, and the old price row itself is edited too.
    ModelPrice.objects.create(
        model="gpt-4o-mini",
        prompt_price_per_million=PROMPT_RATE * 10,
        completion_price_per_million=COMPLETION_RATE * 10,
        currency="USD",
        valid_from=timezone.now(),
    )
    ModelPrice.objects.filter(pk=price.pk).update(prompt_price_per_million=Decimal("99"))
    after = chat(send, enqueued, conversation, "/echo priced at the new rate")
    before.refresh_from_db()
    assert before.cost == old_cost
    assert after.cost == expected_cost(*expected_usage(after)) * 10
    today = timezone.localdate()
    assert reports.user_summary(alice.pk, today, today)["cost"] == old_cost + after.cost


def test_costs_in_several_currencies_are_not_added_up(history, alice):
    Completion.objects.filter(pk=history["a3"].pk).update(currency="EUR")
    summary = reports.user_summary(alice.pk, DAY1, DAY2)
    assert summary["mixed_currency"] is True
    assert summary["cost"] is None
    rows = reports.all_users(DAY1, DAY2, by_model=True)
    assert reports.combined(rows)["mixed_currency"] is True


def test_one_user_never_gets_another_users_numbers(history, bob):
    summary = reports.user_summary(bob.pk, DAY1, DAY2)
    assert summary["requests"] == 1
    assert [row["model"] for row in reports.per_model(bob.pk, DAY1, DAY2)] == ["gpt-4o-mini"]
    assert sum(row["requests"] for row in reports.per_day(bob.pk, DAY1, DAY2)) == 1


def test_reports_take_one_query_for_calls_and_one_for_removed_calls(
    history, alice, django_assert_num_queries
):
    with django_assert_num_queries(2):
        reports.user_summary(alice.pk, DAY1, DAY2)
    with django_assert_num_queries(2):
        reports.per_day(alice.pk, DAY1, DAY2)
    with django_assert_num_queries(2):
        reports.per_model(alice.pk, DAY1, DAY2)
    with django_assert_num_queries(3):
        reports.all_users(DAY1, DAY2, by_model=True)
    with django_assert_num_queries(6):
        reports.user_drilldown(alice.pk, DAY1, DAY2)


@pytest.mark.parametrize(
    ("cost", "text"),
    [
        (Decimal("0.01234500"), "0.012345"),
        (Decimal("12.00000000"), "12.00"),
        (Decimal("0.50000000"), "0.50"),
        (Decimal("0E-8"), "0.00"),
        (Decimal(0), "0.00"),
        (Decimal("1234"), "1234.00"),
        (None, ""),
    ],
)
def test_cost_text_is_exact_without_trailing_zeros(cost, text):
    assert reports.cost_text(cost) == text


def test_default_range_is_this_month_so_far():
    assert reports.default_range(date(2025, 6, 17)) == (date(2025, 6, 1), date(2025, 6, 17))


def test_chart_is_an_accessible_stacked_bar_chart():
    days = [
        {
            "day": DAY1 + timedelta(days=i),
            "prompt_tokens": 100 * i,
            "completion_tokens": 40 * i,
            "total_tokens": 140 * i,
            "requests": i,
        }
        for i in range(5)
    ]
    svg = str(charts.tokens_per_day_svg(days, title="Tokens <per> day"))
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert "aria-label=" in svg and "560 tokens" in svg  # the busiest day in the summary
    assert "Tokens &lt;per&gt; day" in svg and "<per>" not in svg
    # A tooltip per day, prompt and completion as two stacked rectangles.
    assert svg.count('<g class="bar"><title>') == 5
    assert "June 6, 2025: 560 tokens (400 prompt, 160 completion), 4 requests" in svg
    assert "prompt tokens" in svg and "completion tokens" in svg


def test_a_phones_chart_is_drawn_narrow_with_its_legend_under_the_title():
    days = [
        {
            "day": DAY1 + timedelta(days=i),
            "prompt_tokens": 9000,
            "completion_tokens": 3804,
            "total_tokens": 12804,
            "requests": 3,
        }
        for i in range(30)
    ]
    wide = str(charts.tokens_per_day_svg(days))
    narrow = str(charts.tokens_per_day_svg(days, narrow=True))
    assert 'viewBox="0 0 760 300"' in wide and 'viewBox="0 0 360 260"' in narrow
    # Fewer day labels, so each stays readable at a phone's width.
    day_labels = re.compile(r'<text x="[\d.]+" y="\d+" text-anchor="middle">')
    assert len(day_labels.findall(narrow)) <= 6 < len(day_labels.findall(wide))
    # Counts grouped by thousands in the tooltip.
    assert "12,804 tokens (9,000 prompt, 3,804 completion), 3 requests" in narrow
    # Colours of gridlines and axes are the stylesheet's (light and dark).
    assert 'class="grid"' in narrow and 'class="axis"' in narrow


def test_chart_of_an_empty_range_says_so():
    svg = str(charts.tokens_per_day_svg([{"day": DAY1, **dict.fromkeys(reports.METRICS, 0)}]))
    assert "No tokens used in this range" in svg


@pytest.mark.parametrize(
    ("top", "step"), [(0, 1), (7, 2), (140, 50), (1_234, 500), (98_000, 20_000)]
)
def test_chart_axis_steps_are_round(top, step):
    assert charts.nice_step(top) == step


def test_a_cut_off_call_with_estimated_usage_counts_its_tokens(alice, price):
    conversation = chat_services.conversation_create(owner=alice, model="gpt-4o")
    Completion.objects.create(
        conversation=conversation,
        user=alice,
        model="gpt-4o",
        status=Completion.Status.FAILED,
        prompt_tokens=12,
        completion_tokens=4,
        total_tokens=16,
        usage_estimated=True,
        queued_at=at(DAY1),
    )
    summary = reports.user_summary(alice.pk, DAY1, DAY1)
    assert (summary["failed"], summary["total_tokens"]) == (1, 16)
    # It used tokens on a model without a price: "no price", not a free call.
    assert (summary["unpriced"], summary["estimated"], summary["cost"]) == (1, 1, None)
