"""Personal API keys: the page that makes, lists and revokes them; keys kept only as
hashes; the site setting; staff's view and revocation in the admin."""

from __future__ import annotations

import io
import re

from django.contrib.auth.models import User
from django.core.management import call_command
from django.urls import reverse

from conversations.accounts.models import SiteSettings
from conversations.api import services
from conversations.api.errors import ApiError
from conversations.api.models import ApiKey

KEY = re.compile(r'value="(cs-[A-Za-z0-9_-]{40,})"')


def test_it_requires_log_in(client):
    response = client.get(reverse("api_keys"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_header_links_to_the_page(alice_client):
    page = alice_client.get(reverse("chat_home"), follow=True).content.decode()
    assert f'href="{reverse("api_keys")}"' in page and "API keys" in page


def test_a_new_key_is_shown_once_in_full_and_kept_only_as_a_hash(alice_client, alice):
    response = alice_client.post(reverse("api_keys"), {"name": "notebook", "expires": "30"})
    assert response.status_code == 200
    page = response.content.decode()
    text = KEY.search(page).group(1)
    assert len(text) >= 3 + 40 and "shown only this once" in page
    assert "no-store" in response["Cache-Control"]
    key = ApiKey.objects.get(user=alice)
    assert key.name == "notebook" and key.expires_at is not None
    assert text not in (key.hashed, key.salt) and text[3:11] == key.prefix
    # Nowhere in the database: dump every row and look.
    rows = io.StringIO()
    call_command("dumpdata", stdout=rows)
    assert text not in rows.getvalue() and text[11:] not in rows.getvalue()
    # Listed by its start only, never in full again.
    listed = alice_client.get(reverse("api_keys")).content.decode()
    assert key.shown in listed and text not in listed
    assert services.key_authenticate(f"Bearer {text}") == key


def test_a_key_needs_a_name_said_beside_the_field(alice_client, alice):
    response = alice_client.post(reverse("api_keys"), {"name": "  ", "expires": ""})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not ApiKey.objects.exists()


def test_revoking_a_key_stops_it_at_once(alice_client, alice):
    key, text = services.api_key_create(user=alice, name="ci")
    response = alice_client.post(reverse("api_key_revoke", args=[key.pk]), follow=True)
    assert "is revoked" in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is not None
    _refused(text, "revoked")


def test_another_user_gets_404_on_a_keys_url(client, alice, bob):
    key, _text = services.api_key_create(user=alice, name="mine")
    client.force_login(bob)
    assert client.post(reverse("api_key_revoke", args=[key.pk])).status_code == 404
    assert client.get(reverse("api_key_revoke", args=[key.pk])).status_code == 405
    key.refresh_from_db()
    assert key.revoked_at is None
    assert "mine" not in client.get(reverse("api_keys")).content.decode()


def _refused(text: str, words: str) -> None:
    try:
        services.key_authenticate(f"Bearer {text}")
    except ApiError as error:
        assert error.status == 401 and words in error.message
    else:
        raise AssertionError("the key was accepted")


def test_expired_keys_and_inactive_accounts_do_not_work(alice):
    key, text = services.api_key_create(user=alice, name="old")
    ApiKey.objects.filter(pk=key.pk).update(expires_at="2000-01-01T00:00Z")
    _refused(text, "expired")
    key, text = services.api_key_create(user=alice, name="new")
    User.objects.filter(pk=alice.pk).update(is_active=False)
    _refused(text, "not active")
    _refused("cs-short", "Incorrect")
    _refused("sk-someone-elses", "Incorrect")
    try:
        services.key_authenticate(text)  # without "Bearer"
    except ApiError as error:
        assert "Authorization: Bearer" in error.message


def test_the_site_setting_turns_every_key_off(alice_client, alice):
    _key, text = services.api_key_create(user=alice, name="before")
    SiteSettings.objects.update_or_create(pk=1, defaults={"api_keys": False})
    _refused(text, "turned off")
    page = alice_client.get(reverse("api_keys")).content.decode()
    assert "API keys are turned off" in page and 'name="name"' not in page
    refused = alice_client.post(reverse("api_keys"), {"name": "after"})
    assert refused.status_code == 403
    assert ApiKey.objects.filter(user=alice).count() == 1


def test_staff_see_every_key_and_revoke_them_in_the_admin(client, alice, charlie):
    key, text = services.api_key_create(user=alice, name="alice's script")
    client.force_login(charlie)
    listed = client.get(reverse("admin:conversations_apikey_changelist")).content.decode()
    assert "alice&#x27;s script" in listed and key.shown in listed and text not in listed
    page = client.get(reverse("admin:conversations_apikey_change", args=[key.pk]))
    assert page.status_code == 200 and text not in page.content.decode()
    assert key.hashed not in page.content.decode()
    client.post(
        reverse("admin:conversations_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [key.pk]},
    )
    key.refresh_from_db()
    assert key.revoked_at is not None
    _refused(text, "revoked")


def test_plain_users_have_no_keys_admin(client, alice):
    client.force_login(alice)
    response = client.get(reverse("admin:conversations_apikey_changelist"))
    assert response.status_code == 404


def test_posting_the_same_form_again_makes_no_second_key(alice_client, alice):
    page = alice_client.get(reverse("api_keys")).content.decode()
    once = re.search(r'name="once" value="([^"]+)"', page).group(1)
    form = {"name": "notebook", "expires": "", "once": once}
    assert KEY.search(alice_client.post(reverse("api_keys"), form).content.decode())
    again = alice_client.post(reverse("api_keys"), form)
    assert again.status_code == 400 and not KEY.search(again.content.decode())
    assert "already made its key" in again.content.decode()
    assert ApiKey.objects.filter(user=alice).count() == 1
