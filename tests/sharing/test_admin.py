"""Share links in the admin: staff see every link and revoke them with the list's action;
nothing else changes a link there, and nobody adds one."""

from __future__ import annotations

from django.urls import reverse

from conversations.models import Conversation, SiteSettings
from conversations.sharing import services
from tests.factories import make_conversation

from .helpers import share, url_of

LIST = "admin:conversations_sharelink_changelist"


def test_staff_see_every_live_link(client, charlie, alice, bob):
    mine = share(make_conversation(alice, ("hi", "hello"), title="Alice shared chat"))
    theirs = share(make_conversation(bob, ("yo", "hey"), title="Bob shared chat"))
    services.share_link_revoke(link=theirs)
    client.force_login(charlie)
    page = client.get(reverse(LIST)).content.decode()
    assert "Alice shared chat" in page and "Bob shared chat" in page
    assert "alice" in page and str(mine.conversation_id) in page
    live = client.get(reverse(LIST), {"status": "live"}).content.decode()
    assert "Alice shared chat" in live and "Bob shared chat" not in live
    revoked = client.get(reverse(LIST), {"status": "revoked"}).content.decode()
    assert "Bob shared chat" in revoked and "Alice shared chat" not in revoked
    found = client.get(reverse(LIST), {"q": "bob"}).content.decode()
    assert "Bob shared chat" in found and "Alice shared chat" not in found


def test_the_revoke_action_closes_the_links_at_once(client, charlie, alice, bob):
    link = share(make_conversation(alice, ("hi", "hello")))
    other = share(make_conversation(alice, ("yo", "hey")))
    client.force_login(charlie)
    response = client.post(
        reverse(LIST), {"action": "revoke_selected", "_selected_action": [link.pk]}, follow=True
    )
    assert "1 link revoked." in response.content.decode()
    link.refresh_from_db()
    other.refresh_from_db()
    assert not link.is_live and other.is_live
    client.force_login(bob)
    assert client.get(url_of(link)).status_code == 404
    assert client.get(url_of(other)).status_code == 200


def test_a_link_is_never_added_or_edited_in_the_admin(client, charlie, alice):
    link = share(make_conversation(alice, ("hi", "hello"), title="Fixed"))
    client.force_login(charlie)
    add = client.get(reverse("admin:conversations_sharelink_add"))
    assert add.status_code == 403
    change_url = reverse("admin:conversations_sharelink_change", args=[link.pk])
    page = client.get(change_url).content.decode()
    assert "Fixed" in page and 'name="_save"' not in page
    client.post(change_url, {"title": "Changed"})
    link.refresh_from_db()
    assert link.title == "Fixed"
    delete_url = reverse("admin:conversations_sharelink_delete", args=[link.pk])
    assert client.post(delete_url).status_code == 403


def test_people_who_are_not_staff_get_404_on_every_admin_url_of_links(client, bob, alice):
    link = share(make_conversation(alice, ("hi", "hello")))
    info = "admin:conversations_sharelink"
    urls = [reverse(f"{info}_changelist"), reverse(f"{info}_add")]
    urls += [reverse(f"{info}_{page}", args=[link.pk]) for page in ("change", "delete", "history")]
    client.force_login(bob)
    for url in urls:
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 404, url
    link.refresh_from_db()
    assert link.is_live


def reading(mode: str) -> None:
    SiteSettings.objects.update_or_create(pk=1, defaults={"staff_reading": mode})


def test_while_staff_may_not_read_chats_links_show_no_title(client, charlie, alice):
    link = share(make_conversation(alice, ("hi", "hello"), title="Alice secret plans"))
    reading(SiteSettings.StaffReading.NONE)
    client.force_login(charlie)
    page = client.get(reverse(LIST)).content.decode()
    assert "Alice secret plans" not in page
    assert f"Conversation #{link.conversation_id}" in page
    found = client.get(reverse(LIST), {"q": "secret"}).content.decode()
    assert "Conversation #" not in found  # titles are not searched
    assert client.get(reverse(LIST), {"q": "alice"}).status_code == 200
    change_url = reverse("admin:conversations_sharelink_change", args=[link.pk])
    assert client.get(change_url).status_code == 403
    # Revoking from the list still works.
    client.post(reverse(LIST), {"action": "revoke_selected", "_selected_action": [link.pk]})
    link.refresh_from_db()
    assert not link.is_live


def test_while_staff_may_read_only_flagged_chats_only_their_links_show_titles(
    client, charlie, alice
):
    flagged = make_conversation(alice, ("hi", "hello"), title="Flagged one")
    Conversation.objects.filter(pk=flagged.pk).update(flagged=True)
    share(flagged)
    share(make_conversation(alice, ("yo", "hey"), title="Quiet one"))
    reading(SiteSettings.StaffReading.FLAGGED)
    client.force_login(charlie)
    page = client.get(reverse(LIST)).content.decode()
    assert "Flagged one" in page and "Quiet one" not in page
