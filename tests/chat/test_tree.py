"""Conversations as trees: regenerate, edit, switch versions, pick a choice; what each
does to the next call's history; the migration of conversations made the old way."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.urls import reverse

from conversations.chat import selectors
from conversations.chat.services import conversations as chat_services
from conversations.chat.tree import Versions
from conversations.models import Completion, Message
from tests.chat.test_views import SESSION, add_messages
from tests.http import HTMX


@pytest.fixture
def client(django_capture_on_commit_callbacks):
    from tests.chat.test_views import CommittingClient

    client = CommittingClient()
    client.capture = django_capture_on_commit_callbacks
    return client


@pytest.fixture
def chat(client, alice, conversation, simulator, enqueued):
    """alice's conversation, and a way to act in it through the pages (htmx) and let the
    replies come."""
    client.force_login(alice)

    class Chat:
        def post(self, name: str, *args, data=None, htmx=True):
            url = reverse(name, args=[conversation.pk, *args])
            response = client.post(url, data or {}, **(HTMX if htmx else {}))
            enqueued.drain()
            return response

        def send(self, content: str):
            return self.post("message_send", data={"content": content})

        def regenerate(self, message: Message):
            return self.post("reply_regenerate", message.pk)

        def edit(self, message: Message, content: str):
            return self.post("message_edit", message.pk, data={"content": content})

        def switch(self, message: Message, go: str):
            return self.post("version_switch", message.pk, data={"go": go})

        def path(self) -> list[str]:
            """The contents of the path the page shows, reply choices as chosen."""
            shown = []
            for item in selectors.transcript(conversation).items:
                shown.append(item.selected.content if item.kind == "reply" else item.content)
            return shown

        def items(self):
            return selectors.transcript(conversation).items

        def last_sent(self) -> list[dict]:
            return simulator.bodies()[-1]["messages"]

    return Chat()


def reply_to(text: str) -> Message:
    return Message.objects.get(role="user", content=text).children.order_by("pk").last()


def contents(messages: list[dict]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in messages]


# --- Regenerate ---


def test_regenerate_makes_a_sibling_from_a_second_call_with_the_same_history(chat, simulator):
    chat.send("hello")
    chat.send("tell me more")
    first_call = simulator.bodies()[-1]["messages"]
    old = reply_to("tell me more")
    response = chat.regenerate(old)
    assert response.status_code == 200
    assert response["HX-Retarget"] == "#messages"
    assert len(simulator.bodies()) == 3
    assert chat.last_sent() == first_call
    new = reply_to("tell me more")
    assert new.pk != old.pk and new.parent_id == old.parent_id == old.parent.pk
    assert new.completion.version == 2
    old.refresh_from_db()
    assert not old.is_selected and new.is_selected
    reply = chat.items()[-1]
    assert reply.kind == "reply" and reply.first.pk == new.pk
    assert reply.versions == Versions(2, 2)
    # Both calls are billed as any reply is.
    assert all(c.total_tokens for c in Completion.objects.filter(request_message=old.parent))


def test_regenerating_an_earlier_reply_sends_the_history_up_to_it_and_starts_a_branch(
    chat, simulator
):
    chat.send("first")
    chat.send("second")
    chat.regenerate(reply_to("first"))
    assert contents(chat.last_sent()) == [("user", "first")]
    # The new version of the first reply ends the path; "second" lives on under the old one.
    assert chat.path() == ["first", reply_to("first").content]
    chat.send("third")
    assert [m["content"] for m in chat.last_sent()] == ["first", reply_to("first").content, "third"]


def test_a_regenerated_reply_is_sent_with_the_settings_as_they_are_now(
    chat, conversation, simulator
):
    chat.send("hello")
    chat_services.conversation_update(
        conversation=conversation, system_prompt="Answer in French.", temperature=0.2
    )
    chat.regenerate(reply_to("hello"))
    body = simulator.bodies()[-1]
    assert body["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert body["temperature"] == 0.2


def test_a_failed_regeneration_shows_the_earlier_reply_again(chat, simulator):
    chat.send("hello")
    old = reply_to("hello")
    simulator.control(faults=[{"status": 400, "message": "bad request"}])
    chat.regenerate(old)
    failed = Completion.objects.order_by("-pk").first()
    assert failed.status == Completion.Status.FAILED
    old.refresh_from_db()
    assert old.is_selected
    assert chat.path() == ["hello", old.content]


# --- Edit ---


def test_edit_makes_a_sibling_message_and_the_call_sends_the_edited_path_only(chat, simulator):
    chat.send("question one")
    chat.send("question two")
    two = Message.objects.get(content="question two")
    response = chat.edit(two, "question two, better put")
    assert response.status_code == 200
    edited = Message.objects.get(content="question two, better put")
    assert edited.parent_id == two.parent_id and edited.position == two.position
    two.refresh_from_db()
    assert not two.is_selected and edited.is_selected
    one_reply = reply_to("question one").content
    assert contents(chat.last_sent()) == [
        ("user", "question one"),
        ("assistant", one_reply),
        ("user", "question two, better put"),
    ]
    assert chat.path() == [
        "question one",
        one_reply,
        "question two, better put",
        reply_to("question two, better put").content,
    ]
    assert chat.items()[2].versions == Versions(2, 2)
    chat.send("question three")
    sent = [m["content"] for m in chat.last_sent()]
    assert "question two" not in sent and "question two, better put" in sent


def test_editing_the_first_message_starts_over(chat, simulator):
    chat.send("hi")
    chat.send("more")
    chat.edit(Message.objects.get(content="hi"), "hello instead")
    assert contents(chat.last_sent()) == [("user", "hello instead")]
    assert chat.path() == ["hello instead", reply_to("hello instead").content]
    assert chat.items()[0].versions == Versions(2, 2)


def test_an_empty_edit_is_refused_next_to_the_field_and_nothing_is_saved(chat):
    chat.send("hi")
    before = Message.objects.count()
    response = chat.edit(Message.objects.get(content="hi"), "   ")
    page = response.content.decode()
    assert response.status_code == 200  # htmx swaps the form with its error
    assert 'aria-invalid="true"' in page and "Write a message first." in page
    assert Message.objects.count() == before


def test_the_edit_form_holds_the_message_and_works_without_javascript(client, alice, chat):
    chat.send("what is 2+2?")
    message = Message.objects.get(content="what is 2+2?")
    url = reverse("message_edit", args=[message.conversation_id, message.pk])
    form = client.get(url, **HTMX).content.decode()
    assert "what is 2+2?</textarea>" in form and "Save and send" in form
    page = client.get(url).content.decode()  # no htmx: the whole page, the form in place
    assert "what is 2+2?</textarea>" in page and 'id="composer"' in page
    response = client.post(url, {"content": "what is 3+3?"})
    assert response.status_code == 302
    assert Message.objects.filter(content="what is 3+3?", is_selected=True).exists()


# --- Switching versions ---


def test_switching_branches_changes_what_the_next_call_sends(chat, simulator):
    chat.send("a")
    chat.send("b")
    chat.edit(Message.objects.get(content="b"), "b, edited")
    edited = Message.objects.get(content="b, edited")
    response = chat.switch(edited, "previous")
    assert response.status_code == 200
    assert chat.path()[2] == "b"
    assert chat.items()[2].versions == Versions(1, 2)
    chat.send("c")
    sent = [m["content"] for m in chat.last_sent()]
    assert sent == ["a", reply_to("a").content, "b", reply_to("b").content, "c"]
    # And forward again: the edited branch as it was.
    chat.switch(Message.objects.get(content="b"), "next")
    assert chat.path()[2:] == ["b, edited", reply_to("b, edited").content]


def test_switching_a_reply_version_shows_what_followed_it(chat):
    chat.send("a")
    first = reply_to("a")
    chat.send("b")
    chat.regenerate(first)
    assert chat.path() == ["a", reply_to("a").content]
    chat.switch(reply_to("a"), "previous")
    assert chat.path() == ["a", first.content, "b", reply_to("b").content]
    assert chat.items()[1].versions == Versions(1, 2)


def test_there_is_no_version_past_the_last(chat):
    chat.send("a")
    message = Message.objects.get(content="a")
    response = chat.switch(message, "next")
    assert response["HX-Retarget"] == "#chat-notice"
    assert "There is no other version that way." in response.content.decode()
    response = chat.switch(message, "sideways")
    assert "Choose the previous or next version." in response.content.decode()


def test_switching_works_without_javascript(chat):
    chat.send("a")
    chat.regenerate(reply_to("a"))
    response = chat.post("version_switch", reply_to("a").pk, data={"go": "previous"}, htmx=False)
    assert response.status_code == 302
    assert chat.items()[1].versions == Versions(1, 2)


def test_n_choices_then_use_this_reply_on_choice_2_sends_choice_2(chat, conversation, simulator):
    chat_services.conversation_update(conversation=conversation, n=3)
    chat.send("pick one")
    reply = chat.items()[-1]
    assert reply.has_choices and len(reply.choices) == 3
    second = reply.choices[1]
    response = chat.post("choice_select", second.pk)
    assert response["HX-Retarget"] == "#messages"
    chat_services.conversation_update(conversation=conversation, n=None)
    chat.send("and now?")
    assert chat.last_sent()[1] == {"role": "assistant", "content": second.content}
    assert second.content.startswith("Simulated reply 2")


# --- Nothing changes while a reply is written ---


def test_regenerate_edit_and_switch_are_refused_while_a_reply_is_written(
    client, alice, conversation, simulator, enqueued
):
    client.force_login(alice)
    client.post(reverse("message_send", args=[conversation.pk]), {"content": "a"}, **HTMX)
    enqueued.drain()
    client.post(reverse("message_send", args=[conversation.pk]), {"content": "b"}, **HTMX)
    # "b"'s reply is queued, not written yet.
    first = reply_to("a")
    selections = dict(Message.objects.values_list("pk", "is_selected"))
    counts = (Message.objects.count(), Completion.objects.count())
    for name, mid, data, text in [
        ("reply_regenerate", first.pk, {}, "before regenerating"),
        ("message_edit", first.parent_id, {"content": "x"}, "before editing a message"),
        ("version_switch", first.pk, {"go": "next"}, "before switching versions"),
    ]:
        response = client.post(reverse(name, args=[conversation.pk, mid]), data, **HTMX)
        assert response.status_code == 200, name
        assert f"Wait for the reply being written to finish {text}." in response.content.decode()
    assert (Message.objects.count(), Completion.objects.count()) == counts
    assert dict(Message.objects.values_list("pk", "is_selected")) == selections


# --- Copy ---


def test_the_source_of_a_message_is_its_text_as_written(client, alice, chat):
    chat.send("**bold?**")
    reply = reply_to("**bold?**")
    url = reverse("message_source", args=[reply.conversation_id, reply.pk])
    response = client.get(url)
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode() == reply.content


# --- Ownership ---


def test_another_user_gets_404_on_every_new_url(client, bob, chat):
    chat.send("mine")
    message = Message.objects.get(content="mine")
    reply = reply_to("mine")
    client.force_login(bob)
    pk = message.conversation_id
    for method, name, mid, data in [
        ("post", "version_switch", message.pk, {"go": "next"}),
        ("post", "reply_regenerate", reply.pk, {}),
        ("get", "message_edit", message.pk, {}),
        ("post", "message_edit", message.pk, {"content": "theirs"}),
        ("get", "message_source", reply.pk, {}),
    ]:
        response = getattr(client, method)(reverse(name, args=[pk, mid]), data)
        assert response.status_code == 404, name
    assert not Message.objects.filter(content="theirs").exists()
    assert Completion.objects.count() == 1


def test_a_reply_cannot_be_edited_nor_a_message_of_another_conversation_used(client, alice, chat):
    chat.send("mine")
    reply = reply_to("mine")
    other = chat_services.conversation_create(owner=alice)
    for name, mid in [("message_edit", reply.pk), ("reply_regenerate", reply.parent_id)]:
        response = client.post(reverse(name, args=[other.pk, mid]), {"content": "x"})
        assert response.status_code == 404, name
    response = client.get(reverse("message_edit", args=[reply.conversation_id, reply.pk]))
    assert response.status_code == 404


# --- The chat page stays constant in SQL ---


def add_branch(conversation, parent: Message | None, count: int) -> None:
    """`count` messages after `parent`, as a new version of the turn after it."""
    Message.objects.filter(conversation=conversation, parent=parent).update(is_selected=False)
    before = parent
    for index in range(count):
        user = index % 2 == 0
        completion = None
        if not user:
            completion = Completion.objects.create(
                conversation=conversation,
                user_id=conversation.owner_id,
                request_message=before,
                model=conversation.model,
                status=Completion.Status.SUCCEEDED,
            )
        before = Message.objects.create(
            conversation=conversation,
            role="user" if user else "assistant",
            content=f"branch {index}",
            parent=before,
            position=(parent.position + 1 if parent else 0) + index,
            completion=completion,
            choice_index=None if user else 0,
        )


def test_the_chat_page_runs_the_same_queries_for_10_messages_or_200_on_4_branches(
    client, alice, django_assert_num_queries
):
    from conversations.accounts.selectors import site_settings

    client.force_login(alice)
    small = chat_services.conversation_create(owner=alice)
    large = chat_services.conversation_create(owner=alice)
    add_messages(small, 10)
    add_messages(large, 50)
    chain = list(large.messages.order_by("position"))
    for fork in (chain[29], chain[19], chain[9]):  # after replies: new versions of a message
        add_branch(large, fork, 50)
    assert large.messages.count() == 200
    site_settings()
    with django_assert_num_queries(SESSION + 5):
        client.get(reverse("conversation_detail", args=[small.pk]))
    with django_assert_num_queries(SESSION + 5):
        page = client.get(reverse("conversation_detail", args=[large.pk])).content.decode()
    # The path: 10 messages to the first fork, then its newest branch's 50.
    assert page.count('data-role="user"') == 5 + 25
    assert page.count('value="previous"') == 1


# --- The migration ---


def old_style(conversation, alice):
    """Rows as the code before the tree made them: no parents, positions in order."""
    rows = []

    def message(role, content, position, **extra):
        rows.append(
            Message.objects.create(
                conversation=conversation, role=role, content=content, position=position, **extra
            )
        )
        return rows[-1]

    def call(asked, status=Completion.Status.SUCCEEDED):
        return Completion.objects.create(
            conversation=conversation,
            user=alice,
            request_message=asked,
            model="gpt-4o-mini",
            status=status,
        )

    hello = message("user", "hello", 0)
    three = call(hello)
    for index in range(3):  # n=3, the second choice picked
        message(
            "assistant",
            f"choice {index + 1}",
            1,
            completion=three,
            choice_index=index,
            is_selected=index == 1,
        )
    again = message("user", "again", 2)
    broken = call(again, Completion.Status.FAILED)
    message("assistant", "half a rep", 3, completion=broken, choice_index=0, status="failed")
    retry = call(again)
    message("assistant", "the retry's reply", 4, completion=retry, choice_index=0)
    lost = message("user", "unanswered", 5)
    call(lost, Completion.Status.FAILED)
    message("user", "still there?", 6)
    answered = call(rows[-1])
    message("assistant", "yes", 7, completion=answered, choice_index=0)
    return retry


def test_the_migration_keeps_the_path_of_conversations_made_the_old_way(alice, conversation):
    retry = old_style(conversation, alice)
    before = (
        list(Message.objects.order_by("pk").values_list("pk", "content", "position", "status")),
        list(Completion.objects.order_by("pk").values_list("pk", "status", "total_tokens")),
    )
    migration = importlib.import_module("conversations.migrations.0007_message_tree")
    migration.link_messages(apps, None)
    after = (
        list(Message.objects.order_by("pk").values_list("pk", "content", "position", "status")),
        list(Completion.objects.order_by("pk").values_list("pk", "status", "total_tokens")),
    )
    assert after == before  # no row lost or changed but for the links
    items = selectors.transcript(conversation).items
    shown = [i.selected.content if i.kind == "reply" else i.content for i in items]
    assert shown == [
        "hello",
        "choice 2",
        "again",
        "the retry's reply",
        "unanswered",
        "still there?",
        "yes",
    ]
    # The choices stay one reply; the broken attempt is the retry's earlier version.
    assert [c.content for c in items[1].choices] == ["choice 1", "choice 2", "choice 3"]
    assert items[3].versions == Versions(2, 2)
    retry.refresh_from_db()
    assert retry.version == 2
    # The history sent next is the one the old code sent.
    assert [m["content"] for m in chat_services.history(conversation)] == [
        "hello",
        "choice 2",
        "again",
        "the retry's reply",
        "unanswered",
        "still there?",
        "yes",
    ]
    # Running it again changes nothing.
    links = list(Message.objects.order_by("pk").values_list("parent_id", "is_selected"))
    migration.link_messages(apps, None)
    assert list(Message.objects.order_by("pk").values_list("parent_id", "is_selected")) == links


def test_the_actions_speak_the_pages_language(client, chat):
    chat.send("你好")
    chat.regenerate(reply_to("你好"))
    url = reverse("conversation_detail", args=[reply_to("你好").conversation_id])
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    for words in ("复制", "编辑", "重新生成", "上一个版本", "第 2 版，共 2 版"):
        assert words in page, words
    english = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Regenerate" in english and "重新生成" not in english
