"""Usage per group: a group's report is its current members' usage, seen by staff and by
the group's managers, who see its members but never their chats (nor the admin)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, reverse

from conversations.chat import urls as chat_urls
from conversations.chat.services import conversations as chat_services
from conversations.models import Completion, GroupManager, UsageDay
from conversations.portability import urls as portability_urls
from conversations.sharing import urls as sharing_urls
from conversations.sharing.services import share_link_create
from conversations.usage import reports
from tests.factories import csv_rows, make_conversation
from tests.usage.test_views import DAY1, DAY2, RANGE, at, completion, tables

FIGURES = ("requests", "failed", "prompt_tokens", "completion_tokens", "total_tokens", "cost")


@pytest.fixture
def dora(db) -> User:
    return User.objects.create_user("dora", password="dora-password-1")


@pytest.fixture
def erin(db) -> User:
    return User.objects.create_user("erin", password="erin-password-1")


@pytest.fixture
def mia(db) -> User:
    """Manages the Lab group; not staff, not a member."""
    return User.objects.create_user("mia", password="mia-password-1")


@pytest.fixture
def lab(alice, bob, mia) -> Group:
    group = Group.objects.create(name="Lab")
    group.user_set.add(alice, bob)
    GroupManager.objects.create(group=group, user=mia)
    return group


@pytest.fixture
def ops(bob, dora) -> Group:
    group = Group.objects.create(name="Ops")
    group.user_set.add(bob, dora)
    return group


@pytest.fixture
def usage(alice, bob, dora, erin, lab, ops):
    """alice (Lab): a priced call on DAY1, an unpriced one on DAY2; bob (Lab and Ops): a big
    priced call on DAY1, a failed one on DAY2 and a removed one on DAY2 (folded into a
    daily row); dora (Ops): an unpriced call on DAY2; erin (no group): a huge call."""
    mini = chat_services.conversation_create(owner=alice, model="gpt-4o-mini")
    big = chat_services.conversation_create(owner=alice, model="gpt-4o")
    completion(mini, on=at(DAY1), prompt=120, reply=30, cost=Decimal("0.00003600"))
    completion(big, on=at(DAY2), prompt=10, reply=5)
    bobs = chat_services.conversation_create(owner=bob, model="gpt-4o-mini")
    completion(bobs, on=at(DAY1), prompt=9000, reply=7777, cost=Decimal("1.23450000"))
    Completion.objects.create(
        conversation=bobs,
        user=bob,
        model="gpt-4o-mini",
        status=Completion.Status.FAILED,
        queued_at=at(DAY2),
    )
    gone = chat_services.conversation_create(owner=bob, model="gpt-4o-mini")
    completion(gone, on=at(DAY2), prompt=100, reply=50, cost=Decimal("0.00010000"))
    chat_services.conversation_delete(conversation=gone)
    assert UsageDay.objects.filter(user=bob, day=DAY2).exists()
    doras = chat_services.conversation_create(owner=dora, model="gpt-4o")
    completion(doras, on=at(DAY2), prompt=7, reply=3)
    erins = chat_services.conversation_create(owner=erin, model="gpt-4o-mini")
    completion(erins, on=at(DAY1), prompt=5000, reply=5000, cost=Decimal("9"))


def figures(row: dict) -> tuple:
    return tuple(row[name] for name in FIGURES)


def added(*rows: dict) -> tuple:
    """Rows' figures added up, as a report adds them (cost None when no row has a price)."""
    costs = [row["cost"] for row in rows if row["cost"] is not None]
    return (
        *(sum(row[name] for row in rows) for name in FIGURES[:-1]),
        sum(costs, Decimal(0)) if costs else None,
    )


START, END = DAY1.replace(day=1), DAY1.replace(day=30)


# --- The figures ---


def test_a_groups_totals_are_the_sum_of_its_members_reports(usage, alice, bob, dora, lab, ops):
    lab_total = reports.group_summary(lab.pk, START, END)
    members = [reports.user_summary(user.pk, START, END) for user in (alice, bob)]
    assert figures(lab_total) == added(*members)
    assert figures(lab_total) == (5, 1, 9230, 7862, 17092, Decimal("1.23463600"))
    assert lab_total["unpriced"] == 1
    # bob is in both groups: he counts in each; erin, in none, counts in neither.
    ops_total = reports.group_summary(ops.pk, START, END)
    assert figures(ops_total) == added(
        *(reports.user_summary(u.pk, START, END) for u in (bob, dora))
    )
    assert figures(ops_total)[:5] == (4, 1, 9107, 7830, 16937)


def test_a_groups_days_and_models_are_the_sum_of_its_members(usage, alice, bob, lab):
    days = reports.per_day(None, START, END, group_id=lab.pk)
    alices, bobs = (reports.per_day(user.pk, START, END) for user in (alice, bob))
    assert [figures(row)[:5] for row in days] == [
        added(a, b)[:5] for a, b in zip(alices, bobs, strict=True)
    ]
    by_day = {row["day"]: row for row in days}
    assert figures(by_day[DAY1]) == (2, 0, 9120, 7807, 16927, Decimal("1.23453600"))
    assert figures(by_day[DAY2])[:5] == (3, 1, 110, 55, 165)

    models = {
        row["model"]: figures(row) for row in reports.per_model(None, START, END, group_id=lab.pk)
    }
    assert models == {
        "gpt-4o-mini": (4, 1, 9220, 7857, 17077, Decimal("1.23463600")),
        "gpt-4o": (1, 0, 10, 5, 15, None),
    }


def test_per_group_gives_every_group_in_one_go(usage, lab, ops, django_assert_num_queries):
    empty = Group.objects.create(name="Empty")
    with django_assert_num_queries(2):
        rows = reports.per_group(START, END, [lab.pk, ops.pk, empty.pk])
    assert figures(rows[lab.pk]) == figures(reports.group_summary(lab.pk, START, END))
    assert figures(rows[ops.pk]) == figures(reports.group_summary(ops.pk, START, END))
    assert figures(rows[empty.pk]) == (0, 0, 0, 0, 0, Decimal(0))


def test_a_member_who_leaves_takes_their_usage_along(usage, alice, bob, lab):
    lab.user_set.remove(bob)
    assert figures(reports.group_summary(lab.pk, START, END)) == figures(
        reports.user_summary(alice.pk, START, END)
    )


# --- The pages ---


def test_a_manager_sees_their_groups_report_and_members(client, mia, alice, usage, lab):
    client.force_login(mia)
    response = client.get(reverse("usage_group", args=[lab.pk]), RANGE)
    assert response.status_code == 200
    page = response.content.decode()
    assert '<dd data-total="requests">5</dd>' in page
    assert '<dd data-total="total_tokens">17,092</dd>' in page
    assert '<dd data-total="cost">1.234636 USD</dd>' in page
    found = tables(response)
    assert found["Usage per member"][1:] == [
        ["alice", "2", "0", "130", "35", "165", "0.000036", "USD", "1"],
        ["bob", "3", "1", "9,100", "7,827", "16,927", "1.2346", "USD", "0"],
    ]
    days = {row[0]: row for row in found["Usage per day"][1:]}
    assert days["2025-06-05"][1:6] == ["3", "1", "110", "55", "165"]
    assert [row[0] for row in found["Usage per model"][1:]] == ["gpt-4o-mini", "gpt-4o"]
    # Plain names: a manager has no drill-down into a person's own report, nor their chats.
    assert reverse("usage_user", args=[alice.pk]) not in page
    assert "/c/" not in page
    assert "erin" not in page and "dora" not in page


def test_staff_see_every_group_and_the_drill_down_links(client, charlie, alice, usage, lab, ops):
    client.force_login(charlie)
    response = client.get(reverse("usage_groups"), RANGE)
    assert response.status_code == 200
    rows = tables(response)["Usage per group"]
    assert rows[0][:2] == ["Group", "Members"]
    assert [row[:7] for row in rows[1:]] == [
        ["Lab", "2", "5", "1", "9,230", "7,862", "17,092"],
        ["Ops", "2", "4", "1", "9,107", "7,830", "16,937"],
        ["Reviewer", "0", "0", "0", "0", "0", "0"],  # made by a migration
    ]
    page = response.content.decode()
    assert f'href="{reverse("usage_group", args=[lab.pk])}?start=2025-06-01' in page
    # The all-users page and this one are two tabs of the staff's report.
    assert f'href="{reverse("usage_all")}?start=2025-06-01' in page
    listing = client.get(reverse("usage_all"), RANGE).content.decode()
    assert f'href="{reverse("usage_groups")}?start=2025-06-01' in listing
    assert "Usage per user" in listing  # the per-user view is still there

    group_page = client.get(reverse("usage_group", args=[ops.pk]), RANGE).content.decode()
    assert f'href="{reverse("usage_user", args=[alice.pk])}' not in group_page  # not in Ops
    lab_page = client.get(reverse("usage_group", args=[lab.pk]), RANGE).content.decode()
    assert f'href="{reverse("usage_user", args=[alice.pk])}?start=2025-06-01' in lab_page


def test_a_manager_lists_only_the_groups_they_manage(client, mia, usage, lab, ops):
    client.force_login(mia)
    response = client.get(reverse("usage_groups"), RANGE)
    assert response.status_code == 200
    assert [row[0] for row in tables(response)["Usage per group"][1:]] == ["Lab"]
    assert "Ops" not in response.content.decode()
    # No staff tab to the all-users report.
    assert reverse("usage_all") not in response.content.decode()
    rows = csv_rows(client.get(reverse("usage_groups_csv"), RANGE))
    assert [row[0] for row in rows] == ["Group", "Lab"]


@pytest.mark.parametrize(
    "url",
    [
        lambda ops, alice: reverse("usage_group", args=[ops.pk]),
        lambda ops, alice: reverse("usage_group_csv", args=[ops.pk]),
        lambda ops, alice: reverse("usage_group", args=[999_999]),
        lambda ops, alice: reverse("usage_all"),
        lambda ops, alice: reverse("usage_all_csv"),
        lambda ops, alice: reverse("usage_user", args=[alice.pk]),
    ],
)
def test_a_manager_gets_404_beyond_their_groups(client, mia, alice, usage, ops, url):
    client.force_login(mia)
    assert client.get(url(ops, alice), RANGE).status_code == 404


@pytest.mark.parametrize("name", ["usage_groups", "usage_groups_csv"])
def test_group_usage_does_not_exist_for_someone_who_manages_no_group(client, erin, lab, name):
    client.force_login(erin)
    assert client.get(reverse(name), RANGE).status_code == 404
    assert client.get(reverse("usage_group", args=[lab.pk]), RANGE).status_code == 404


def test_members_see_nothing_of_their_groups_usage(client, alice, usage, lab):
    client.force_login(alice)
    assert client.get(reverse("usage_group", args=[lab.pk]), RANGE).status_code == 404
    assert client.get(reverse("usage_group_csv", args=[lab.pk]), RANGE).status_code == 404


def test_group_pages_require_login(client, lab):
    for url in (
        reverse("usage_groups"),
        reverse("usage_groups_csv"),
        reverse("usage_group", args=[lab.pk]),
        reverse("usage_group_csv", args=[lab.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_the_header_links_group_usage_for_managers_and_staff(client, mia, erin, charlie, lab):
    link = f'href="{reverse("usage_groups")}"'
    client.force_login(mia)
    assert link in client.get(reverse("usage_mine")).content.decode()
    client.force_login(charlie)
    assert link in client.get(reverse("usage_mine")).content.decode()
    assert link in client.get(reverse("chat_home")).content.decode()
    client.force_login(erin)
    assert link not in client.get(reverse("usage_mine")).content.decode()


@pytest.mark.parametrize(
    ("group", "caption"),
    [("day", "Usage per day"), ("model", "Usage per model"), ("member", "Usage per member")],
)
def test_a_groups_csv_rows_are_the_page_table_rows(client, mia, usage, lab, group, caption):
    client.force_login(mia)
    page = tables(client.get(reverse("usage_group", args=[lab.pk]), RANGE))[caption]
    response = client.get(reverse("usage_group_csv", args=[lab.pk]), {**RANGE, "group": group})
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    assert csv_rows(response) == [[_ungrouped(cell) for cell in row] for row in page]


def test_the_groups_csv_rows_are_the_page_table_rows(client, charlie, usage, lab, ops):
    client.force_login(charlie)
    page = tables(client.get(reverse("usage_groups"), RANGE))["Usage per group"]
    rows = csv_rows(client.get(reverse("usage_groups_csv"), RANGE))
    assert rows == [[_ungrouped(cell) for cell in row] for row in page]


def _ungrouped(cell: str) -> str:
    plain = cell.replace(",", "")
    return plain if plain.isdigit() else cell


def test_empty_states(client, charlie, mia, lab):
    client.force_login(charlie)
    assert "No groups yet." not in client.get(reverse("usage_groups")).content.decode()
    Group.objects.all().delete()
    assert "No groups yet." in client.get(reverse("usage_groups")).content.decode()
    empty = Group.objects.create(name="Empty")
    page = client.get(reverse("usage_group", args=[empty.pk])).content.decode()
    assert "No usage in this range." in page
    assert "This group has no members yet." in page


def test_a_long_member_list_is_paged(client, mia, lab):
    lab.user_set.add(*User.objects.bulk_create(User(username=f"m{n:03}") for n in range(60)))
    client.force_login(mia)
    response = client.get(reverse("usage_group", args=[lab.pk]), RANGE)
    members = tables(response)["Usage per member"][1:]
    assert len(members) == 50 and members[0][0] == "alice"
    page = response.content.decode()
    assert "Members 1 to 50 of 62" in page
    assert "page=2#members-heading" in page
    second = client.get(reverse("usage_group", args=[lab.pk]), {**RANGE, "page": 2})
    assert [row[0] for row in tables(second)["Usage per member"][1:]][-1] == "m059"
    csv = csv_rows(
        client.get(reverse("usage_group_csv", args=[lab.pk]), {**RANGE, "group": "member"})
    )
    assert len(csv) == 1 + 62


# --- Bounded queries ---


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, RANGE).status_code == 200
    return len(captured)


def more_of_everything(lab: Group, count: int) -> None:
    """`count` more groups, and `count` more members of Lab, each with a call."""
    for n in range(count):
        person = User.objects.create_user(f"extra{n}")
        Group.objects.create(name=f"Extra {n}").user_set.add(person)
        lab.user_set.add(person)
        chat = chat_services.conversation_create(owner=person, model="gpt-4o-mini")
        completion(chat, on=at(DAY1), prompt=1, reply=1, cost=Decimal("0.00000100"))


def test_group_pages_queries_do_not_grow_with_groups_or_members(client, charlie, mia, usage, lab):
    client.force_login(charlie)
    before = [queries(client, reverse(n, args=a)) for n, a in _pages_of(lab)]
    client.force_login(mia)
    before_manager = [queries(client, reverse(n, args=a)) for n, a in _pages_of(lab)]
    more_of_everything(lab, 8)
    GroupManager.objects.bulk_create(
        GroupManager(group=group, user=mia) for group in Group.objects.exclude(pk=lab.pk)
    )
    assert [queries(client, reverse(n, args=a)) for n, a in _pages_of(lab)] == before_manager
    client.force_login(charlie)
    assert [queries(client, reverse(n, args=a)) for n, a in _pages_of(lab)] == before
    assert before[0] <= 7 and before[1] <= 14, before


def _pages_of(lab: Group) -> list[tuple[str, list]]:
    return [("usage_groups", []), ("usage_group", [lab.pk])]


# --- Managers never reach their members' chats ---


def _conversation_urls(conversation, message, completion, link) -> list[str]:
    """Every URL of the chat, export and share pages that names a conversation (or a link)."""
    values = {"pk": conversation.pk, "mid": message.pk, "cid": completion.pk}
    values |= {"link_id": link.pk}
    urls = []
    for module in (chat_urls, portability_urls, sharing_urls):
        for pattern in module.urlpatterns:
            assert isinstance(pattern, URLPattern)
            names = set(pattern.pattern.converters)
            if names and names <= set(values):
                urls.append(reverse(pattern.name, kwargs={n: values[n] for n in names}))
    return urls


def test_a_manager_gets_404_on_every_url_of_a_members_conversation(client, alice, mia, lab):
    conversation = make_conversation(alice, ("alice's secret plan", "noted"))
    message = conversation.messages.order_by("position").last()
    completion = Completion.objects.get(conversation=conversation)
    link = share_link_create(owner=alice, conversation=conversation)
    urls = _conversation_urls(conversation, message, completion, link)
    assert len(urls) >= 20  # the chat pages, the export and the share pages
    client.force_login(mia)
    for url in urls:
        answers = {client.get(url).status_code, client.post(url).status_code}
        # 405 where the view takes only the other method: it never reaches the chat.
        assert 404 in answers and answers <= {404, 405}, (url, answers)
    conversation.refresh_from_db()
    assert conversation.messages.count() == 2
    link.refresh_from_db()
    assert link.is_live


def test_a_manager_gets_404_on_the_admin(client, alice, mia, lab):
    conversation = make_conversation(alice, ("alice's secret plan", "noted"))
    urls = [
        reverse("admin:index"),
        reverse("admin:conversations_conversation_changelist"),
        # The staff transcript of a conversation is its change page.
        reverse("admin:conversations_conversation_change", args=[conversation.pk]),
        reverse("admin:conversations_conversation_history", args=[conversation.pk]),
        reverse("admin:auth_user_changelist") + f"?groups__id__exact={lab.pk}",
        reverse("admin:auth_group_change", args=[lab.pk]),
        reverse("admin:app_list", args=["conversations"]),
        reverse("admin:autocomplete"),
        reverse("admin:jsi18n"),
        reverse("admin:password_change"),
        "/admin/no/such/page/",
    ]
    client.force_login(mia)
    for url in urls:
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 404, url
            assert b"alice's secret plan" not in response.content
    # Log-in is still there (to log in as someone else).
    assert client.get(reverse("admin:login")).status_code == 200


def test_every_admin_model_page_is_404_for_a_logged_in_non_staff_user(client, mia, lab):
    client.force_login(mia)
    for model in admin.site._registry:
        info = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        for url in (reverse(f"{info}_changelist"), reverse(f"{info}_add")):
            assert client.get(url).status_code == 404, url


def test_the_admin_still_sends_anonymous_people_to_log_in_and_lets_staff_in(client, charlie):
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    client.force_login(charlie)
    assert client.get(reverse("admin:index")).status_code == 200
