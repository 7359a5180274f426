"""Share links, the owner's side: making one from a conversation (htmx or not), what is
refused, the list of links and revoking, and 404 for everyone else."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from conversations.chat.models import Completion, Conversation, Message
from conversations.sharing import selectors, services
from conversations.sharing.models import ShareLink
from tests.factories import make_conversation

from .helpers import share, site, url_of

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_sharing_snapshots_the_path_and_the_title_as_they_are_now(alice):
    conversation = make_conversation(alice, ("one", "uno"), ("two", "dos"), title="Numbers")
    link = share(conversation)
    last = conversation.messages.get(content="dos")
    assert (link.leaf_id, link.title, link.owner, link.is_live) == (last.pk, "Numbers", alice, True)
    assert len(link.token) >= 43


def test_with_htmx_the_link_is_shown_to_copy(alice_client, alice):
    conversation = make_conversation(alice, ("hi", "hello"))
    response = alice_client.post(reverse("conversation_share", args=[conversation.pk]), **HTMX)
    assert response.status_code == 200
    link = ShareLink.objects.get(conversation=conversation)
    page = response.content.decode()
    full = f"http://testserver{url_of(link)}"
    assert f'value="{full}"' in page and "readonly" in page
    assert f'<label for="share-url-{link.pk}">' in page
    assert f'class="button copy-value" aria-controls="share-url-{link.pk}"' in page
    assert f'href="{reverse("share_links")}"' in page
    assert "<html" not in page  # a partial, not the page


def test_without_htmx_sharing_goes_to_the_list_of_links(alice_client, alice):
    conversation = make_conversation(alice, ("hi", "hello"), title="Greetings")
    url = reverse("conversation_share", args=[conversation.pk])
    response = alice_client.post(url, follow=True)
    assert response.redirect_chain[-1][0] == reverse("share_links")
    link = ShareLink.objects.get(conversation=conversation)
    page = response.content.decode()
    assert "A share link to “Greetings” is made" in page
    assert f"http://testserver{url_of(link)}" in page


def test_sharing_needs_a_post(alice_client, alice):
    conversation = make_conversation(alice, ("hi", "hello"))
    url = reverse("conversation_share", args=[conversation.pk])
    assert alice_client.get(url).status_code == 405
    assert not ShareLink.objects.exists()


def test_a_conversation_without_messages_cannot_be_shared(alice_client, alice):
    conversation = Conversation.objects.create(owner=alice, model="gpt-4o-mini")
    url = reverse("conversation_share", args=[conversation.pk])
    response = alice_client.post(url, **HTMX)
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    assert "nothing to share yet" in response.content.decode()
    shown = alice_client.post(url, follow=True)
    assert shown.redirect_chain[-1][0] == reverse("conversation_detail", args=[conversation.pk])
    assert "nothing to share yet" in shown.content.decode()
    assert not ShareLink.objects.exists()


def test_sharing_is_refused_while_a_reply_is_written(alice):
    conversation = make_conversation(alice, ("hi", "hello"))
    asked = Message.objects.create(
        conversation=conversation,
        role="user",
        content="and?",
        parent=conversation.messages.get(content="hello"),
        position=2,
    )
    completion = Completion.objects.create(
        conversation=conversation,
        user=alice,
        request_message=asked,
        model="gpt-4o-mini",
        status=Completion.Status.RUNNING,
    )
    with pytest.raises(ValidationError, match="Wait for the reply"):
        share(conversation)
    # Still refused with its text streaming in, until the call has ended.
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="half a",
        parent=asked,
        position=3,
        completion=completion,
        choice_index=0,
        status=Message.Status.STREAMING,
    )
    with pytest.raises(ValidationError, match="Wait for the reply"):
        share(conversation)
    Completion.objects.filter(pk=completion.pk).update(status=Completion.Status.SUCCEEDED)
    Message.objects.filter(completion=completion).update(status=Message.Status.COMPLETE)
    assert share(conversation).leaf.content == "half a"


def test_a_conversation_has_at_most_twenty_live_links(alice):
    conversation = make_conversation(alice, ("hi", "hello"))
    links = [share(conversation) for _ in range(services.MAX_LIVE_LINKS)]
    with pytest.raises(ValidationError, match="revoke one first"):
        share(conversation)
    services.share_link_revoke(link=links[0])
    assert share(conversation).is_live


def test_sharing_off_site_wide_refuses_a_new_link(alice_client, alice):
    conversation = make_conversation(alice, ("hi", "hello"))
    site(sharing=False)
    with pytest.raises(ValidationError, match="turned off"):
        share(conversation)
    response = alice_client.post(reverse("conversation_share", args=[conversation.pk]), **HTMX)
    assert "Sharing is turned off on this site." in response.content.decode()
    assert not ShareLink.objects.exists()
    listed = alice_client.get(reverse("share_links")).content.decode()
    assert "Sharing is turned off on this site" in listed


def test_the_list_shows_each_link_live_or_revoked(alice_client, alice):
    conversation = make_conversation(alice, ("hi", "hello"), title="Greetings")
    revoked = share(conversation)
    services.share_link_revoke(link=revoked)
    live = share(conversation)
    page = alice_client.get(reverse("share_links")).content.decode()
    assert page.count("Greetings") >= 2
    assert f'href="{reverse("conversation_detail", args=[conversation.pk])}"' in page
    assert "Live" in page and "Revoked" in page
    # Only a live link is there to copy and revoke.
    assert f"http://testserver{url_of(live)}" in page and url_of(revoked) not in page
    assert reverse("share_link_revoke", args=[live.pk]) in page
    assert reverse("share_link_revoke", args=[revoked.pk]) not in page
    assert 'name="csrfmiddlewaretoken"' in page


def test_the_list_says_when_there_is_no_link(alice_client):
    page = alice_client.get(reverse("share_links")).content.decode()
    assert "You have not shared a conversation yet." in page


def test_the_list_is_paginated_by_fifty(alice_client, alice):
    conversation = make_conversation(alice, ("hi", "hello"))
    leaf = conversation.messages.last()
    ShareLink.objects.bulk_create(
        ShareLink(
            conversation=conversation,
            owner=alice,
            leaf=leaf,
            title=f"link {number}",
            revoked_at=timezone.now(),
            created_at=timezone.now() - timedelta(minutes=number),
        )
        for number in range(selectors.LINKS_PAGE_SIZE + 1)
    )
    first = alice_client.get(reverse("share_links")).content.decode()
    assert "link 0<" in first and "link 49<" in first and "link 50<" not in first
    assert "?page=2" in first
    second = alice_client.get(reverse("share_links"), {"page": 2}).content.decode()
    assert "link 50<" in second and "link 49<" not in second and "?page=1" in second
    assert alice_client.get(reverse("share_links"), {"page": 3}).status_code == 404


def test_the_list_requires_log_in(client):
    response = client.get(reverse("share_links"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_revoking_takes_effect_at_once(alice_client, alice):
    link = share(make_conversation(alice, ("hi", "hello"), title="Greetings"))
    assert alice_client.get(url_of(link)).status_code == 200
    response = alice_client.post(reverse("share_link_revoke", args=[link.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("share_links")
    assert "The share link to “Greetings” is revoked" in response.content.decode()
    link.refresh_from_db()
    assert link.revoked_at is not None
    assert alice_client.get(url_of(link)).status_code == 404


def test_revoking_twice_keeps_the_first_time(alice):
    link = services.share_link_revoke(link=share(make_conversation(alice, ("hi", "hello"))))
    first = link.revoked_at
    assert services.share_link_revoke(link=link).revoked_at == first


def test_every_url_of_alices_links_answers_404_to_bob(bob_client, alice, bob):
    conversation = make_conversation(alice, ("hi", "hello"), title="Alice secret")
    link = share(conversation)
    share_url = reverse("conversation_share", args=[conversation.pk])
    assert bob_client.post(share_url).status_code == 404
    assert bob_client.post(share_url, **HTMX).status_code == 404
    assert bob_client.post(reverse("share_link_revoke", args=[link.pk])).status_code == 404
    assert ShareLink.objects.filter(conversation=conversation).count() == 1
    link.refresh_from_db()
    assert link.is_live
    assert "Alice secret" not in bob_client.get(reverse("share_links")).content.decode()
    with pytest.raises(Http404):
        selectors.get_share_link_for_user(bob, link.pk)


def test_bob_cannot_share_alices_conversation_through_the_service(alice, bob):
    conversation = make_conversation(alice, ("hi", "hello"))
    with pytest.raises(Http404):
        services.share_link_create(owner=bob, conversation=conversation)
    assert not ShareLink.objects.exists()
