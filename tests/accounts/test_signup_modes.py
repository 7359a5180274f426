"""Sign-up modes set in the admin (open, approval, invitation, closed), invitations, and
approval of pending accounts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from conversations.models import Invitation, PendingAccount, SiteSettings

PASSWORD = "a-long-pass-phrase"
PENDING = "Your account is waiting for approval by an administrator."


@pytest.fixture
def signup_mode(db):
    def set_mode(mode: str) -> None:
        SiteSettings.objects.update_or_create(pk=1, defaults={"signup_mode": mode})

    return set_mode


def sign_up(client: Client, username: str = "dora", **extra: str):
    data = {"username": username, "password1": PASSWORD, "password2": PASSWORD, **extra}
    return client.post(reverse("signup"), data)


PENDING_LIST = "admin:conversations_pendingaccount_changelist"


def on_pending(admin: Client, action: str, username: str):
    """Run an admin action on one pending account, as from its list."""
    pending = PendingAccount.objects.get(user__username=username)
    data = {"action": action, "_selected_action": [pending.pk]}
    return admin.post(reverse(PENDING_LIST), data, follow=True)


def logged_in(client: Client) -> bool:
    return client.get(reverse("chat_home")).status_code == 200


def field_errors(response, name: str) -> list[str]:
    return response.context["form"].errors.get(name, [])


# --- Open (the default) ---


def test_sign_up_is_open_when_nobody_has_changed_the_setting(client, db):
    SiteSettings.objects.all().delete()
    response = sign_up(client)
    assert response["Location"] == reverse("chat_home")
    assert logged_in(client)
    client.post(reverse("logout"))
    assert "invite" not in client.get(reverse("signup")).context["form"].fields


# --- Approval ---


def test_with_approval_a_new_account_waits_and_is_not_logged_in(client, signup_mode):
    signup_mode("approval")
    page = client.get(reverse("signup")).content.decode()
    assert "New accounts wait for approval by an administrator" in page
    response = sign_up(client)
    assert response["Location"] == reverse("signup_pending")
    assert (
        "waiting for approval by an administrator"
        in client.get(response["Location"]).content.decode()
    )
    user = User.objects.get(username="dora")
    assert not user.is_active
    assert PendingAccount.objects.filter(user=user).exists()
    assert not logged_in(client)


def test_a_pending_account_is_told_so_at_log_in_with_its_right_password(client, signup_mode):
    signup_mode("approval")
    sign_up(client)
    right = client.post(reverse("login"), {"username": "dora", "password": PASSWORD})
    assert right.status_code == 200
    assert PENDING in right.content.decode()
    # A wrong password says nothing about the account.
    wrong = client.post(reverse("login"), {"username": "dora", "password": "guess"})
    assert PENDING not in wrong.content.decode()
    assert "Please enter a correct" in wrong.content.decode()


def test_a_deactivated_account_gets_the_usual_error_not_the_pending_one(client, alice):
    User.objects.filter(pk=alice.pk).update(is_active=False)
    response = client.post(reverse("login"), {"username": "alice", "password": "alice-password-1"})
    assert PENDING not in response.content.decode()


def test_staff_approve_pending_accounts_in_the_admin(client, signup_mode, superuser):
    signup_mode("approval")
    sign_up(client, "dora")
    sign_up(client, "eve")
    admin = Client()
    admin.force_login(superuser)
    listing = admin.get(reverse(PENDING_LIST)).content.decode()
    assert "dora" in listing and "eve" in listing
    response = on_pending(admin, "approve_selected", "dora")
    assert "Approved 1 account: it can log in now." in response.content.decode()
    assert User.objects.get(username="dora").is_active
    assert not PendingAccount.objects.filter(user__username="dora").exists()
    assert (
        client.post(reverse("login"), {"username": "dora", "password": PASSWORD}).status_code == 302
    )


def test_rejecting_a_pending_account_deletes_it(client, signup_mode, superuser):
    signup_mode("approval")
    sign_up(client, "eve")
    admin = Client()
    admin.force_login(superuser)
    response = on_pending(admin, "reject_selected", "eve")
    assert "Deleted 1 account." in response.content.decode()
    assert not User.objects.filter(username="eve").exists()
    # The username is free again.
    signup_mode("open")
    assert sign_up(client, "eve")["Location"] == reverse("chat_home")


def test_staff_without_the_permission_cannot_approve(client, signup_mode, charlie):
    signup_mode("approval")
    sign_up(client)
    admin = Client()
    admin.force_login(charlie)
    assert admin.get(reverse(PENDING_LIST)).status_code == 403
    on_pending(admin, "approve_selected", "dora")
    assert not User.objects.get(username="dora").is_active


# --- Invitation ---


def test_by_invitation_the_link_fills_in_the_code_and_signs_up_once(client, signup_mode):
    signup_mode("invite")
    invitation = Invitation.objects.create(note="for Dora")
    page = client.get(f"{reverse('signup')}?invite={invitation.code}").content.decode()
    assert ">Invitation code</label>" in page
    assert f'value="{invitation.code}"' in page
    response = sign_up(client, invite=invitation.code)
    assert response["Location"] == reverse("chat_home")
    assert logged_in(client)
    invitation.refresh_from_db()
    assert invitation.used_by == User.objects.get(username="dora")
    assert invitation.used_at is not None
    # Used up: a second person with the same code is refused beside the field.
    again = sign_up(Client(), "eve", invite=invitation.code)
    assert again.status_code == 200
    assert field_errors(again, "invite") == ["This invitation has already been used."]
    assert 'class="field field-invalid"' in again.content.decode()
    assert not User.objects.filter(username="eve").exists()


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("not-a-code", "This invitation code is not valid. Check the link you were sent."),
        ("expired", "This invitation has expired. Ask for a new one."),
        ("", "This field is required."),
    ],
)
def test_by_invitation_a_bad_code_is_refused_beside_the_field(client, signup_mode, code, error):
    signup_mode("invite")
    if code == "expired":
        code = Invitation.objects.create(expires_at=timezone.now() - timedelta(minutes=1)).code
    response = sign_up(client, invite=code)
    assert field_errors(response, "invite") == [error]
    assert error in response.content.decode()
    assert not User.objects.filter(username="dora").exists()


def test_an_invitation_with_a_future_expiry_works(client, signup_mode):
    signup_mode("invite")
    invitation = Invitation.objects.create(expires_at=timezone.now() + timedelta(days=1))
    assert sign_up(client, invite=invitation.code)["Location"] == reverse("chat_home")


def test_admins_create_invitations_and_see_the_whole_link(signup_mode, superuser):
    admin = Client()
    admin.force_login(superuser)
    response = admin.post(
        reverse("admin:conversations_invitation_add"), {"note": "for Dora", "expires_at": ""}
    )
    assert response.status_code == 302
    invitation = Invitation.objects.get()
    assert invitation.created_by == superuser
    assert len(invitation.code) >= 20
    link = f"http://testserver/accounts/signup/?invite={invitation.code}"
    listing = admin.get(reverse("admin:conversations_invitation_changelist")).content.decode()
    assert link in listing
    assert "can be used" in listing
    change = admin.get(reverse("admin:conversations_invitation_change", args=[invitation.pk]))
    assert link in change.content.decode()


# --- Closed ---


def test_closed_sign_up_says_so_and_refuses_posts(client, signup_mode):
    signup_mode("closed")
    page = client.get(reverse("signup"))
    assert page.status_code == 200
    assert "Sign-up is closed." in page.content.decode()
    assert 'name="password1"' not in page.content.decode()
    response = sign_up(client)
    assert response.status_code == 403
    assert not User.objects.filter(username="dora").exists()


def test_the_login_page_offers_sign_up_unless_it_is_closed(client, signup_mode):
    offer = f'No account yet? <a href="{reverse("signup")}">Sign up</a>'
    for mode in ("open", "approval", "invite"):
        signup_mode(mode)
        assert offer in client.get(reverse("login")).content.decode(), mode
    signup_mode("closed")
    page = client.get(reverse("login")).content.decode()
    assert "No account yet?" not in page
    assert f'href="{reverse("signup")}"' not in page  # nor in the header


# --- The setting in the admin ---


def test_superusers_set_the_sign_up_mode_in_the_admin(signup_mode, superuser):
    SiteSettings.objects.all().delete()
    admin = Client()
    admin.force_login(superuser)
    listing = admin.get(reverse("admin:conversations_sitesettings_changelist"))
    change_url = reverse("admin:conversations_sitesettings_change", args=[1])
    assert listing["Location"] == change_url
    assert (
        "Approval: new accounts wait for an administrator" in admin.get(change_url).content.decode()
    )
    admin.post(change_url, {"signup_mode": "approval", "max_choices": 4, "staff_reading": "all"})
    assert SiteSettings.objects.get().signup_mode == "approval"


def test_only_superusers_see_or_change_the_site_settings(charlie, signup_mode):
    signup_mode("open")
    # Even the model's own permissions are not enough.
    charlie.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_sitesettings", "change_sitesettings"])
    )
    admin = Client()
    admin.force_login(charlie)
    assert admin.get(reverse("admin:conversations_sitesettings_changelist")).status_code == 403
    change_url = reverse("admin:conversations_sitesettings_change", args=[1])
    assert admin.post(change_url, {"signup_mode": "closed"}).status_code == 403
    assert SiteSettings.objects.get().signup_mode == "open"
