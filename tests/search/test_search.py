"""A person's search of their own chats: substrings in English and Chinese, only their own,
escaped snippets, newest first and paged, the result opening the message's branch, and
the database's index answering (EXPLAIN on each database)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.chat.models import Conversation, Message
from conversations.chat.services import conversations as chat_services
from conversations.search import selectors
from tests.factories import make_conversation


def search(client, query: str, **params) -> str:
    response = client.get(reverse("chat_search"), {"q": query, **params})
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-store"
    return response.content.decode()


def hit_ids(user, query: str, page: int = 1) -> list[int]:
    return [hit.message_id for hit in selectors.search_own(user, query, page).messages]


@pytest.fixture
def chats(alice, bob):
    english = make_conversation(
        alice,
        ("How do Quantum computers work?", "They use qubits in superposition."),
        title="Physics",
    )
    chinese = make_conversation(
        alice,
        ("请解释量子计算的基本原理", "量子计算利用量子比特的叠加态。"),
        title="量子问题",
    )
    bobs = make_conversation(bob, ("Quantum secrets of bob", "量子计算 for bob"), title="Bob")
    return english, chinese, bobs


def test_it_finds_english_substrings_whatever_their_case(alice, chats):
    english, _chinese, _bobs = chats
    found = hit_ids(alice, "QUANTUM comp")
    assert found == [english.messages.get(role="user").pk]
    assert hit_ids(alice, "superpos") == [english.messages.get(role="assistant").pk]


def test_it_finds_chinese_substrings(alice, chats):
    _english, chinese, _bobs = chats
    user, reply = chinese.messages.get(role="user"), chinese.messages.get(role="assistant")
    assert hit_ids(alice, "量子计算") == [reply.pk, user.pk]  # newest first
    assert hit_ids(alice, "基本原理") == [user.pk]
    # Two characters have no trigram: the scan of her own messages finds them too.
    assert hit_ids(alice, "比特") == [reply.pk]
    assert hit_ids(alice, "量") == [reply.pk, user.pk]


def test_it_never_finds_another_users_messages(alice, bob, chats, client):
    _english, _chinese, bobs = chats
    assert hit_ids(alice, "secrets") == []
    assert all(
        Message.objects.get(pk=pk).conversation.owner_id == alice.pk
        for pk in hit_ids(alice, "量子计算") + hit_ids(alice, "quantum")
    )
    client.force_login(alice)
    page = search(client, "bob")
    assert "Quantum secrets of bob" not in page
    assert f"/c/{bobs.pk}/" not in page
    assert hit_ids(bob, "secrets") == [bobs.messages.get(role="user").pk]


def test_it_finds_titles_and_archived_chats(alice, chats, alice_client):
    english, chinese, _bobs = chats
    chat_services.conversation_archive(conversation=english, archived=True)
    results = selectors.search_own(alice, "问题")
    assert [hit.conversation_id for hit in results.titles] == [chinese.pk]
    page = search(alice_client, "qubits")
    assert "Archived" in page
    assert f'href="/c/{english.pk}/?at=' in page


def test_the_snippet_is_escaped_and_marks_the_match(alice, alice_client):
    make_conversation(alice, ("look: <script>alert('x')</script> needle here", "ok"))
    page = search(alice_client, "needle")
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; " in page
    assert "<mark>needle</mark> here" in page
    # A query that is markup is text too.
    page = search(alice_client, "<script>")
    assert "<mark>&lt;script&gt;</mark>" in page
    assert 'value="&lt;script&gt;"' in page


def test_results_are_newest_first_and_paged(alice, alice_client):
    conversation = make_conversation(alice, *[(f"needle {i}", f"reply {i}") for i in range(25)])
    first = selectors.search_own(alice, "needle")
    asked = list(
        conversation.messages.filter(role="user").order_by("-pk").values_list("pk", flat=True)
    )
    assert [hit.message_id for hit in first.messages] == asked[:20]
    assert first.has_more
    second = selectors.search_own(alice, "needle", 2)
    assert [hit.message_id for hit in second.messages] == asked[20:]
    assert not second.has_more
    page = search(alice_client, "needle")
    assert 'href="?q=needle&amp;page=2" rel="next"' in page
    assert "No more results." in search(alice_client, "needle", page=3)


def test_an_empty_or_missing_query_searches_nothing(alice, alice_client, chats):
    page = search(alice_client, "   ")
    assert "No message of yours" not in page
    assert 'id="message-hits"' not in page
    assert selectors.search_own(alice, "").empty
    assert "No message of yours holds “zebra”." in search(alice_client, "zebra")


def test_a_streaming_reply_is_found_once_it_has_ended(alice):
    conversation = make_conversation(alice, ("start", "first"))
    streaming = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="half a wombat",
        position=2,
        parent=conversation.messages.get(role="assistant"),
        status=Message.Status.STREAMING,
    )
    assert hit_ids(alice, "wombat") == []
    Message.objects.filter(pk=streaming.pk).update(
        content="a whole wombat", status=Message.Status.COMPLETE
    )
    assert hit_ids(alice, "wombat") == [streaming.pk]
    assert hit_ids(alice, "whole wom") == [streaming.pk]
    conversation.delete()
    assert hit_ids(alice, "wombat") == []


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's FTS5 table")
def test_the_sqlite_index_stays_equal_to_the_messages(alice):
    """FTS5's integrity check compares the index with the messages it is made from."""
    conversation = make_conversation(alice, ("one two three", "four five six"))
    message = conversation.messages.first()
    Message.objects.filter(pk=message.pk).update(content="changed text")
    Message.objects.create(
        conversation=conversation, role="user", content="live", position=2, status="streaming"
    )
    Message.objects.filter(status="streaming").update(content="live and done", status="complete")
    conversation.messages.filter(role="assistant").delete()
    with connection.cursor() as cursor:
        table = selectors.FTS_TABLE
        cursor.execute(f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)")
    assert hit_ids(alice, "changed") == [message.pk]
    assert hit_ids(alice, "four five") == []


# --- Opening a result ---


def test_a_result_opens_the_conversation_on_the_branch_of_the_message(alice, alice_client):
    conversation = make_conversation(alice, ("first version: apples", "about apples"))
    first = conversation.messages.get(role="user")
    # An edit: a second version of the first message, which the path now goes through.
    Message.objects.filter(pk=first.pk).update(is_selected=False)
    Message.objects.create(
        conversation=conversation, role="user", content="second version: pears", position=0
    )
    page = alice_client.get(reverse("conversation_detail", args=[conversation.pk])).content
    assert b"first version: apples" not in page

    (hit,) = selectors.search_own(alice, "apples").messages[:1]
    assert hit.message_id == conversation.messages.get(content="about apples").pk
    url = f"{reverse('conversation_detail', args=[conversation.pk])}?at={hit.message_id}"
    page = alice_client.get(url).content.decode()
    assert "first version: apples" in page
    assert "about apples" in page
    assert "second version: pears" not in page
    assert f'id="{hit.anchor}"' in page


def test_opening_another_users_message_is_404(alice, bob, alice_client):
    alices = make_conversation(alice, ("mine", "ok"))
    bobs = make_conversation(bob, ("his", "ok"))
    bobs_message = bobs.messages.first()
    url = reverse("conversation_detail", args=[alices.pk])
    assert alice_client.get(f"{url}?at={bobs_message.pk}").status_code == 404
    url = reverse("conversation_detail", args=[bobs.pk])
    assert alice_client.get(f"{url}?at={bobs_message.pk}").status_code == 404


def test_search_needs_a_login(client, db):
    response = client.get(reverse("chat_search"), {"q": "x"})
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_the_search_page_runs_the_same_queries_for_few_or_many_hits(
    alice, alice_client, django_assert_num_queries
):
    make_conversation(alice, ("needle once", "ok"))
    search(alice_client, "needle")  # the session and the user, cached or not
    with CaptureQueriesContext(connection) as few:
        search(alice_client, "needle")
    # (the session, with no shared cache), the user, the messages, the titles
    assert len(few.captured_queries) <= 4
    make_conversation(alice, *[(f"needle {i}", "ok") for i in range(30)], title="needle chat")
    with django_assert_num_queries(len(few.captured_queries)):
        search(alice_client, "needle")


# --- The database's index answers ---


def plan(user, query: str) -> str:
    rows = (
        selectors.matching_messages(user, query).order_by("-pk").values_list("pk", flat=True)[:21]
    )
    sql, params = rows.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # New rows wait in the GIN index's pending list until (auto)vacuum merges
            # them; the planner counts reading that list, as it should.
            cursor.execute("SELECT gin_clean_pending_list('msg_content_trgm')")
            cursor.execute("ANALYZE conversations_message")
            cursor.execute("ANALYZE conversations_conversation")
            cursor.execute(f"EXPLAIN {sql}", params)
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return "\n".join(str(row) for row in cursor.fetchall())


def test_the_query_uses_the_trigram_index(alice, chats):
    # Enough of her own messages that reading them all costs more than the index.
    conversation = Conversation.objects.create(owner=alice, model="gpt-4o-mini")
    Message.objects.bulk_create(
        Message(
            conversation=conversation,
            role="user",
            content=f"message number {i} about the weather and 天气 {i * 7919 % 10007}",
            position=i,
        )
        for i in range(5000)
    )
    for query in ("quantum", "量子计算"):
        found = plan(alice, query)
        if connection.vendor == "postgresql":
            assert "msg_content_trgm" in found, found
        else:
            assert "VIRTUAL TABLE INDEX" in found, found
            assert "conversations_message_search" in found, found


def test_every_conversation_kind_is_searchable(alice):
    imported = Conversation.objects.create(owner=alice, model="x", origin="chatgpt")
    Message.objects.create(
        conversation=imported, role="assistant", content="imported llama", position=0
    )
    assert len(hit_ids(alice, "llama")) == 1
