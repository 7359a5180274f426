"""Admin review of conversations: roles, search, read-only content, flags and notes,
exports, the audit trail and constant query counts on the list pages."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.api import services as api_services
from conversations.chat.services import conversations as chat_services
from conversations.chat.services import versions as chat_versions
from conversations.models import (
    ApiKey,
    AuditEvent,
    Completion,
    Conversation,
    GroupBudget,
    Invitation,
    Message,
    ModelPrice,
    PendingAccount,
    ShareLink,
    SiteSettings,
    UserBudget,
)
from conversations.providers.models import ModelAccess, Provider, ProviderModel
from conversations.review import exports
from conversations.review import selectors as review_selectors
from conversations.review import services as review_services
from tests.factories import make_conversation


def changelist(model) -> str:
    return reverse(f"admin:conversations_{model._meta.model_name}_changelist")


def change_url(obj) -> str:
    return reverse(f"admin:conversations_{obj._meta.model_name}_change", args=[obj.pk])


def results(response) -> list:
    return list(response.context["cl"].result_list)


# --- Roles ---


def test_migration_creates_the_reviewer_group_with_view_and_review_permissions(db):
    group = Group.objects.get(name=review_selectors.REVIEWER_GROUP)
    codenames = set(group.permissions.values_list("codename", flat=True))
    assert codenames == {
        "view_conversation",
        "review_conversation",
        "view_message",
        "view_completion",
        "view_modelprice",
    }


def test_a_plain_user_gets_404_on_every_admin_url(client, alice, bob):
    conversation = make_conversation(alice, ("hi", "hello"))
    message = conversation.messages.first()
    completion = conversation.completions.first()
    price = ModelPrice.objects.create(
        model="gpt-4o-mini", prompt_price_per_million=1, completion_price_per_million=2
    )
    budget = UserBudget.objects.create(user=bob, monthly_token_limit=100)
    event = review_services.audit_record(
        actor=alice, action="view_transcript", conversation_ids=[1]
    )
    objects = {
        Conversation: conversation,
        Message: message,
        Completion: completion,
        ModelPrice: price,
        UserBudget: budget,
        GroupBudget: GroupBudget.objects.create(
            group=Group.objects.get(name=review_selectors.REVIEWER_GROUP), monthly_token_limit=9
        ),
        AuditEvent: event,
        User: alice,
        Group: Group.objects.get(name=review_selectors.REVIEWER_GROUP),
        SiteSettings: SiteSettings.objects.get_or_create(pk=1)[0],
        Invitation: Invitation.objects.create(note="for dora"),
        PendingAccount: PendingAccount.objects.create(user=bob),
        ApiKey: api_services.api_key_create(user=bob, name="bob's")[0],
        ShareLink: ShareLink.objects.create(conversation=conversation, owner=alice, leaf=message),
    }
    lab = Provider.objects.create(name="Lab", base_url="http://vllm:8000/v1")
    objects |= {
        ModelAccess: ModelAccess.objects.create(name="Lab only", model_keys=["gpt-4o"]),
        Provider: lab,
        ProviderModel: ProviderModel.objects.create(provider=lab, model_id="m"),
    }
    urls = [
        reverse("admin:index"),
        reverse("admin:password_change"),
        reverse("admin:password_change_done"),
        reverse("admin:autocomplete"),
        reverse("admin:jsi18n"),
    ]
    for model in admin.site._registry:
        info = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        pk = objects[model].pk
        urls += [
            reverse("admin:app_list", args=[model._meta.app_label]),
            reverse(f"{info}_changelist"),
            reverse(f"{info}_add"),
            reverse(f"{info}_change", args=[pk]),
            reverse(f"{info}_delete", args=[pk]),
            reverse(f"{info}_history", args=[pk]),
        ]
    client.force_login(alice)
    for url in urls:
        for method in (client.get, client.post):
            response = method(url)
            # Not even sent to the admin's log-in: for a person who is logged in and not
            # staff (a group manager, say), the admin does not exist.
            assert response.status_code == 404, url
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    assert not AuditEvent.objects.exclude(pk=event.pk).exists()


def test_staff_without_the_reviewer_group_sees_no_conversations(client, alice, charlie):
    conversation = make_conversation(alice, ("secret plans", "noted"))
    client.force_login(charlie)
    assert client.get(changelist(Conversation)).status_code == 403
    assert client.get(change_url(conversation)).status_code == 403
    assert not AuditEvent.objects.exists()


def test_a_reviewer_cannot_change_users_prices_or_budgets(client, reviewer, alice):
    price = ModelPrice.objects.create(
        model="gpt-4o-mini", prompt_price_per_million=1, completion_price_per_million=2
    )
    client.force_login(reviewer)
    assert client.get(reverse("admin:auth_user_changelist")).status_code == 403
    assert client.get(reverse("admin:auth_user_change", args=[alice.pk])).status_code == 403
    assert client.get(reverse("admin:conversations_userbudget_changelist")).status_code == 403
    assert client.get(reverse("admin:conversations_modelprice_add")).status_code == 403
    # Prices are readable, not editable.
    assert client.get(change_url(price)).status_code == 200
    response = client.post(
        change_url(price),
        {
            "model": "gpt-4o-mini",
            "prompt_price_per_million": "0",
            "completion_price_per_million": "0",
            "currency": "USD",
            "valid_from_0": "2020-01-01",
            "valid_from_1": "00:00:00",
        },
    )
    assert response.status_code == 403
    price.refresh_from_db()
    assert price.prompt_price_per_million == 1
    # Audit events are for superusers only.
    assert client.get(changelist(AuditEvent)).status_code == 403


def test_nobody_adds_conversations_and_only_superusers_delete(client, reviewer, superuser, alice):
    conversation = make_conversation(alice, ("hi", "hello"))
    client.force_login(reviewer)
    assert client.get(reverse("admin:conversations_conversation_add")).status_code == 403
    delete = reverse("admin:conversations_conversation_delete", args=[conversation.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert Conversation.objects.filter(pk=conversation.pk).exists()

    client.force_login(superuser)
    assert client.get(reverse("admin:conversations_conversation_add")).status_code == 403
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


# --- Search and filters ---


def test_a_reviewer_finds_the_one_conversation_whose_message_has_the_phrase(
    client, reviewer, alice, bob
):
    wanted = make_conversation(
        alice, ("where did I leave the turquoise umbrella yesterday", "In the hall.")
    )
    make_conversation(bob, ("a turquoise scarf and an umbrella", "Nice."))
    make_conversation(alice, ("something else entirely", "Sure."))
    client.force_login(reviewer)
    for query in ("turquoise umbrella yesterday", '"the turquoise umbrella"'):
        response = client.get(changelist(Conversation), {"q": query})
        assert response.status_code == 200
        assert results(response) == [wanted], query


def test_search_lists_a_conversation_once_however_many_messages_match(client, reviewer, alice):
    conversation = make_conversation(alice, ("kiwi one", "kiwi two"), ("kiwi three", "kiwi"))
    client.force_login(reviewer)
    response = client.get(changelist(Conversation), {"q": "kiwi"})
    assert results(response) == [conversation]
    assert response.context["cl"].result_count == 1


def test_search_matches_titles_and_usernames(client, reviewer, alice, bob):
    titled = make_conversation(alice, ("x", "y"), title="Quarterly numbers")
    bobs = make_conversation(bob, ("x", "y"))
    client.force_login(reviewer)
    assert results(client.get(changelist(Conversation), {"q": "quarterly"})) == [titled]
    assert results(client.get(changelist(Conversation), {"q": "bob"})) == [bobs]


def test_completions_are_found_by_the_request_id_in_the_logs(client, reviewer, alice):
    make_conversation(alice, ("a", "b"), ("c", "d"))
    traced = Completion.objects.order_by("pk").last()
    Completion.objects.filter(pk=traced.pk).update(request_id="9f2c4e0d1a")
    client.force_login(reviewer)
    response = client.get(changelist(Completion), {"q": "9f2c4e0d1a"})
    assert results(response) == [traced]
    page = client.get(reverse("admin:conversations_completion_change", args=[traced.pk]))
    assert "9f2c4e0d1a" in page.content.decode()


def test_the_list_shows_counts_tokens_and_cost_without_multiplying_rows(client, reviewer, alice):
    conversation = make_conversation(alice, ("a", "b"), ("c", "d"), failed="upstream down")
    client.force_login(reviewer)
    response = client.get(changelist(Conversation))
    [row] = results(response)
    assert row == conversation
    # 5 messages (2 turns + the unanswered one), 2 × 15 tokens, 2 × 0.001 USD.
    assert row.message_count == 5
    assert row.total_tokens == 30
    assert row.total_cost == Decimal("0.002")
    assert review_selectors.cost_label(row) == "0.002 USD"
    assert "0.002 USD" in response.content.decode()


def test_the_failed_completions_filter(client, reviewer, alice):
    failing = make_conversation(alice, ("a", "b"), failed="HTTP 500")
    fine = make_conversation(alice, ("c", "d"))
    client.force_login(reviewer)
    assert results(client.get(changelist(Conversation), {"failed": "yes"})) == [failing]
    assert results(client.get(changelist(Conversation), {"failed": "no"})) == [fine]


def test_flagged_conversations_are_found_with_the_flagged_filter(client, reviewer, alice):
    flagged = make_conversation(alice, ("a", "b"))
    make_conversation(alice, ("c", "d"))
    review_services.conversation_review(
        conversation=flagged, reviewer=reviewer, flagged=True, note=""
    )
    client.force_login(reviewer)
    assert results(client.get(changelist(Conversation), {"flagged__exact": "1"})) == [flagged]


def test_an_untitled_conversation_lists_opens_and_exports(client, reviewer, alice):
    # A conversation gets its title from its first message; until then it has none.
    conversation = Conversation.objects.create(owner=alice, model="gpt-4o-mini")
    client.force_login(reviewer)
    assert "New chat" in client.get(changelist(Conversation)).content.decode()
    assert client.get(change_url(conversation)).status_code == 200
    response = client.post(
        changelist(Conversation),
        {"action": "export_markdown", "_selected_action": [conversation.pk]},
    )
    assert response.content.decode().startswith(f"# New chat (#{conversation.pk})")


# --- Read-only content, flag and note ---


def test_a_reviewer_cannot_change_a_message(client, reviewer, alice):
    conversation = make_conversation(alice, ("original words", "reply"))
    message = conversation.messages.get(role="user")
    client.force_login(reviewer)
    page = client.get(change_url(message))
    assert page.status_code == 200
    assert not page.context["has_change_permission"]
    assert 'name="content"' not in page.content.decode()
    response = client.post(
        change_url(message), {"content": "rewritten", "role": "user", "position": 0}
    )
    assert response.status_code == 403
    message.refresh_from_db()
    assert message.content == "original words"


def test_a_reviewer_cannot_change_a_completion(client, reviewer, alice):
    completion = make_conversation(alice, ("a", "b")).completions.get()
    client.force_login(reviewer)
    assert client.post(change_url(completion), {"total_tokens": 1}).status_code == 403
    completion.refresh_from_db()
    assert completion.total_tokens == 15


def test_a_reviewer_flags_and_notes_but_cannot_change_the_conversation(client, reviewer, alice):
    conversation = make_conversation(alice, ("a", "b"), title="Kept title")
    client.force_login(reviewer)
    response = client.post(
        change_url(conversation),
        {
            "flagged": "on",
            "review_note": "Asked for something odd.",
            "title": "Changed by reviewer",
            "model": "gpt-4o",
            "system_prompt": "be evil",
        },
    )
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.flagged
    assert conversation.review_note == "Asked for something odd."
    assert conversation.flagged_by == reviewer
    assert conversation.flagged_at is not None
    assert (conversation.title, conversation.model, conversation.system_prompt) == (
        "Kept title",
        "gpt-4o-mini",
        "",
    )
    # Unflagging clears who flagged it; the note stays as written.
    client.post(change_url(conversation), {"review_note": "Fine after all."})
    conversation.refresh_from_db()
    assert not conversation.flagged
    assert conversation.flagged_by is None
    assert conversation.review_note == "Fine after all."


def test_flag_and_unflag_actions(client, reviewer, alice):
    one = make_conversation(alice, ("a", "b"))
    two = make_conversation(alice, ("c", "d"))
    client.force_login(reviewer)
    response = client.post(
        changelist(Conversation),
        {"action": "flag_selected", "_selected_action": [one.pk, two.pk]},
        follow=True,
    )
    assert "Flagged 2 conversations." in response.content.decode()
    assert set(Conversation.objects.filter(flagged=True)) == {one, two}
    assert Conversation.objects.get(pk=one.pk).flagged_by == reviewer
    client.post(
        changelist(Conversation), {"action": "unflag_selected", "_selected_action": [one.pk]}
    )
    assert set(Conversation.objects.filter(flagged=True)) == {two}


def test_staff_without_the_review_permission_cannot_flag(client, alice):
    viewer = User.objects.create_user("vic", password="vic-password-1", is_staff=True)
    viewer.user_permissions.add(
        *Group.objects.get(name=review_selectors.REVIEWER_GROUP).permissions.exclude(
            codename="review_conversation"
        )
    )
    conversation = make_conversation(alice, ("a", "b"))
    client.force_login(viewer)
    assert client.get(change_url(conversation)).status_code == 200
    response = client.post(change_url(conversation), {"flagged": "on"})
    assert response.status_code == 403
    client.post(
        changelist(Conversation), {"action": "flag_selected", "_selected_action": [conversation.pk]}
    )
    assert not Conversation.objects.get(pk=conversation.pk).flagged


# --- The transcript ---


def test_the_transcript_shows_both_roles_in_order_with_each_completion(client, reviewer, alice):
    conversation = make_conversation(
        alice,
        ("First question", "First **answer**"),
        ("Second question", "Second answer"),
        failed="The model service failed 5 time(s)",
    )
    client.force_login(reviewer)
    page = client.get(change_url(conversation)).content.decode()
    order = [
        page.index("First question"),
        page.index("First <strong>answer</strong>"),
        page.index("Second question"),
        page.index("Second answer"),
        page.index("and then?"),
        page.index("The model service failed 5 time(s)"),
    ]
    assert order == sorted(order)
    completion = conversation.completions.filter(status="succeeded").first()
    assert completion.response_id in page
    assert completion.response_model in page
    assert "&quot;temperature&quot;: 0.3" in page
    assert "10 prompt + 5 completion = 15" in page
    assert "120 ms" in page


def test_the_transcript_sanitizes_model_output_and_escapes_user_text(client, reviewer, alice):
    conversation = make_conversation(
        alice,
        ("<b>user markup</b>", "<script>alert('x')</script> [link](javascript:alert(1)) *ok*"),
    )
    client.force_login(reviewer)
    page = client.get(change_url(conversation)).content.decode()
    assert "<script>alert(" not in page
    assert 'href="javascript:' not in page
    assert "<em>ok</em>" in page
    assert "&lt;b&gt;user markup&lt;/b&gt;" in page


def test_opening_a_transcript_writes_one_audit_record(client, reviewer, alice):
    conversation = make_conversation(alice, ("a", "b"))
    client.force_login(reviewer)
    client.get(changelist(Conversation))
    assert not AuditEvent.objects.exists()
    assert client.get(change_url(conversation)).status_code == 200
    event = AuditEvent.objects.get()
    assert event.actor == reviewer
    assert event.action == AuditEvent.Action.VIEW_TRANSCRIPT
    assert event.conversation_ids == [conversation.pk]


def test_opening_a_message_or_completion_is_audited_too(client, reviewer, alice):
    conversation = make_conversation(alice, ("a", "b"))
    client.force_login(reviewer)
    client.get(change_url(conversation.messages.first()))
    client.get(change_url(conversation.completions.first()))
    assert list(AuditEvent.objects.values_list("conversation_ids", flat=True)) == [
        [conversation.pk],
        [conversation.pk],
    ]


# --- Exports ---


@pytest.fixture
def two_real_conversations(alice, bob, simulator, send, enqueued):
    """Two conversations answered by the simulator: one with two choices per reply."""
    ModelPrice.objects.create(
        model="gpt-4o-mini",
        prompt_price_per_million=Decimal("0.15"),
        completion_price_per_million=Decimal("0.60"),
    )
    first = chat_services.conversation_create(owner=alice, temperature=0.5, n=2)
    send(first, "Name two rivers")
    enqueued.drain()
    send(first, "/echo The Rhine **and** the Danube")
    enqueued.drain()
    second = chat_services.conversation_create(owner=bob, system_prompt="Be brief.")
    send(second, "/echo hello from bob")
    enqueued.drain()
    return first, second


def test_exporting_two_conversations_gives_json_with_every_message_and_usage_row(
    client, reviewer, two_real_conversations
):
    first, second = two_real_conversations
    client.force_login(reviewer)
    response = client.post(
        changelist(Conversation),
        {"action": "export_json", "_selected_action": [first.pk, second.pk]},
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].startswith('attachment; filename="conversations-')
    document = json.loads(response.content)
    exported = {c["id"]: c for c in document["conversations"]}
    assert set(exported) == {first.pk, second.pk}
    for conversation in (first, second):
        data = exported[conversation.pk]
        assert [m["id"] for m in data["messages"]] == list(
            conversation.messages.order_by("position", "choice_index", "id").values_list(
                "id", flat=True
            )
        )
        rows = conversation.completions.order_by("queued_at", "id")
        assert [c["usage"] for c in data["completions"]] == [
            {
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "total_tokens": c.total_tokens,
                "estimated": c.usage_estimated,
            }
            for c in rows
        ]
        assert [Decimal(c["cost"]) for c in data["completions"]] == [c.cost for c in rows]
        assert all(c["usage"]["total_tokens"] for c in data["completions"])
    assert exported[first.pk]["parameters"]["temperature"] == 0.5
    assert exported[first.pk]["parameters"]["n"] == 2
    assert exported[second.pk]["system_prompt"] == "Be brief."
    # Two choices per reply in the first conversation, one of them selected.
    replies = [m for m in exported[first.pk]["messages"] if m["role"] == "assistant"]
    assert len(replies) == 4
    assert sum(m["selected"] for m in replies) == 2
    assert exported[first.pk]["completions"][0]["request_body"]["messages"][-1] == {
        "role": "user",
        "content": "Name two rivers",
    }


def test_exporting_markdown_gives_one_transcript_per_conversation(
    client, reviewer, two_real_conversations
):
    first, second = two_real_conversations
    client.force_login(reviewer)
    response = client.post(
        changelist(Conversation),
        {"action": "export_markdown", "_selected_action": [first.pk, second.pk]},
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    text = response.content.decode()
    assert text.count("\n# ") + text.startswith("# ") == 2
    assert f"(#{first.pk})" in text
    assert f"(#{second.pk})" in text
    assert "The Rhine **and** the Danube" in text
    assert "hello from bob" in text
    assert "Be brief." in text
    assert text.index("Name two rivers") < text.index("The Rhine **and** the Danube")
    # Numbered as the chat numbers them.
    assert "Choice 1" in text and "Choice 2" in text
    assert "choice 0" not in text.lower()


def test_the_transcript_numbers_choices_as_the_chat_does(client, reviewer, two_real_conversations):
    first, _second = two_real_conversations
    client.force_login(reviewer)
    page = client.get(change_url(first)).content.decode()
    assert page.count("Choice 1") == 2 and page.count("Choice 2") == 2
    assert "choice 0" not in page.lower()

    reply = first.messages.filter(role="assistant", choice_index=1).first()
    assert ">2</td>" in client.get(changelist(Message) + f"?q={first.pk}").content.decode()
    assert "Choice" in client.get(change_url(reply)).content.decode()


def test_exporting_csv_gives_one_row_per_message_readable_by_spreadsheets(
    client, reviewer, two_real_conversations
):
    first, second = two_real_conversations
    second.refresh_from_db()  # titled by its first message
    client.force_login(reviewer)
    response = client.post(
        changelist(Conversation),
        {"action": "export_csv", "_selected_action": [first.pk, second.pk]},
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].endswith('.csv"')
    assert response.content.startswith(b"\xef\xbb\xbf")  # Excel then reads it as UTF-8
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert list(rows[0]) == list(exports.CSV_COLUMNS)
    messages = Message.objects.filter(conversation__in=[first, second]).order_by(
        "conversation", "position", "choice_index", "id"
    )
    assert [
        (r["conversation_id"], r["position"], r["role"], r["choice_index"], r["content"])
        for r in rows
    ] == [
        (
            str(m.conversation_id),
            str(m.position),
            m.role,
            "" if m.choice_index is None else str(m.choice_index),
            m.content,
        )
        for m in messages
    ]
    assert {(r["title"], r["owner"]) for r in rows if r["conversation_id"] == str(second.pk)} == {
        (second.title, "bob")
    }
    replies = [
        r for r in rows if r["conversation_id"] == str(first.pk) and r["role"] == "assistant"
    ]
    assert sorted(r["selected"] for r in replies) == ["false", "false", "true", "true"]
    assert all(r["status"] == "complete" for r in rows)
    assert all(datetime.fromisoformat(r["created_at"]).tzinfo for r in rows)


def test_the_csv_export_keeps_formulas_from_running(client, reviewer, alice):
    conversation = make_conversation(alice, ("=1+1", "@SUM(A1)"), title="-danger")
    client.force_login(reviewer)
    response = client.post(
        changelist(Conversation), {"action": "export_csv", "_selected_action": [conversation.pk]}
    )
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [(r["title"], r["content"]) for r in rows] == [
        ("'-danger", "'=1+1"),
        ("'-danger", "'@SUM(A1)"),
    ]


def test_each_export_writes_one_audit_record(client, reviewer, alice):
    one = make_conversation(alice, ("a", "b"))
    two = make_conversation(alice, ("c", "d"))
    client.force_login(reviewer)
    for action in ("export_json", "export_markdown", "export_csv"):
        client.post(
            changelist(Conversation), {"action": action, "_selected_action": [one.pk, two.pk]}
        )
    events = list(AuditEvent.objects.order_by("created_at"))
    assert [(e.action, e.conversation_ids, e.actor) for e in events] == [
        ("export_json", sorted([one.pk, two.pk]), reviewer),
        ("export_markdown", sorted([one.pk, two.pk]), reviewer),
        ("export_csv", sorted([one.pk, two.pk]), reviewer),
    ]


# --- The audit trail ---


def test_superusers_list_audit_events_read_only_and_find_them_by_conversation(
    client, superuser, reviewer, alice
):
    target = make_conversation(alice, ("a", "b"))
    # An id whose digits contain the target's must not match a search for the target.
    neighbour = make_conversation(alice)
    Conversation.objects.filter(pk=neighbour.pk).update(id=int(f"{target.pk}1"))
    neighbour = Conversation.objects.get(pk=int(f"{target.pk}1"))
    review_services.audit_record(
        actor=reviewer, action="view_transcript", conversation_ids=[target.pk]
    )
    review_services.audit_record(
        actor=reviewer, action="view_transcript", conversation_ids=[neighbour.pk]
    )
    both = review_services.audit_record(
        actor=reviewer, action="export_json", conversation_ids=[neighbour.pk, target.pk]
    )
    client.force_login(superuser)
    response = client.get(changelist(AuditEvent), {"q": str(target.pk)})
    assert response.status_code == 200
    found = results(response)
    assert len(found) == 2
    assert both in found
    assert all(target.pk in event.conversation_ids for event in found)
    assert results(client.get(changelist(AuditEvent), {"q": "rita"})) != []
    page = client.get(change_url(both))
    assert page.status_code == 200
    assert not page.context["has_change_permission"]
    assert client.post(change_url(both), {"action": "export_json"}).status_code == 403
    delete = reverse("admin:conversations_auditevent_delete", args=[both.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403


# --- Query counts ---


def _queries(client, url: str, params: dict | None = None) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params or {})
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize("model", [Conversation, Completion, Message])
def test_list_pages_run_the_same_number_of_queries_for_1_and_100_conversations(
    client, reviewer, alice, bob, model
):
    make_conversation(alice, ("a", "b"), failed="oops")
    client.force_login(reviewer)
    _queries(client, changelist(model))  # warm caches (content types, permissions)
    one = _queries(client, changelist(model))
    searched_one = _queries(client, changelist(model), {"q": "a"})
    for i in range(99):
        make_conversation(bob if i % 2 else alice, ("a", "b"), failed="oops" if i % 3 else "")
    hundred = _queries(client, changelist(model))
    searched_hundred = _queries(client, changelist(model), {"q": "a"})
    assert one == hundred
    assert searched_one == searched_hundred
    assert hundred <= 12


def test_the_transcript_runs_the_same_number_of_queries_however_long(client, reviewer, alice):
    short = make_conversation(alice, ("a", "b"))
    long = make_conversation(alice, *[(f"q{i}", f"a{i}") for i in range(30)], failed="x")
    client.force_login(reviewer)
    client.get(change_url(short))
    assert _queries(client, change_url(short)) == _queries(client, change_url(long))


def test_the_transcript_shows_the_whole_tree_and_the_system_prompt_each_reply_was_sent(
    client,
    reviewer,
    alice,
    conversation,
    send,
    enqueued,
    simulator,
    django_capture_on_commit_callbacks,
):
    send(conversation, "Which planet is largest?")
    enqueued.drain()
    first = conversation.messages.get(role="assistant")
    chat_services.conversation_update(conversation=conversation, system_prompt="Be brief.")
    with django_capture_on_commit_callbacks(execute=True):
        chat_versions.reply_regenerate(
            owner_id=alice.pk, conversation_id=conversation.pk, message_id=first.pk
        )
    enqueued.drain()
    asked = first.parent
    with django_capture_on_commit_callbacks(execute=True):
        chat_versions.message_edit(
            owner=alice,
            conversation_id=conversation.pk,
            message_id=asked.pk,
            content="And smallest?",
        )
    enqueued.drain()
    second = asked.children.exclude(pk=first.pk).get()
    edited_reply = conversation.messages.get(parent__content="And smallest?")
    client.force_login(reviewer)
    page = client.get(change_url(conversation)).content.decode()
    # The transcript (the settings above it show today's system prompt).
    page = page[page.index('id="transcript-heading"') :]
    order = [
        page.index("Which planet is largest?"),
        page.index(first.content),
        page.index("Be brief."),
        page.index(second.content),
        page.index("And smallest?"),
        page.index(edited_reply.content),
    ]
    assert order == sorted(order)
    # The first reply went without the prompt set later; the prompt is shown where it began.
    assert page.index("system prompt sent") > page.index(first.content)
    assert page.count('aria-label="system prompt sent"') == 1
    assert page.count("Version 1 of 2") == 2 and page.count("Version 2 of 2") == 2
    # Only the edited branch is on the owner's path.
    assert page.count("not on the owner's path") == 3
    assert page.count('class="branch off-path"') == 3
    # The Markdown export walks the tree the same way, each version labelled.
    text = exports.export_markdown(
        conversations=Conversation.objects.filter(pk=conversation.pk), actor=reviewer
    )
    marks = [
        text.index("*Version 1 of 2, not on the owner's path*"),
        text.index("> Which planet is largest?"),
        text.index(f"> {first.content.splitlines()[0]}"),
        text.index("*Version 2 of 2, not on the owner's path*"),
        text.index("*Version 2 of 2, on the owner's path*"),
        text.index("> And smallest?"),
    ]
    assert marks == sorted(marks)
    assert "### System prompt set now" in text
