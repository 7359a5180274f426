"""Usage pages and CSV exports: what each user (and staff) may see, and that CSV = page."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from conversations.chat.services import conversations as chat_services
from conversations.models import Completion, ModelPrice, UserBudget
from conversations.usage import reports
from tests.factories import csv_rows

DAY1, DAY2 = date(2025, 6, 2), date(2025, 6, 5)
RANGE = {"start": "2025-06-01", "end": "2025-06-30"}


class Tables(HTMLParser):
    """The text of every table's cells, keyed by caption: {caption: [[cell, ...], ...]}."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._caption: list[str] | None = None
        self._rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._rows = []
        elif tag == "caption":
            self._caption = []
        elif tag == "tr":
            self._rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "caption":
            self._name = "".join(self._caption).strip()
            self._caption = None
        elif tag in ("td", "th") and self._cell is not None:
            self._rows[-1].append(" ".join("".join(self._cell).split()).rstrip(" ▲▼"))
            self._cell = None
        elif tag == "table":
            self.tables[self._name] = self._rows

    def handle_data(self, data):
        if self._caption is not None:
            self._caption.append(data)
        if self._cell is not None:
            self._cell.append(data)


def tables(response) -> dict[str, list[list[str]]]:
    parser = Tables()
    parser.feed(response.content.decode())
    return parser.tables


def completion(conversation, *, on: datetime, prompt: int, reply: int, cost=None, **extra):
    """A finished call with known usage, as the worker stores it."""
    return Completion.objects.create(
        conversation=conversation,
        user_id=conversation.owner_id,
        model=conversation.model,
        status=extra.pop("status", Completion.Status.SUCCEEDED),
        prompt_tokens=prompt,
        completion_tokens=reply,
        total_tokens=prompt + reply,
        cost=cost,
        currency="USD" if cost is not None else "",
        queued_at=on,
        finished_at=on,
        **extra,
    )


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=ZoneInfo("UTC"))


@pytest.fixture
def usage(alice, bob):
    """alice: 3 calls (one failed, one on an unpriced model); bob: 1 big call."""
    mini = chat_services.conversation_create(owner=alice, model="gpt-4o-mini")
    big = chat_services.conversation_create(owner=alice, model="gpt-4o")
    bobs = chat_services.conversation_create(owner=bob, model="gpt-4o-mini")
    completion(mini, on=at(DAY1), prompt=120, reply=30, cost=Decimal("0.00003600"))
    completion(mini, on=at(DAY2), prompt=200, reply=50, cost=Decimal("0.00006000"))
    completion(big, on=at(DAY2), prompt=10, reply=5)
    Completion.objects.create(
        conversation=mini,
        user=alice,
        model="gpt-4o-mini",
        status=Completion.Status.FAILED,
        queued_at=at(DAY2),
    )
    completion(bobs, on=at(DAY1), prompt=9000, reply=7777, cost=Decimal("1.23450000"))


def test_it_requires_login(client, db):
    for name in ("usage_mine", "usage_mine_csv", "usage_all", "usage_all_csv"):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_my_usage_shows_totals_chart_and_tables(client, alice, usage):
    client.force_login(alice)
    response = client.get(reverse("usage_mine"), RANGE)
    assert response.status_code == 200
    page = response.content.decode()
    assert '<dd data-total="requests">4</dd>' in page
    assert '<dd data-total="failed">1</dd>' in page
    assert '<dd data-total="prompt_tokens">330</dd>' in page
    assert '<dd data-total="completion_tokens">85</dd>' in page
    assert '<dd data-total="total_tokens">415</dd>' in page
    assert '<dd data-total="cost">0.000096 USD</dd>' in page
    assert "1 request has no price set for its model" in page
    assert '<svg class="usage-chart usage-chart-wide"' in page and 'role="img"' in page
    assert '<svg class="usage-chart usage-chart-narrow"' in page
    models = tables(response)["Usage per model"]
    assert models[0] == [
        "Model",
        "Provider",
        "Source",
        "Requests",
        "Failed",
        "Prompt tokens",
        "Completion tokens",
        "Total tokens",
        "Cost",
        "Currency",
        "Requests without a price",
    ]
    assert models[1:] == [
        ["gpt-4o-mini", "default", "Browser", "3", "1", "320", "80", "400", "0.000096", "USD", "0"],
        ["gpt-4o", "default", "Browser", "1", "0", "10", "5", "15", "no price", "", "1"],
    ]


def test_my_usage_defaults_to_this_month(client, alice):
    conversation = chat_services.conversation_create(owner=alice, model="gpt-4o-mini")
    completion(conversation, on=timezone.now(), prompt=7, reply=3)
    completion(conversation, on=timezone.now() - timedelta(days=40), prompt=500, reply=500)
    client.force_login(alice)
    response = client.get(reverse("usage_mine"))
    start, end = reports.default_range()
    assert response.context["start"] == start and response.context["end"] == end
    assert '<dd data-total="total_tokens">10</dd>' in response.content.decode()


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"start": "2025-06-30", "end": "2025-06-01"}, "end", "must not be before the start"),
        ({"start": "2024-01-01", "end": "2025-06-01"}, "end", "at most 366 days"),
        ({"start": "June the first", "end": "2025-06-01"}, "start", "Enter a valid date"),
    ],
)
def test_a_bad_range_is_explained_beside_the_field(client, alice, query, field, message):
    client.force_login(alice)
    response = client.get(reverse("usage_mine"), query)
    assert response.status_code == 200
    page = response.content.decode()
    assert f'<p class="field-error" id="id_{field}_error" role="alert">' in page
    assert message in page
    assert response.context["form"].errors[field]
    # What was typed stays in the field.
    assert f'value="{query[field]}"' in page
    csv_response = client.get(reverse("usage_mine_csv"), query)
    assert csv_response.status_code == 400
    assert message in csv_response.content.decode()


@pytest.mark.parametrize(
    ("group", "caption"), [("day", "Usage per day"), ("model", "Usage per model")]
)
def test_my_csv_rows_are_the_page_table_rows(client, alice, usage, group, caption):
    client.force_login(alice)
    page = tables(client.get(reverse("usage_mine"), RANGE))[caption]
    response = client.get(reverse("usage_mine_csv"), {**RANGE, "group": group})
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    assert csv_rows(response) == page
    assert len(page) == (1 + 30 if group == "day" else 1 + 2)


def test_csv_costs_are_exact_decimal_strings(client, bob, usage):
    client.force_login(bob)
    rows = csv_rows(client.get(reverse("usage_mine_csv"), {**RANGE, "group": "model"}))
    assert rows[1] == [
        "gpt-4o-mini", "default", "Browser", "1", "0", "9000", "7777", "16777", "1.2345", "USD",
        "0",
    ]  # fmt: skip


def test_it_never_shows_another_users_numbers(client, alice, bob, charlie, usage):
    client.force_login(charlie)
    response = client.get(reverse("usage_mine"), RANGE)
    assert '<dd data-total="requests">0</dd>' in response.content.decode()
    rows = csv_rows(client.get(reverse("usage_mine_csv"), {**RANGE, "group": "model"}))
    assert rows[1:] == []
    # Even asking for someone else by id in the query string changes nothing.
    response = client.get(reverse("usage_mine"), {**RANGE, "user": alice.pk, "user_id": alice.pk})
    assert '<dd data-total="requests">0</dd>' in response.content.decode()
    client.force_login(bob)
    assert "9,000" in client.get(reverse("usage_mine"), RANGE).content.decode()
    assert "gpt-4o<" not in client.get(reverse("usage_mine"), RANGE).content.decode()


@pytest.mark.parametrize(
    "url",
    [
        lambda alice: reverse("usage_all"),
        lambda alice: reverse("usage_all_csv"),
        lambda alice: reverse("usage_user", args=[alice.pk]),
    ],
)
def test_staff_pages_do_not_exist_for_other_users(client, alice, bob, usage, url):
    client.force_login(bob)
    assert client.get(url(alice), RANGE).status_code == 404


def test_staff_see_one_row_per_user(client, charlie, usage):
    client.force_login(charlie)
    response = client.get(reverse("usage_all"), RANGE)
    assert response.status_code == 200
    table = tables(response)["Usage per user"]
    assert table[0][0] == "User"
    assert table[1:] == [
        ["bob", "Browser", "1", "0", "9,000", "7,777", "16,777", "1.2345", "USD", "0"],
        ["alice", "Browser", "4", "1", "330", "85", "415", "0.000096", "USD", "1"],
    ]
    page = response.content.decode()
    assert '<dd data-total="requests">5</dd>' in page
    assert '<dd data-total="cost">1.234596 USD</dd>' in page


def test_staff_can_sort_by_any_column_and_nothing_else(client, charlie, usage):
    client.force_login(charlie)

    def first_column(**query) -> list[str]:
        response = client.get(reverse("usage_all"), {**RANGE, **query})
        return [row[0] for row in tables(response)["Usage per user"][1:]]

    assert first_column(order="username") == ["alice", "bob"]
    assert first_column(order="-username") == ["bob", "alice"]
    assert first_column(order="-failed") == ["alice", "bob"]
    assert first_column(order="cost") == ["alice", "bob"]
    assert first_column(order="id; drop table auth_user") == ["bob", "alice"]
    # The sorted column says so, and its link flips the direction.
    response = client.get(reverse("usage_all"), {**RANGE, "order": "-requests"})
    page = response.content.decode()
    assert 'aria-sort="descending"' in page
    assert "order=requests" in page


def test_staff_can_split_rows_by_model(client, charlie, usage):
    client.force_login(charlie)
    response = client.get(reverse("usage_all"), {**RANGE, "by": "model", "order": "username"})
    table = tables(response)["Usage per user"]
    assert table[0][:2] == ["User", "Model"]
    assert [row[:2] for row in table[1:]] == [
        ["alice", "gpt-4o"],
        ["alice", "gpt-4o-mini"],
        ["bob", "gpt-4o-mini"],
    ]
    assert table[1][9] == "no price"


@pytest.mark.parametrize("query", [{}, {"by": "model"}, {"order": "username"}])
def test_staff_csv_rows_are_the_page_table_rows(client, charlie, usage, query):
    client.force_login(charlie)
    page = tables(client.get(reverse("usage_all"), {**RANGE, **query}))["Usage per user"]
    rows = csv_rows(client.get(reverse("usage_all_csv"), {**RANGE, **query}))
    # The same cells, but for the page's thousands separators (a spreadsheet reads plain
    # figures as numbers).
    assert rows == [[_ungrouped(cell) for cell in row] for row in page]


def _ungrouped(cell: str) -> str:
    plain = cell.replace(",", "")
    return plain if plain.isdigit() else cell


def test_staff_drill_down_to_a_users_days_and_models(client, charlie, alice, usage):
    client.force_login(charlie)
    response = client.get(reverse("usage_user", args=[alice.pk]), RANGE)
    assert response.status_code == 200
    found = tables(response)
    days = {row[0]: row for row in found["Usage per day"][1:]}
    assert days["2025-06-02"][1:6] == ["1", "0", "120", "30", "150"]
    assert days["2025-06-05"][1:6] == ["3", "1", "210", "55", "265"]
    assert [row[0] for row in found["Usage per model"][1:]] == ["gpt-4o-mini", "gpt-4o"]
    assert "Usage of alice" in response.content.decode()
    # The all-users page links each name to this page, keeping the range.
    listing = client.get(reverse("usage_all"), RANGE).content.decode()
    assert f'href="{reverse("usage_user", args=[alice.pk])}?start=2025-06-01' in listing


def test_drill_down_of_an_unknown_user_is_404(client, charlie):
    client.force_login(charlie)
    assert client.get(reverse("usage_user", args=[999_999])).status_code == 404


def test_my_usage_shows_this_months_budget(client, alice, settings):
    settings.BUDGET_MONTHLY_TOKENS = 10_000
    UserBudget.objects.create(user=alice, monthly_cost_limit=Decimal("2.5"))
    ModelPrice.objects.create(
        model="gpt-4o-mini",
        prompt_price_per_million=Decimal(1),
        completion_price_per_million=Decimal(1),
        valid_from=timezone.now() - timedelta(days=1),
    )
    client.force_login(alice)
    page = client.get(reverse("usage_mine")).content.decode()
    assert "0 of 10000 tokens used or reserved" in page
    assert "of 2.5000 cost used or reserved" in page
    assert page.count("<meter") == 2


def test_without_limits_no_budget_is_shown(client, alice):
    client.force_login(alice)
    assert "<meter" not in client.get(reverse("usage_mine")).content.decode()


def test_usage_pages_use_few_queries(client, alice, charlie, usage, django_assert_max_num_queries):
    client.force_login(alice)
    with django_assert_max_num_queries(12):
        client.get(reverse("usage_mine"), RANGE)
    client.force_login(charlie)
    with django_assert_max_num_queries(8):
        client.get(reverse("usage_all"), RANGE)


def test_staff_csv_keeps_a_formula_like_name_from_running(client, charlie):
    sly = User.objects.create_user("+sly", password="sly-password-1")
    conversation = chat_services.conversation_create(owner=sly, model="gpt-4o-mini")
    completion(conversation, on=at(DAY1), prompt=1, reply=1)
    client.force_login(charlie)
    rows = csv_rows(client.get(reverse("usage_all_csv"), RANGE))
    assert rows[1][0] == "'+sly"


def test_the_pages_work_in_simplified_chinese(client, alice, usage):
    client.force_login(alice)
    response = client.get(reverse("usage_mine"), RANGE, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 200
    assert response.context["start"] == date(2025, 6, 1)
    assert 'value="2025-06-01"' in response.content.decode()


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_counts_are_grouped_by_thousands_on_the_page_and_plain_in_csv(client, bob, usage, language):
    client.force_login(bob)
    page = client.get(reverse("usage_mine"), RANGE, HTTP_ACCEPT_LANGUAGE=language)
    text = page.content.decode()
    assert '<dd data-total="prompt_tokens">9,000</dd>' in text
    assert '<dd data-total="total_tokens">16,777</dd>' in text
    per_model = tables(page)[next(c for c in tables(page) if "model" in c.lower() or "模型" in c)]
    assert per_model[1][5:8] == ["9,000", "7,777", "16,777"]
    assert "16,777" in text.split("<svg", 1)[1]  # the chart's tooltip and summary
    rows = csv_rows(client.get(reverse("usage_mine_csv"), {**RANGE, "group": "model"}))
    assert rows[1][5:8] == ["9000", "7777", "16777"]
