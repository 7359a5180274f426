"""A person's import of their own export: the round trip gives the same tree; a bad file
is refused with the problem named beside the field, and leaves nothing behind."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from conversations.billing.models import BudgetPeriod
from conversations.chat.models import Completion, Conversation, Message
from conversations.chat.selectors import transcript
from conversations.portability import readers, services
from conversations.usage import reports
from tests.factories import make_conversation
from tests.portability.helpers import (
    branched_conversation,
    chatgpt_conversation,
    conversation_fields,
    streamed_body,
    tree_shape,
    upload,
    zip_of,
)


def exported(client, conversation: Conversation) -> bytes:
    url = reverse("conversation_export", args=[conversation.pk]) + "?format=json"
    return client.get(url).content


def ours(*messages: dict, **fields) -> dict:
    return {"format": "chatsite.conversation", "version": 1, "title": "Mine", **fields,
            "messages": list(messages)}  # fmt: skip


def message(key, parent=None, role="user", content="Hi", **fields) -> dict:
    return {"id": key, "parent_id": parent, "role": role, "content": content, **fields}


def test_it_imports_its_own_export_as_an_equal_tree(alice_client, alice, enqueued):
    original = branched_conversation(alice)
    response = upload(alice_client, exported(alice_client, original))
    copy = Conversation.objects.exclude(pk=original.pk).get()
    assert response.status_code == 302
    assert response["Location"] == reverse("conversation_detail", args=[copy.pk])
    assert copy.owner == alice
    assert copy.origin == Conversation.Origin.CHATSITE
    assert conversation_fields(copy) == conversation_fields(original)
    assert tree_shape(copy) == tree_shape(original)
    # The page shows the same path.
    shown = [item.content if item.kind == "message" else item.selected.content
             for item in transcript(copy).items]  # fmt: skip
    assert shown == ["Hi", "Hello!", "Tell me a riddle", "What has keys but no locks?"]
    assert not copy.completions.exists()
    assert not copy.messages.exclude(completion=None).exists()
    assert enqueued.calls == []  # nothing asked of the upstream


def test_it_renders_imported_replies_through_the_sanitizer(alice_client, alice):
    original = branched_conversation(alice)
    upload(alice_client, exported(alice_client, original))
    copy = Conversation.objects.exclude(pk=original.pk).get()
    reply = copy.messages.get(content__startswith="Hey there")
    assert "<strong>friend</strong>" in reply.html
    assert "<script>" not in reply.html
    assert copy.messages.get(content="Tell me a riddle").html == ""  # user text is shown plain


def test_an_imported_conversation_counts_as_no_usage_and_no_budget(alice_client, alice, enqueued):
    original = branched_conversation(alice)
    start, end = date.today() - timedelta(days=40), date.today() + timedelta(days=1)
    before = reports.user_summary(alice.pk, start, end)
    calls = Completion.objects.count()
    periods = list(BudgetPeriod.objects.values())
    upload(alice_client, exported(alice_client, original))
    assert Conversation.objects.filter(owner=alice).count() == 2
    assert Completion.objects.count() == calls
    assert reports.user_summary(alice.pk, start, end) == before
    assert list(BudgetPeriod.objects.values()) == periods
    assert enqueued.calls == [] and enqueued.titles == []


def test_the_imported_conversation_page_shows_its_replies(alice_client, alice):
    original = branched_conversation(alice)
    upload(alice_client, exported(alice_client, original))
    copy = Conversation.objects.exclude(pk=original.pk).get()
    response = alice_client.get(reverse("conversation_detail", args=[copy.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "What has keys but no locks?" in page
    assert "Hello!" in page
    assert "<script>alert(1)</script>" not in page


def test_it_imports_a_list_and_a_zip_of_its_exports(alice_client, alice):
    first = make_conversation(alice, ("One", "1"), title="First")
    second = make_conversation(alice, ("Two", "2"), title="Second")
    documents = [json.loads(exported(alice_client, c)) for c in (first, second)]
    response = upload(alice_client, json.dumps(documents).encode())
    assert response.status_code == 302
    assert response["Location"] == reverse("chat_home")
    follow = alice_client.get(response["Location"])
    assert "Imported 2 conversations." in follow.content.decode()
    # The ZIP of all four (two imported), imported again: four more.
    body = streamed_body(alice_client.get(reverse("chats_export")))
    assert upload(alice_client, body, "chats.zip")["Location"] == reverse("chat_home")
    titles = sorted(Conversation.objects.filter(owner=alice).values_list("title", flat=True))
    assert titles == ["First"] * 4 + ["Second"] * 4


def test_it_keeps_pinned_and_archived_times_and_times_without_a_zone(alice_client, alice):
    document = ours(
        message(1, created_at="2024-05-01T10:00:00"),
        message(2, 1, "assistant", "Yes", created_at="2024-05-01T10:00:05.250000+02:00"),
        archived_at="2024-06-01T00:00:00+00:00",
        created_at="2024-05-01T09:59:00Z",
    )
    upload(alice_client, json.dumps(document).encode())
    conversation = Conversation.objects.get(owner=alice)
    first, reply = conversation.messages.order_by("position")
    assert first.created_at.isoformat() == "2024-05-01T10:00:00+00:00"
    assert reply.created_at.isoformat() == "2024-05-01T08:00:05.250000+00:00"
    assert conversation.archived_at.isoformat() == "2024-06-01T00:00:00+00:00"
    assert conversation.last_activity_at == conversation.created_at
    assert (reply.parent_id, reply.position) == (first.pk, 1)


def test_the_import_page_states_the_limit_and_links_the_zip(alice_client, settings):
    settings.IMPORT_MAX_BYTES = 3 * 1024 * 1024
    response = alice_client.get(reverse("chats_import"))
    page = response.content.decode()
    assert response.status_code == 200
    assert filesizeformat(3 * 1024 * 1024) in page
    assert 'enctype="multipart/form-data"' in page
    assert 'name="csrfmiddlewaretoken"' in page
    assert '<label for="id_file">' in page
    assert f'href="{reverse("chats_export")}"' in page
    assert "Download all my chats (ZIP)" in page


def test_it_requires_the_csrf_token(alice):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = upload(client, json.dumps(ours(message(1))).encode())
    assert response.status_code == 403
    assert not Conversation.objects.exists()


def assert_refused(response, problem: str) -> None:
    """Refused with `problem` beside the file field, and no row written."""
    assert response.status_code == 400
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()
    errors = response.context["form"].errors["file"]
    assert any(problem in error for error in errors), errors
    page = response.content.decode()
    field = page.index('class="field field-invalid"')
    error = page.index("errorlist", field)
    assert field < error < page.index('type="file"', field)


MALFORMED = {
    "not JSON": (b'{"format": "chatsite.conversation",', "is not valid JSON (line 1"),
    "not UTF-8": (b'["\xff\xfe"]', "is not UTF-8 text"),
    "another kind of JSON": (b'{"hello": "world"}', "neither a chatsite export nor a ChatGPT"),
    "a number": (b"42", "neither a chatsite export nor a ChatGPT"),
    "an empty list": (b"[]", "holds no conversation"),
    "empty": (b"  \n", "The file is empty"),
    "a broken ZIP": (b"PK\x03\x04not really a zip", "not a ZIP"),
    "a ZIP of no JSON": (b"", "holds no .json file"),  # made in the test
    "a newer version": (json.dumps(ours(version=2)).encode(), "newer chatsite (format version 2)"),
    "a missing parent": (
        json.dumps(ours(message(1), message(2, 99, "assistant"))).encode(),
        "Conversation 1 (“Mine”): message 2 follows message 99, which is not in the file",
    ),
    "a cycle": (
        json.dumps(ours(message(1, 2), message(2, 1, "assistant"))).encode(),
        "form a cycle",
    ),
    "an unknown role": (
        json.dumps(ours(message(1, role="wizard"))).encode(),
        "message 1 has an unknown role wizard",
    ),
    "a duplicate id": (
        json.dumps(ours(message(1), message(1))).encode(),
        "two messages have the id 1",
    ),
    "a bad time": (
        json.dumps(ours(message(1, created_at="yesterday"))).encode(),
        "the time of message 1 is not a date and time",
    ),
    "a bad parameter": (
        json.dumps(ours(parameters={"temperature": 9})).encode(),
        "parameter temperature is out of range",
    ),
    "messages not a list": (json.dumps(ours() | {"messages": {}}).encode(), "not a list"),
    "a bad ChatGPT node": (
        json.dumps(
            [{"title": "Gpt", "mapping": {"a": {"parent": "ghost", "message": None}}}]
        ).encode(),
        "Conversation 1 (“Gpt”): message a follows message ghost",
    ),
    "a ChatGPT unknown role": (
        json.dumps(
            [
                {
                    "title": "Gpt",
                    "mapping": {
                        "a": {
                            "parent": None,
                            "message": {"author": {"role": "robot"}, "content": {"parts": ["x"]}},
                        }
                    },
                }
            ]
        ).encode(),
        "node a has an unknown role robot",
    ),
    "a good conversation, then a bad one": (
        json.dumps([ours(message(1)), ours(message(1, 5), title="Second")]).encode(),
        "Conversation 2 (“Second”)",
    ),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_a_malformed_file_is_refused_and_leaves_no_rows(alice_client, kind):
    data, problem = MALFORMED[kind]
    if kind == "a ZIP of no JSON":
        data = zip_of({})
    assert_refused(upload(alice_client, data), problem)


def test_a_bad_file_in_a_zip_is_named(alice_client):
    data = zip_of({"1-good.json": ours(message(1)), "2-bad.json": ours(message(1, role="x"))})
    assert_refused(upload(alice_client, data, "chats.zip"), "2-bad.json: Conversation 1")


def test_a_failure_while_writing_leaves_no_rows(alice_client, monkeypatch):
    written = []
    make_row = services._message_row

    def fail_on_the_third(*args, **kwargs):
        written.append(1)
        if len(written) == 3:
            raise ValueError("disk full")
        return make_row(*args, **kwargs)

    monkeypatch.setattr(services, "_message_row", fail_on_the_third)
    document = [ours(message(1), message(2, 1, "assistant")), ours(message(1), message(2, 1))]
    with pytest.raises(ValueError, match="disk full"):
        upload(alice_client, json.dumps(document).encode())
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(
    alice_client, settings, monkeypatch
):
    settings.IMPORT_MAX_BYTES = 1000
    monkeypatch.setattr(readers, "_json", lambda *args: pytest.fail("parsed a file too large"))
    data = json.dumps(ours(message(1, content="x" * 2000))).encode()
    assert_refused(upload(alice_client, data), f"larger than {filesizeformat(1000)}")


def test_a_zip_over_the_size_limit_once_unpacked_is_refused(alice_client, settings):
    settings.IMPORT_MAX_BYTES = 1000
    data = zip_of({"1.json": ours(message(1, content="x" * 5000))})
    assert len(data) < 1000  # small packed
    assert_refused(upload(alice_client, data, "chats.zip"), "larger than")


def test_the_size_limit_is_checked_by_the_service_too(alice, settings):
    import io

    from django.core.exceptions import ValidationError

    settings.IMPORT_MAX_BYTES = 10
    with pytest.raises(ValidationError, match="larger than"):
        services.conversations_import(owner=alice, upload=io.BytesIO(b"[" + b" " * 20 + b"]"))


def test_too_many_messages_or_conversations_are_refused(alice_client, settings):
    settings.IMPORT_MAX_MESSAGES = 3
    data = json.dumps(ours(*[message(i, i - 1 or None) for i in range(1, 5)])).encode()
    assert_refused(upload(alice_client, data), "holds 4 messages; this site imports at most 3")
    settings.IMPORT_MAX_CONVERSATIONS = 2
    data = json.dumps([chatgpt_conversation()] * 3).encode()
    assert_refused(upload(alice_client, data), "more than 2 conversations")


def test_an_import_is_written_in_queries_that_grow_with_depth_not_messages(
    alice, django_assert_max_num_queries
):
    import io

    # 40 conversations of 6 messages each: a handful of inserts, not 280.
    document = [
        ours(*[message(i, i - 1 or None, "user" if i % 2 else "assistant") for i in range(1, 7)])
        for _ in range(40)
    ]
    with django_assert_max_num_queries(12):
        made = services.conversations_import(
            owner=alice, upload=io.BytesIO(json.dumps(document).encode())
        )
    assert len(made) == 40
    assert Message.objects.count() == 240
    assert set(Message.objects.values_list("position", flat=True)) == set(range(6))


def test_it_asks_for_a_file(alice_client):
    response = alice_client.post(reverse("chats_import"), {})
    assert_refused(response, "Choose a file to import.")


def test_it_reads_a_file_too_large_to_be_kept_in_memory(alice_client, alice, settings):
    # Over FILE_UPLOAD_MAX_MEMORY_SIZE, Django keeps the upload in a temporary file.
    long = "word " * (settings.FILE_UPLOAD_MAX_MEMORY_SIZE // 5 + 1000)
    response = upload(alice_client, json.dumps(ours(message(1, content=long))).encode())
    assert response.status_code == 302
    assert Message.objects.get().content == long
