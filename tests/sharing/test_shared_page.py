"""The shared page: the snapshot (no later message, no later branch or title), who may
open it, how it is served (noindex, never cached, no referrer), what it escapes, and its
constant number of queries."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.accounts.selectors import site_settings
from conversations.chat.models import Completion, Message
from conversations.chat.services import versions
from conversations.shared.rendering import render_markdown_for_storage
from conversations.sharing import services
from conversations.sharing.selectors import shared_snapshot
from tests.factories import make_conversation

from .helpers import add_turn, share, site, url_of


def test_a_share_page_shows_the_shared_messages_and_not_a_later_one(bob_client, alice):
    conversation = make_conversation(alice, ("first question", "first answer"), title="Q&A")
    link = share(conversation)
    add_turn(
        conversation,
        "question after sharing",
        "answer after sharing",
        after=conversation.messages.get(content="first answer"),
    )
    response = bob_client.get(url_of(link))
    assert response.status_code == 200
    page = response.content.decode()
    assert "first question" in page and "first answer" in page and "Q&amp;A" in page
    assert "after sharing" not in page


def test_a_branch_switched_after_sharing_does_not_change_the_page(bob_client, alice):
    conversation = make_conversation(alice, ("ask", "answer one"))
    asked = conversation.messages.get(content="ask")
    first = conversation.messages.get(content="answer one")
    # A regenerated reply, not on the path when the link is made.
    regenerated = Completion.objects.create(
        conversation=conversation,
        user=alice,
        request_message=asked,
        model="gpt-4o-mini",
        status=Completion.Status.SUCCEEDED,
        version=2,
    )
    second = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="answer two",
        parent=asked,
        position=1,
        completion=regenerated,
        choice_index=0,
        is_selected=False,
    )
    link = share(conversation)
    versions.version_switch(message=first, direction=versions.Direction.NEXT)
    add_turn(conversation, "on the other branch", "more", after=second)
    second.refresh_from_db()
    assert second.is_selected
    page = bob_client.get(url_of(link)).content.decode()
    assert "answer one" in page
    assert "answer two" not in page and "on the other branch" not in page


def test_a_rename_after_sharing_does_not_change_the_title_shown(bob_client, alice):
    conversation = make_conversation(alice, ("hi", "hello"), title="Before")
    link = share(conversation)
    conversation.title = "After"
    conversation.save(update_fields=["title"])
    page = bob_client.get(url_of(link)).content.decode()
    assert "Before" in page and "After" not in page


def test_a_revoked_link_answers_404(bob_client, alice):
    link = services.share_link_revoke(link=share(make_conversation(alice, ("hi", "hello"))))
    assert bob_client.get(url_of(link)).status_code == 404


def test_an_unknown_token_answers_404(bob_client, alice):
    share(make_conversation(alice, ("hi", "hello")))
    assert bob_client.get(reverse("shared_conversation", args=["x" * 43])).status_code == 404
    assert bob_client.get(reverse("shared_conversation", args=["x" * 500])).status_code == 404


def test_sharing_off_site_wide_closes_every_existing_link(bob_client, alice_client, alice):
    link = share(make_conversation(alice, ("hi", "hello")))
    site(sharing=False)
    assert bob_client.get(url_of(link)).status_code == 404
    site(sharing=True)
    assert bob_client.get(url_of(link)).status_code == 200


def test_a_link_of_a_deactivated_account_answers_404(bob_client, alice):
    link = share(make_conversation(alice, ("hi", "hello")))
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    assert bob_client.get(url_of(link)).status_code == 404


def test_an_anonymous_visitor_is_sent_to_log_in(client, alice):
    link = share(make_conversation(alice, ("hi", "hello")))
    response = client.get(url_of(link))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    # The address holds the token: the redirect tells no other site of it either.
    assert response["Referrer-Policy"] == "no-referrer"


def test_with_public_links_an_anonymous_visitor_reads_it(client, alice):
    link = share(make_conversation(alice, ("hi there", "hello there")))
    site(public_share_links=True)
    response = client.get(url_of(link))
    assert response.status_code == 200
    page = response.content.decode()
    assert "hi there" in page and "hello there" in page
    # No session to mark it private by (chatsite.security): the view does.
    assert "private" in response["Cache-Control"] and "no-store" in response["Cache-Control"]


def test_public_links_still_close_when_revoked_or_sharing_is_off(client, alice):
    conversation = make_conversation(alice, ("hi", "hello"))
    revoked = services.share_link_revoke(link=share(conversation))
    live = share(conversation)
    site(public_share_links=True)
    assert client.get(url_of(revoked)).status_code == 404
    site(public_share_links=True, sharing=False)
    assert client.get(url_of(live)).status_code == 404


def test_the_page_is_never_indexed_cached_or_told_to_other_sites(bob_client, alice):
    response = bob_client.get(url_of(share(make_conversation(alice, ("hi", "hello")))))
    page = response.content.decode()
    assert '<meta name="robots" content="noindex, nofollow">' in page
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    cache_control = {part.strip() for part in response["Cache-Control"].split(",")}
    assert {"private", "no-store"} <= cache_control and "public" not in cache_control
    assert response["Referrer-Policy"] == "no-referrer"
    # Under the site's CSP, with no inline script or style.
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    assert "<style" not in page and " style=" not in page


def test_a_script_in_a_message_or_a_reply_is_escaped(bob_client, alice):
    conversation = make_conversation(
        alice,
        ("<script>alert('user')</script>", "<script>alert('reply')</script> **bold**"),
        ("again", "<img src=x onerror=alert('stored')>"),
    )
    # The second reply as a finished one is kept: its sanitized HTML stored with it.
    stored = conversation.messages.get(content__startswith="<img")
    stored.html = render_markdown_for_storage(stored.content)
    stored.save(update_fields=["html"])
    page = bob_client.get(url_of(share(conversation))).content.decode()
    assert "&lt;script&gt;alert(&#x27;user&#x27;)&lt;/script&gt;" in page
    assert "<script>alert" not in page
    assert not re.search(r"<img[^>]*onerror", page)
    assert "<strong>bold</strong>" in page


def test_the_page_is_read_only_and_leads_to_nothing_of_the_owners(bob_client, alice):
    conversation = make_conversation(alice, ("hi", "hello"), ("more", "sure"))
    page = bob_client.get(url_of(share(conversation))).content.decode()
    assert "hi" in page and "sure" in page
    assert f"/c/{conversation.pk}/" not in page
    assert 'id="composer"' not in page and "<textarea" not in page
    assert "Regenerate" not in page and "action-edit" not in page and "action-copy" not in page
    # Who shared it is not said.
    assert "alice" not in page


def test_the_owner_is_told_where_to_manage_the_link(alice_client, alice):
    page = alice_client.get(url_of(share(make_conversation(alice, ("hi", "hello"))))).content
    assert "You shared this conversation." in page.decode()
    assert f'href="{reverse("share_links")}"' in page.decode()


def test_only_the_chosen_choice_of_a_reply_is_shown(bob_client, alice):
    conversation = make_conversation(alice, ("pick", "choice zero"))
    zero = conversation.messages.get(content="choice zero")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="choice one",
        parent=zero.parent,
        position=1,
        completion=zero.completion,
        choice_index=1,
        is_selected=False,
    )
    page = bob_client.get(url_of(share(conversation))).content.decode()
    assert "choice zero" in page and "choice one" not in page


@pytest.mark.parametrize("turns", [5, 100])
def test_the_snapshot_takes_three_queries_whatever_its_size(
    alice, turns, django_assert_num_queries
):
    conversation = make_conversation(alice, *[(f"q{n}", f"a{n}") for n in range(turns)])
    link = share(conversation)
    site_settings()  # read once: cached from here
    with django_assert_num_queries(3):
        snapshot = shared_snapshot(link.token)
    assert len(snapshot.items) == 2 * turns


def test_the_page_takes_as_many_queries_for_10_messages_as_for_200(bob_client, alice):
    small = share(make_conversation(alice, *[(f"q{n}", f"a{n}") for n in range(5)]))
    large = share(make_conversation(alice, *[(f"q{n}", f"a{n}") for n in range(100)]))
    bob_client.get(url_of(small))  # the site settings cached, the session loaded once
    counts = []
    for link in (small, large):
        with CaptureQueriesContext(connection) as queries:
            assert bob_client.get(url_of(link)).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]
