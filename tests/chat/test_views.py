"""The chat pages through Django's test client: ownership, CSRF, htmx partials, query counts."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from conversations.accounts.selectors import site_settings
from conversations.chat.services import conversations as chat_services
from conversations.models import Completion, Conversation, Message
from conversations.providers import catalog
from tests.http import HTMX


class CommittingClient(Client):
    """A test client whose POSTs run their after-commit work (enqueueing), as in production."""

    capture = None

    def post(self, *args, **kwargs):
        with self.capture(execute=True):
            return super().post(*args, **kwargs)


@pytest.fixture
def client(django_capture_on_commit_callbacks) -> Client:
    client = CommittingClient()
    client.capture = django_capture_on_commit_callbacks
    return client


def add_messages(conversation: Conversation, count: int) -> None:
    """`count` messages, user and assistant in turn, each reply from its own completion."""
    rows = []
    for position in range(count):
        if position % 2 == 0:
            rows.append(
                Message(
                    conversation=conversation,
                    role=Message.Role.USER,
                    content=f"question {position}",
                    position=position,
                )
            )
        else:
            completion = Completion.objects.create(
                conversation=conversation,
                user_id=conversation.owner_id,
                model=conversation.model,
                status=Completion.Status.SUCCEEDED,
            )
            rows.append(
                Message(
                    conversation=conversation,
                    role=Message.Role.ASSISTANT,
                    content=f"**answer** {position}\n\n```python\nprint({position})\n```",
                    position=position,
                    completion=completion,
                    choice_index=0,
                )
            )
    Message.objects.bulk_create(rows)
    # Each follows the one before it, as the site links a conversation's messages.
    for before, row in itertools.pairwise(rows):
        row.parent_id = before.pk
    Message.objects.bulk_update(rows, ["parent"])


def add_conversations(owner: User, count: int) -> list[Conversation]:
    return Conversation.objects.bulk_create(
        [Conversation(owner=owner, title=f"chat {i}", model="gpt-4o-mini") for i in range(count)]
    )


def send_htmx(client: Client, conversation: Conversation, content: str, **extra):
    return client.post(
        reverse("message_send", args=[conversation.pk]), {"content": content}, **HTMX, **extra
    )


# --- Who may see what ---


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("chat_home", "get"),
        ("conversation_list", "get"),
        ("conversation_create", "post"),
    ],
)
def test_it_sends_anonymous_users_to_login(client, db, name, method):
    url = reverse(name)
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_it_sends_anonymous_users_to_login_from_a_conversation(client, conversation, send):
    message, completion = send(conversation, "hello")
    urls = [
        ("get", reverse("conversation_detail", args=[conversation.pk])),
        ("post", reverse("message_send", args=[conversation.pk])),
        ("get", reverse("completion_poll", args=[conversation.pk, completion.pk])),
        ("post", reverse("completion_retry", args=[conversation.pk, completion.pk])),
        ("post", reverse("completion_stop", args=[conversation.pk, completion.pk])),
        ("get", reverse("completion_events", args=[conversation.pk, completion.pk])),
        ("post", reverse("choice_select", args=[conversation.pk, message.pk])),
        ("post", reverse("conversation_settings", args=[conversation.pk])),
        ("post", reverse("conversation_rename", args=[conversation.pk])),
        ("post", reverse("conversation_delete", args=[conversation.pk])),
    ]
    for method, url in urls:
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


def test_it_answers_404_for_every_action_on_another_users_conversation(
    client, alice, bob, conversation, send, enqueued, simulator
):
    simulator.control(faults=[{"status": 400, "message": "bad"}])
    _, completion = send(conversation, "hello")
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.FAILED
    reply = Message.objects.create(
        conversation=conversation, role="assistant", content="x", position=1
    )
    client.force_login(bob)
    pk = conversation.pk
    requests = [
        ("get", reverse("conversation_detail", args=[pk]), {}),
        ("post", reverse("message_send", args=[pk]), {"content": "hi"}),
        ("get", reverse("completion_poll", args=[pk, completion.pk]), {}),
        ("post", reverse("completion_retry", args=[pk, completion.pk]), {}),
        ("post", reverse("completion_stop", args=[pk, completion.pk]), {}),
        ("get", reverse("completion_events", args=[pk, completion.pk]), {}),
        ("post", reverse("choice_select", args=[pk, reply.pk]), {}),
        ("post", reverse("conversation_settings", args=[pk]), {"settings-model": "gpt-4o"}),
        ("post", reverse("conversation_rename", args=[pk]), {"title": "mine now"}),
        ("post", reverse("conversation_delete", args=[pk]), {}),
    ]
    for method, url, data in requests:
        for headers in ({}, HTMX):
            response = getattr(client, method)(url, data, **headers)
            assert response.status_code == 404, (method, url)
    conversation.refresh_from_db()
    assert conversation.title == "Alice's chat"
    assert conversation.model == "gpt-4o-mini"
    assert conversation.messages.count() == 2
    assert conversation.completions.count() == 1


def test_it_answers_404_for_a_completion_or_message_reached_through_another_conversation(
    client, alice, bob, conversation, send
):
    message, completion = send(conversation, "hello")
    bobs = chat_services.conversation_create(owner=bob)
    client.force_login(bob)
    assert client.get(reverse("completion_poll", args=[bobs.pk, completion.pk])).status_code == 404
    url = reverse("choice_select", args=[bobs.pk, message.pk])
    assert client.post(url).status_code == 404


def test_it_refuses_posts_without_a_csrf_token(alice, conversation, send):
    message, completion = send(conversation, "hello")
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    pk = conversation.pk
    for url in [
        reverse("conversation_create"),
        reverse("message_send", args=[pk]),
        reverse("completion_retry", args=[pk, completion.pk]),
        reverse("completion_stop", args=[pk, completion.pk]),
        reverse("choice_select", args=[pk, message.pk]),
        reverse("conversation_settings", args=[pk]),
        reverse("conversation_rename", args=[pk]),
        reverse("conversation_delete", args=[pk]),
    ]:
        assert client.post(url, {"content": "hi", "title": "t"}).status_code == 403, url
    assert Conversation.objects.filter(pk=pk).exists()
    assert Message.objects.count() == 1
    assert Completion.objects.count() == 1


def test_the_sidebar_lists_only_the_users_own_conversations(alice_client, alice, bob):
    chat_services.conversation_create(owner=alice, title="alice secret plans")
    chat_services.conversation_create(owner=bob, title="bob secret plans")
    page = alice_client.get(reverse("chat_home")).content.decode()
    assert "alice secret plans" in page
    assert "bob secret plans" not in page


# --- The chat page ---


def test_the_chat_page_shows_the_conversation_and_its_controls(alice_client, conversation):
    add_messages(conversation, 4)
    response = alice_client.get(reverse("conversation_detail", args=[conversation.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert page.count('data-role="user"') == 2
    assert page.count('data-role="assistant"') == 2
    assert "<strong>answer</strong> 1" in page
    assert 'class="highlight"' in page
    for label in [
        "Model",
        "System prompt",
        "Temperature",
        "Top P",
        "Max tokens",
        "Choices",
        "Stop sequences",
        "Presence penalty",
        "Frequency penalty",
        "Message",
    ]:
        assert f">{label}</label>" in page, label
    assert ">Send</button>" in page


def test_the_page_says_when_the_upstream_is_simulated(alice_client, settings):
    settings.UPSTREAM_SIMULATED = True
    assert "Simulated upstream" in alice_client.get(reverse("chat_home")).content.decode()
    settings.UPSTREAM_SIMULATED = False
    assert "Simulated upstream" not in alice_client.get(reverse("chat_home")).content.decode()


def test_the_page_never_shows_the_api_key(alice_client, conversation, settings):
    settings.OPENAI_API_KEY = "sk-very-secret-key"
    page = alice_client.get(reverse("conversation_detail", args=[conversation.pk]))
    assert b"sk-very-secret-key" not in page.content


def test_new_chat_reuses_an_untouched_conversation(alice_client, alice):
    first = alice_client.post(reverse("conversation_create"))
    second = alice_client.post(reverse("conversation_create"))
    assert first["Location"] == second["Location"]
    assert Conversation.objects.filter(owner=alice).count() == 1


def test_new_chat_with_a_message_creates_it_and_sends(alice_client, alice, enqueued):
    response = alice_client.post(reverse("conversation_create"), {"content": "Hello there"})
    conversation = Conversation.objects.get(owner=alice)
    assert response["Location"] == reverse("conversation_detail", args=[conversation.pk])
    assert conversation.title == "Hello there"
    assert list(conversation.messages.values_list("content", flat=True)) == ["Hello there"]
    assert len(enqueued.ids) == 1


# --- Sending, polling, retrying ---


def test_sending_with_htmx_shows_the_message_and_a_polling_reply(
    alice_client, conversation, enqueued
):
    response = send_htmx(alice_client, conversation, "Hi <b>there</b>\nsecond line")
    page = response.content.decode()
    completion = Completion.objects.get(conversation=conversation)
    assert response.status_code == 200
    assert 'data-role="user"' in page
    assert "Hi &lt;b&gt;there&lt;/b&gt;<br>second line" in page
    poll = reverse("completion_poll", args=[conversation.pk, completion.pk])
    assert f'hx-get="{poll}"' in page
    events = reverse("completion_events", args=[conversation.pk, completion.pk])
    assert f'sse-connect="{events}?t=' in page  # signed for this session (chat.live)
    assert 'sse-swap="done"' in page and 'hx-trigger="every 2s"' in page
    # A fresh composer replaces the one that was sent.
    assert 'id="composer"' in page
    assert enqueued.ids == [completion.pk]


def test_sending_without_javascript_redirects_back_to_the_conversation(
    alice_client, conversation, enqueued
):
    response = alice_client.post(
        reverse("message_send", args=[conversation.pk]), {"content": "hello"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("conversation_detail", args=[conversation.pk])
    assert conversation.messages.get().content == "hello"


def test_an_empty_message_is_refused_beside_the_textarea(alice_client, conversation, enqueued):
    response = send_htmx(alice_client, conversation, "   ")
    page = response.content.decode()
    assert 'id="composer-error" role="alert"' in page
    assert "Write a message first." in page
    assert not conversation.messages.exists()
    assert enqueued.ids == []


def test_a_message_while_a_reply_is_pending_is_refused_and_kept_in_the_textarea(
    alice_client, conversation, enqueued
):
    send_htmx(alice_client, conversation, "first")
    response = send_htmx(alice_client, conversation, "second thought")
    page = response.content.decode()
    assert "Wait for the reply to finish" in page
    assert "second thought</textarea>" in page
    assert conversation.messages.count() == 1
    assert len(enqueued.ids) == 1


def test_over_budget_the_message_is_kept_and_the_error_shown(
    alice_client, conversation, enqueued, settings
):
    settings.BUDGET_MONTHLY_TOKENS = 1
    response = send_htmx(alice_client, conversation, "an expensive question")
    page = response.content.decode()
    assert 'role="alert"' in page
    assert "budget" in page
    assert "an expensive question" in page
    assert conversation.messages.get().content == "an expensive question"
    assert enqueued.ids == []


def test_the_poll_shows_the_pending_reply_then_the_reply_with_286(
    alice_client, conversation, enqueued, simulator
):
    send_htmx(alice_client, conversation, "/echo Some *Markdown* <script>alert(1)</script>")
    completion = Completion.objects.get()
    url = reverse("completion_poll", args=[conversation.pk, completion.pk])
    pending = alice_client.get(url, **HTMX)
    assert pending.status_code == 200
    assert 'aria-busy="true"' in pending.content.decode()
    enqueued.drain()
    done = alice_client.get(url, **HTMX)
    page = done.content.decode()
    assert done.status_code == 286
    assert 'data-role="assistant"' in page
    assert "<em>Markdown</em>" in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "hx-get" not in page


def test_the_live_poll_swaps_nothing_until_the_reply_ends(
    alice_client, conversation, enqueued, simulator
):
    send_htmx(alice_client, conversation, "stream it")
    completion = Completion.objects.get()
    url = reverse("completion_poll", args=[conversation.pk, completion.pk])
    assert alice_client.get(url, {"live": "1"}, **HTMX).status_code == 204
    enqueued.drain()
    assert alice_client.get(url, {"live": "1"}, **HTMX).status_code == 286


def test_the_pending_reply_has_a_stop_button_that_stops_it(
    alice_client, conversation, enqueued, simulator
):
    response = send_htmx(alice_client, conversation, "never mind")
    completion = Completion.objects.get()
    stop = reverse("completion_stop", args=[conversation.pk, completion.pk])
    assert f'hx-post="{stop}"' in response.content.decode()
    assert alice_client.post(stop, **HTMX).status_code == 204
    completion.refresh_from_db()
    assert completion.status == Completion.Status.FAILED and completion.stop_requested


def test_a_failed_reply_shows_an_alert_and_retry_makes_a_new_completion(
    alice_client, conversation, enqueued, simulator
):
    simulator.control(faults=[{"status": 400, "message": "the upstream says no"}])
    send_htmx(alice_client, conversation, "hello")
    enqueued.drain()
    failed = Completion.objects.get()
    done = alice_client.get(reverse("completion_poll", args=[conversation.pk, failed.pk]), **HTMX)
    page = done.content.decode()
    assert done.status_code == 286
    assert 'role="alert"' in page
    assert "the upstream says no" in page
    assert ">Retry</button>" in page
    # The full page shows the same error for the last message.
    full = alice_client.get(reverse("conversation_detail", args=[conversation.pk])).content
    assert b"the upstream says no" in full

    retry = alice_client.post(
        reverse("completion_retry", args=[conversation.pk, failed.pk]), **HTMX
    )
    new = Completion.objects.exclude(pk=failed.pk).get()
    assert new.request_message_id == failed.request_message_id
    assert reverse("completion_poll", args=[conversation.pk, new.pk]) in retry.content.decode()
    enqueued.drain()
    new.refresh_from_db()
    assert new.status == Completion.Status.SUCCEEDED
    page = alice_client.get(reverse("conversation_detail", args=[conversation.pk])).content
    assert b"the upstream says no" not in page
    assert page.decode().count('data-role="assistant"') == 1


def test_retrying_a_completion_that_did_not_fail_shows_why(
    alice_client, conversation, enqueued, simulator
):
    send_htmx(alice_client, conversation, "hello")
    enqueued.drain()
    completion = Completion.objects.get()
    response = alice_client.post(
        reverse("completion_retry", args=[conversation.pk, completion.pk]), **HTMX
    )
    assert "Only a failed reply can be retried." in response.content.decode()
    assert Completion.objects.count() == 1


def test_the_call_carries_the_settings_and_the_whole_history(
    alice_client, conversation, enqueued, simulator
):
    save_settings(
        alice_client,
        conversation,
        system_prompt="Be brief.",
        temperature="0.7",
        max_tokens="200",
    )
    send_htmx(alice_client, conversation, "first question")
    enqueued.drain()
    send_htmx(alice_client, conversation, "second question")
    enqueued.drain()
    first, second = simulator.bodies()
    assert first["temperature"] == 0.7
    assert first["max_tokens"] == 200
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    assert second["messages"][0]["content"] == "Be brief."
    assert second["messages"][1]["content"] == "first question"
    assert second["messages"][3]["content"] == "second question"


# --- Several choices ---


def test_several_choices_show_side_by_side_and_the_picked_one_continues(
    alice_client, conversation, enqueued, simulator
):
    save_settings(alice_client, conversation, n="2")
    send_htmx(alice_client, conversation, "pick one")
    enqueued.drain()
    completion = Completion.objects.get()
    page = alice_client.get(
        reverse("completion_poll", args=[conversation.pk, completion.pk]), **HTMX
    ).content.decode()
    assert page.count('data-role="assistant"') == 2
    assert page.count(">Use this reply</button>") == 1
    assert "In use" in page
    second = conversation.messages.get(role="assistant", choice_index=1)
    response = alice_client.post(
        reverse("choice_select", args=[conversation.pk, second.pk]), **HTMX
    )
    assert response.status_code == 200
    assert f'id="choice-{second.pk}"' in response.content.decode()
    second.refresh_from_db()
    assert second.is_selected
    assert not conversation.messages.get(role="assistant", choice_index=0).is_selected
    send_htmx(alice_client, conversation, "and then?")
    enqueued.drain()
    assert simulator.bodies()[-1]["messages"][-2]["content"] == second.content


def test_selecting_a_user_message_is_refused(alice_client, conversation, enqueued):
    send_htmx(alice_client, conversation, "hello")
    message = conversation.messages.get()
    response = alice_client.post(
        reverse("choice_select", args=[conversation.pk, message.pk]), **HTMX
    )
    # 200 so htmx swaps it: the reason goes into the chat's notice, nothing else changes.
    assert response.status_code == 200
    assert response["HX-Retarget"] == "#chat-notice"
    assert "Only a reply&#x27;s choice can be selected." in response.content.decode()


# --- Settings, title, deletion ---


SETTINGS_DEFAULTS = {
    "model": "gpt-4o-mini",
    "system_prompt": "",
    "temperature": "",
    "top_p": "",
    "max_tokens": "",
    "n": "",
    "stop": "",
    "presence_penalty": "",
    "frequency_penalty": "",
}


def save_settings(client: Client, conversation: Conversation, **values: str):
    data = {f"settings-{k}": v for k, v in (SETTINGS_DEFAULTS | values).items()}
    return client.post(reverse("conversation_settings", args=[conversation.pk]), data, **HTMX)


def test_settings_are_saved_and_empty_fields_are_unset(alice_client, conversation):
    response = save_settings(
        alice_client,
        conversation,
        model="gpt-4o",
        system_prompt="You are terse.",
        temperature="0.7",
        top_p="0.9",
        max_tokens="200",
        n="2",
        stop="END\n\n###\n",
        presence_penalty="-0.5",
        frequency_penalty="1.5",
    )
    assert "Settings saved." in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.generation_params() == {
        "model": "gpt-4o",
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 200,
        "n": 2,
        "stop": ["END", "###"],
        "presence_penalty": -0.5,
        "frequency_penalty": 1.5,
    }
    assert conversation.system_prompt == "You are terse."
    save_settings(alice_client, conversation)
    conversation.refresh_from_db()
    assert conversation.temperature is None
    assert conversation.stop == []
    assert conversation.model == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", "2.5", "less than or equal to 2"),
        ("temperature", "warm", "Enter a number."),
        ("top_p", "-0.1", "greater than or equal to 0"),
        ("max_tokens", "0", "greater than or equal to 1"),
        ("max_tokens", "1.5", "Enter a whole number."),
        ("n", "0", "greater than or equal to 1"),
        ("stop", "a\nb\nc\nd\ne", "at most 4 stop sequences"),
        ("presence_penalty", "3", "less than or equal to 2"),
        ("frequency_penalty", "-2.5", "greater than or equal to -2"),
        ("model", "gpt-9000", "Select a valid choice."),
    ],
)
def test_invalid_settings_are_refused_beside_the_field(
    alice_client, conversation, field, value, message
):
    response = save_settings(alice_client, conversation, system_prompt="new", **{field: value})
    page = response.content.decode()
    assert message in page
    # The error sits in the field's own group, next to its input.
    group = page.split(f'field-{field} field-invalid"', 1)[1].split('<div class="field ', 1)[0]
    assert message in group
    conversation.refresh_from_db()
    assert conversation.system_prompt == ""


def test_settings_without_javascript_redirect_after_saving(alice_client, conversation):
    data = {f"settings-{k}": v for k, v in (SETTINGS_DEFAULTS | {"max_tokens": "50"}).items()}
    response = alice_client.post(reverse("conversation_settings", args=[conversation.pk]), data)
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.max_tokens == 50


def test_rename_changes_the_title_and_an_empty_title_is_refused(alice_client, conversation):
    url = reverse("conversation_rename", args=[conversation.pk])
    response = alice_client.post(url, {"title": "  Trip   planning "}, **HTMX)
    assert "Trip planning" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "Trip planning"
    response = alice_client.post(url, {"title": "   "}, **HTMX)
    assert 'class="errorlist' in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "Trip planning"


def test_delete_removes_the_conversation_and_goes_home(alice_client, conversation):
    response = alice_client.post(reverse("conversation_delete", args=[conversation.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("chat_home")
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


def test_the_first_message_titles_the_conversation(alice_client, alice, enqueued):
    conversation = chat_services.conversation_create(owner=alice)
    response = send_htmx(alice_client, conversation, "How do tides work?")
    assert 'id="conversation-title-text" hx-swap-oob="true">How do tides work?' in (
        response.content.decode()
    )


# --- Sidebar paging ---


def test_the_sidebar_shows_50_then_loads_more(alice_client, alice):
    add_conversations(alice, 53)
    page = alice_client.get(reverse("chat_home")).content.decode()
    assert page.count('class="conversation-link"') == 50
    more = f"{reverse('conversation_list')}?page=2"
    assert f'href="{more}"' in page
    assert f'hx-get="{more}"' in page
    second = alice_client.get(more, **HTMX).content.decode()
    assert second.count('class="conversation-link"') == 3
    assert "Load more" not in second


def test_the_sidebar_is_newest_activity_first(alice_client, alice, enqueued):
    old, new = add_conversations(alice, 2)
    old.last_activity_at = timezone.now() + timedelta(seconds=1)
    old.save(update_fields=["last_activity_at"])
    page = alice_client.get(reverse("chat_home")).content.decode()
    assert page.index(f'id="conv-{old.pk}"') < page.index(f'id="conv-{new.pk}"')


# --- Constant query counts ---


def count_queries(django_assert_max_num_queries, client, url, **headers) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, **headers)
    assert response.status_code in (200, 286)
    return len(queries)


# The session is read from the shared cache where there is one (REDIS_URL), else a query.
SESSION = 0 if settings.SESSION_ENGINE == "conversations.accounts.sessions" else 1


def test_the_chat_page_runs_the_same_queries_for_10_or_200_messages(
    alice_client, alice, django_assert_num_queries
):
    small = chat_services.conversation_create(owner=alice)
    large = chat_services.conversation_create(owner=alice)
    add_messages(small, 10)
    add_messages(large, 200)
    site_settings()  # read through the cache, not once per page
    # (the session,) user, conversation, sidebar, messages, newest completion
    with django_assert_num_queries(SESSION + 5):
        alice_client.get(reverse("conversation_detail", args=[small.pk]))
    with django_assert_num_queries(SESSION + 5):
        page = alice_client.get(reverse("conversation_detail", args=[large.pk]))
    assert page.content.decode().count('data-role="assistant"') == 100


def test_the_chat_page_runs_the_same_queries_for_1_or_50_conversations(
    client, alice, bob, django_assert_num_queries
):
    (alices,) = add_conversations(alice, 1)
    bobs = add_conversations(bob, 50)
    add_messages(alices, 4)
    add_messages(bobs[0], 4)
    site_settings()
    catalog.offers_for(alice.pk)  # the models offered and their access rules: cached too
    client.force_login(alice)
    with django_assert_num_queries(SESSION + 5):
        client.get(reverse("conversation_detail", args=[alices.pk]))
    client.force_login(bob)
    with django_assert_num_queries(SESSION + 5):
        client.get(reverse("conversation_detail", args=[bobs[0].pk]))
    with django_assert_num_queries(SESSION + 2):
        client.get(reverse("chat_home"))


def test_the_poll_runs_the_same_queries_however_long_the_conversation(
    alice_client, alice, enqueued, simulator, django_assert_num_queries
):
    small = chat_services.conversation_create(owner=alice)
    large = chat_services.conversation_create(owner=alice)
    add_messages(large, 200)
    completions = []
    for conversation in (small, large):
        send_htmx(alice_client, conversation, "hello")
        completions.append(conversation.completions.order_by("-pk").first())
    for conversation, completion in zip((small, large), completions, strict=True):
        url = reverse("completion_poll", args=[conversation.pk, completion.pk])
        # (the session,) user, completion with its conversation, streamed text so far
        with django_assert_num_queries(SESSION + 3):
            pending = alice_client.get(url, **HTMX)
        assert len(pending.content) < 1500
    enqueued.drain()
    for conversation, completion in zip((small, large), completions, strict=True):
        url = reverse("completion_poll", args=[conversation.pk, completion.pk])
        with django_assert_num_queries(SESSION + 3):
            done = alice_client.get(url, **HTMX)
        assert done.status_code == 286
        assert done.content.decode().count('data-role="assistant"') == 1
