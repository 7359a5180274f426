"""Single sign-on (OpenID Connect, accounts/oidc.py): the accounts and groups a log-in finds,
makes and syncs, the callback's failures (back to the log-in page, never a 500), passwords
turned off, discovery, and that nothing changes while it is off.

The provider's side is played here by real RS256 ID tokens signed with a key made for the
run and claims handed to the backend; tests/accounts/test_browser_oidc.py runs the whole
flow against a real provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings
from django.urls import reverse

from chatsite import settings as chatsite_settings
from conversations.accounts import oidc
from conversations.models import PendingAccount, SingleSignOnIdentity, SiteSettings
from tests.support import ROOT, free_port

ISSUER = "https://sso.example.test"
CLIENT_ID = "chatsite"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
OIDC_BACKEND = "conversations.accounts.oidc.Backend"
METADATA = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/auth",
    "token_endpoint": f"{ISSUER}/token",
    "userinfo_endpoint": f"{ISSUER}/me",
    "jwks_uri": f"{ISSUER}/jwks",
    "code_challenge_methods_supported": ["S256"],
    "id_token_signing_alg_values_supported": ["RS256"],
}
SSO_SETTINGS = {
    "OIDC_ISSUER": ISSUER,
    "OIDC_CLIENT_ID": CLIENT_ID,
    "OIDC_CLIENT_SECRET": "client-secret-1",
    "OIDC_PROVIDER_NAME": "Acme",
    "AUTHENTICATION_BACKENDS": [MODEL_BACKEND, OIDC_BACKEND],
}

PROVIDER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def claims_of(sub: str = "u-1", **claims: Any) -> dict[str, Any]:
    return {"sub": sub, **claims}


@pytest.fixture
def sso(db, monkeypatch) -> Iterator[None]:
    """Single sign-on on, with the provider's metadata as if discovered already."""
    monkeypatch.setitem(oidc._discovered, ISSUER, METADATA)
    with override_settings(**SSO_SETTINGS):
        yield


@dataclass
class Provider:
    """What the provider answers the backend: an ID token it signs and userinfo claims."""

    claims: dict[str, Any] = field(default_factory=dict)
    key: Any = PROVIDER_KEY
    token_claims: dict[str, Any] = field(default_factory=dict)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    nonce: str = ""

    def id_token(self) -> str:
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": CLIENT_ID,
            "sub": self.claims["sub"],
            "nonce": self.nonce,
            "iat": now,
            "exp": now + 300,
            **self.token_claims,
        }
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
def provider(sso, monkeypatch) -> Provider:
    played = Provider()
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(PROVIDER_KEY.public_key()))

    def get_token(self, payload):
        played.token_requests.append(payload)
        return {"id_token": played.id_token(), "access_token": "access-1"}

    monkeypatch.setattr(oidc.Backend, "get_token", get_token)
    monkeypatch.setattr(oidc.Backend, "get_userinfo", lambda self, *args: dict(played.claims))
    monkeypatch.setattr(
        oidc.Backend,
        "retrieve_matching_jwk",
        lambda self, token: jwt.PyJWK({**public, "kid": "k1"}, algorithm="RS256"),
    )
    return played


def sso_log_in(client: Client, provider: Provider, claims: dict[str, Any], *, next_url: str = ""):
    """Start at the site, come back from the provider with a code, follow to the end."""
    start = client.get(reverse("oidc_login"), {"next": next_url} if next_url else {})
    assert start.status_code == 302
    query = parse_qs(urlsplit(start["Location"]).query)
    provider.nonce = query["nonce"][0]
    provider.claims = claims
    return client.get(
        reverse("oidc_callback"), {"code": "code-1", "state": query["state"][0]}, follow=True
    )


def logged_in_user(client: Client) -> User | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id) if user_id else None


def group_names(user: User) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


# --- Accounts ---


def test_a_first_log_in_makes_the_account_and_opens_the_chat(client, provider):
    claims = claims_of(
        "u-1",
        email="Dana@Example.com",
        email_verified=True,
        preferred_username="dana",
        given_name="Dana",
        family_name="Scully",
        groups=["research"],
    )
    response = sso_log_in(client, provider, claims)
    assert response.redirect_chain[-1][0] == reverse("chat_home")
    user = logged_in_user(client)
    assert (user.username, user.email, user.first_name, user.last_name) == (
        "dana",
        "Dana@example.com",  # the domain in lower case, as Django keeps addresses
        "Dana",
        "Scully",
    )
    assert user.is_active and not user.is_staff
    assert not user.has_usable_password()
    identity = SingleSignOnIdentity.objects.get(user=user)
    assert (identity.issuer, identity.subject, identity.groups) == (ISSUER, "u-1", ["research"])
    assert group_names(user) == {"research"}
    # The code was exchanged for this site's callback, with the PKCE verifier.
    [token_request] = provider.token_requests
    assert token_request["redirect_uri"] == "http://testserver/accounts/oidc/callback/"
    assert token_request["code"] == "code-1"
    assert token_request["code_verifier"]


def test_it_returns_to_the_page_asked_for(client, provider):
    response = sso_log_in(client, provider, claims_of(), next_url="/usage/")
    assert response.redirect_chain[-1][0] == "/usage/"


def test_the_username_falls_back_to_the_emails_local_part_and_is_made_unique(db, sso):
    User.objects.create_user("Dana")
    user = oidc.identity_login(issuer=ISSUER, claims=claims_of(email="dana@example.com"))
    assert user.username == "dana2"
    odd = oidc.identity_login(issuer=ISSUER, claims=claims_of("u-2", preferred_username="a b/c"))
    assert odd.username == "abc"
    nameless = oidc.identity_login(issuer=ISSUER, claims=claims_of("u-3"))
    assert nameless.username == "user"


def test_it_matches_an_existing_account_by_a_verified_email(alice, sso):
    alice.email = "alice@example.com"
    alice.save()
    claims = claims_of(email="ALICE@example.com", email_verified=True, preferred_username="al")
    assert oidc.identity_login(issuer=ISSUER, claims=claims) == alice
    assert SingleSignOnIdentity.objects.get(subject="u-1").user == alice
    assert User.objects.count() == 1
    alice.refresh_from_db()
    assert alice.has_usable_password()  # her password still logs her in


def test_an_unverified_email_matches_no_account(alice, sso):
    alice.email = "alice@example.com"
    alice.save()
    for verified in (False, None, "false"):
        claims = claims_of(f"u-{verified}", email="alice@example.com", email_verified=verified)
        user = oidc.identity_login(issuer=ISSUER, claims=claims)
        assert user != alice
        assert user.email == ""  # an address nobody verified matches nothing later either
    assert not SingleSignOnIdentity.objects.filter(user=alice).exists()


def test_an_email_two_accounts_share_or_another_subject_has_matches_no_account(alice, bob, sso):
    for user in (alice, bob):
        user.email = "team@example.com"
        user.save()
    claims = claims_of(email="team@example.com", email_verified=True)
    assert oidc.identity_login(issuer=ISSUER, claims=claims) not in (alice, bob)

    bob.email = "bob@example.com"
    bob.save()
    SingleSignOnIdentity.objects.create(user=alice, issuer=ISSUER, subject="the-old-alice")
    assert oidc.identity_login(issuer=ISSUER, claims={**claims, "sub": "u-2"}) != alice


def test_the_identity_is_found_by_sub_after_an_email_change(db, sso):
    first = oidc.identity_login(
        issuer=ISSUER, claims=claims_of(email="dana@old.example", email_verified=True)
    )
    again = oidc.identity_login(
        issuer=ISSUER,
        claims=claims_of(email="dana@new.example", email_verified=True, given_name="Dana"),
    )
    assert again == first
    again.refresh_from_db()
    assert (again.email, again.first_name) == ("dana@new.example", "Dana")
    identity = SingleSignOnIdentity.objects.get()
    assert identity.email == "dana@new.example"
    assert identity.last_login_at > identity.created_at


def test_accounts_are_made_while_sign_up_is_closed(db, sso):
    SiteSettings.objects.update_or_create(pk=1, defaults={"signup_mode": "closed"})
    user = oidc.identity_login(issuer=ISSUER, claims=claims_of())
    assert user.is_active


def test_under_approval_a_new_account_waits_for_staff(client, provider):
    SiteSettings.objects.update_or_create(pk=1, defaults={"signup_mode": "approval"})
    response = sso_log_in(client, provider, claims_of(preferred_username="dana"))
    assert response.redirect_chain[-1][0] == reverse("login")
    assert "Your account is waiting for approval by an administrator." in response.content.decode()
    assert logged_in_user(client) is None
    dana = User.objects.get(username="dana")
    assert not dana.is_active
    assert PendingAccount.objects.filter(user=dana).exists()

    User.objects.filter(pk=dana.pk).update(is_active=True)  # approved
    PendingAccount.objects.all().delete()
    sso_log_in(client, provider, claims_of(preferred_username="dana"))
    assert logged_in_user(client) == dana


def test_an_inactive_account_is_refused(client, provider, alice):
    SingleSignOnIdentity.objects.create(user=alice, issuer=ISSUER, subject="u-1", groups=["a"])
    User.objects.filter(pk=alice.pk).update(is_active=False)
    response = sso_log_in(client, provider, claims_of(groups=["b"]))
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == reverse("login")
    assert "This account is disabled. Ask an administrator." in response.content.decode()
    assert logged_in_user(client) is None
    assert SingleSignOnIdentity.objects.get().groups == ["a"]  # untouched
    assert not Group.objects.filter(name="b").exists()


def test_an_account_made_inactive_is_logged_out_at_its_next_request(client, provider):
    sso_log_in(client, provider, claims_of(preferred_username="dana"))
    assert client.get(reverse("chat_home")).status_code == 200
    User.objects.filter(username="dana").update(is_active=False)
    assert client.get(reverse("chat_home")).status_code == 302


# --- Groups ---


def test_groups_are_given_and_taken_away_as_the_claim_says_and_admin_groups_stay(db, sso):
    handed = Group.objects.create(name="handed-out-in-admin")
    Group.objects.create(name="staff-room")  # exists already: joined, not made again
    user = oidc.identity_login(
        issuer=ISSUER, claims=claims_of(groups=["research", "staff-room", "  ", 7])
    )
    user.groups.add(handed)
    assert group_names(user) == {"research", "staff-room", "handed-out-in-admin"}

    oidc.identity_login(issuer=ISSUER, claims=claims_of(groups=["staff-room", "travel"]))
    assert group_names(user) == {"staff-room", "travel", "handed-out-in-admin"}
    assert Group.objects.filter(name="research").exists()  # only the membership goes
    assert SingleSignOnIdentity.objects.get().groups == ["staff-room", "travel"]

    oidc.identity_login(issuer=ISSUER, claims=claims_of())  # no claim: no group of its own
    assert group_names(user) == {"handed-out-in-admin"}
    assert SingleSignOnIdentity.objects.get().groups == []


def test_a_groups_claim_of_one_name_and_a_claim_of_another_name(db, sso):
    user = oidc.identity_login(issuer=ISSUER, claims=claims_of(groups="research"))
    assert group_names(user) == {"research"}
    with override_settings(OIDC_GROUPS_CLAIM="roles"):
        oidc.identity_login(issuer=ISSUER, claims=claims_of(roles=["ops"], groups=["x"]))
    assert group_names(user) == {"ops"}


def test_groups_are_not_synced_without_a_groups_claim_setting(db, sso):
    user = oidc.identity_login(issuer=ISSUER, claims=claims_of(groups=["research"]))
    with override_settings(OIDC_GROUPS_CLAIM=""):
        oidc.identity_login(issuer=ISSUER, claims=claims_of(groups=[]))
    assert group_names(user) == {"research"}


def test_a_log_in_syncs_groups_in_a_few_queries(db, sso, django_assert_max_num_queries):
    Group.objects.bulk_create(Group(name=f"g{i}") for i in range(10))
    oidc.identity_login(issuer=ISSUER, claims=claims_of(groups=[f"g{i}" for i in range(5)]))
    # The same number whatever the number of groups.
    with django_assert_max_num_queries(14):
        oidc.identity_login(
            issuer=ISSUER, claims=claims_of(groups=[f"g{i}" for i in range(5, 10)] + ["new"])
        )


# --- The callback's failures ---


def test_an_unknown_state_goes_back_to_the_log_in_page(client, provider):
    client.get(reverse("oidc_login"))
    response = client.get(reverse("oidc_callback"), {"code": "c", "state": "forged"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("login")
    assert "That log-in had expired or was started in another browser." in response.content.decode()
    assert provider.token_requests == []
    assert logged_in_user(client) is None


def test_a_callback_used_twice_is_refused_the_second_time(client, provider):
    start = client.get(reverse("oidc_login"))
    query = parse_qs(urlsplit(start["Location"]).query)
    provider.nonce, provider.claims = query["nonce"][0], claims_of()
    callback = {"code": "code-1", "state": query["state"][0]}
    assert client.get(reverse("oidc_callback"), callback)["Location"] == reverse("chat_home")
    client.logout()
    again = client.get(reverse("oidc_callback"), callback)
    assert again["Location"] == reverse("login")
    assert len(provider.token_requests) == 1


def test_a_refusal_by_the_provider_goes_back_to_the_log_in_page(client, provider):
    start = client.get(reverse("oidc_login"), {"next": "/usage/"})
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    response = client.get(
        reverse("oidc_callback"), {"error": "access_denied", "state": state}, follow=True
    )
    assert response.redirect_chain[-1][0] == f"{reverse('login')}?next=%2Fusage%2F"
    assert "The sign-on provider did not log you in." in response.content.decode()
    assert provider.token_requests == []


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"key": OTHER_KEY}, "signed by another key"),
        ({"token_claims": {"aud": "another-site"}}, "for another client"),
        ({"token_claims": {"iss": "https://evil.example.test"}}, "from another issuer"),
        ({"token_claims": {"nonce": "another-nonce"}}, "for another log-in"),
        ({"token_claims": {"exp": int(time.time()) - 60}}, "expired"),
    ],
)  # fmt: skip
def test_an_id_token_it_should_not_trust_is_refused(client, provider, change, why):
    for name, value in change.items():
        setattr(provider, name, value)
    response = sso_log_in(client, provider, claims_of())
    assert response.redirect_chain[-1][0] == reverse("login"), why
    assert "Single sign-on did not complete. Try again." in response.content.decode()
    assert logged_in_user(client) is None
    assert not User.objects.exists()


def test_userinfo_about_another_subject_is_refused(client, provider, monkeypatch):
    monkeypatch.setattr(oidc.Backend, "get_userinfo", lambda self, *args: {"sub": "someone-else"})
    response = sso_log_in(client, provider, claims_of())
    assert "Single sign-on did not complete. Try again." in response.content.decode()
    assert not User.objects.exists()


def test_a_token_endpoint_that_fails_goes_back_to_the_log_in_page(client, sso, monkeypatch):
    # Discovery points at a port with nobody on it: the code exchange cannot connect.
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setitem(oidc._discovered, ISSUER, {**METADATA, "token_endpoint": f"{dead}/t"})
    start = client.get(reverse("oidc_login"))
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    response = client.get(reverse("oidc_callback"), {"code": "c", "state": state}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("login")
    assert "Single sign-on did not complete. Try again." in response.content.decode()


# --- Passwords turned off ---


@pytest.fixture
def passwords_off(sso) -> Iterator[None]:
    with override_settings(PASSWORD_LOGIN=False):
        yield


def test_with_passwords_off_the_log_in_page_shows_only_single_sign_on(client, passwords_off):
    page = client.get(reverse("login"), {"next": "/usage/"}).content.decode()
    assert 'type="password"' not in page
    assert "Log in with Acme" in page
    assert f'href="{reverse("oidc_login")}?next=/usage/"' in page
    assert reverse("signup") not in page  # neither the header nor the page offers sign-up


def test_with_passwords_off_a_password_is_refused_on_the_site_and_the_admin(
    client, passwords_off, superuser
):
    for url in (reverse("login"), reverse("admin:login")):
        response = client.post(url, {"username": "root", "password": "root-password-1"})
        assert response.status_code == 403, url
        assert (
            "Passwords are turned off on this site: log in with Acme." in response.content.decode()
        )
        assert logged_in_user(client) is None


def test_with_passwords_off_sign_up_is_closed(client, passwords_off):
    data = {
        "username": "dora",
        "password1": "a-long-pass-phrase",
        "password2": "a-long-pass-phrase",
    }
    assert client.post(reverse("signup"), data).status_code == 403
    assert not User.objects.filter(username="dora").exists()


def test_with_passwords_off_staff_log_in_to_the_admin_through_single_sign_on(
    client, passwords_off, provider, charlie
):
    page = client.get(reverse("admin:login"), {"next": "/admin/"}).content.decode()
    assert 'type="password"' not in page
    assert f'href="{reverse("oidc_login")}?next=/admin/"' in page
    SingleSignOnIdentity.objects.create(user=charlie, issuer=ISSUER, subject="u-charlie")
    response = sso_log_in(client, provider, claims_of("u-charlie"), next_url="/admin/")
    assert response.redirect_chain[-1][0] == "/admin/"
    assert response.status_code == 200


def test_with_passwords_on_both_log_in_pages_offer_single_sign_on_beside_the_form(client, sso):
    for url in (reverse("login"), reverse("admin:login")):
        page = client.get(url).content.decode()
        assert 'type="password"' in page, url
        assert "Log in with Acme" in page, url


def test_the_default_button_names_single_sign_on(client, sso):
    with override_settings(OIDC_PROVIDER_NAME=chatsite_settings.OIDC_PROVIDER_NAME):
        page = client.get(reverse("login")).content.decode()
    assert "Log in with single sign-on" in page


# --- Off, and discovery ---


def test_while_it_is_off_nothing_changes(client, alice):
    assert not django_settings.OIDC_ISSUER
    assert OIDC_BACKEND not in django_settings.AUTHENTICATION_BACKENDS
    page = client.get(reverse("login")).content.decode()
    assert "Log in with" not in page
    assert "Log in with" not in client.get(reverse("admin:login")).content.decode()
    assert client.get(reverse("oidc_login")).status_code == 404
    assert client.get(reverse("oidc_callback"), {"code": "c", "state": "s"}).status_code == 404
    response = client.post(reverse("login"), {"username": "alice", "password": "alice-password-1"})
    assert response["Location"] == reverse("chat_home")


def test_a_password_log_in_never_reaches_the_provider(client, provider, alice):
    response = client.post(
        f"{reverse('login')}?code=c&state=s",
        {"username": "alice", "password": "alice-password-1"},
    )
    assert response["Location"] == reverse("chat_home")
    assert client.session["_auth_user_backend"] == MODEL_BACKEND
    assert provider.token_requests == []


class Discovery(BaseHTTPRequestHandler):
    hits: list[str] = []
    issuer = ""

    def do_GET(self):
        self.hits.append(self.path)
        body = json.dumps({**METADATA, "issuer": self.issuer}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def discovery_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Discovery)
    issuer = f"http://127.0.0.1:{server.server_port}"
    Discovery.hits, Discovery.issuer = [], issuer
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield issuer
    server.shutdown()
    server.server_close()


def test_the_endpoints_are_discovered_once_per_process(client, db, discovery_server):
    oidc.forget_configuration()
    try:
        with override_settings(OIDC_ISSUER=f"{discovery_server}/", OIDC_CLIENT_ID=CLIENT_ID):
            first = client.get(reverse("oidc_login"))
            client.get(reverse("oidc_login"))
    finally:
        oidc.forget_configuration()
    assert first["Location"].startswith(f"{ISSUER}/auth?")
    assert Discovery.hits == ["/.well-known/openid-configuration"]


def test_an_unreachable_provider_is_told_on_the_log_in_page_and_in_the_log(client, db, caplog):
    issuer = f"http://127.0.0.1:{free_port()}"
    oidc.forget_configuration()
    with override_settings(OIDC_ISSUER=issuer, OIDC_CLIENT_ID=CLIENT_ID):
        response = client.get(reverse("oidc_login"), follow=True)
    assert response.redirect_chain[-1][0] == reverse("login")
    assert "Single sign-on is not available right now." in response.content.decode()
    assert f"cannot read {issuer}/.well-known/openid-configuration" in caplog.text
    assert issuer not in oidc._discovered


def test_a_document_naming_another_issuer_is_refused(db, discovery_server):
    Discovery.issuer = "https://someone-else.example.test"
    oidc.forget_configuration()
    with (
        override_settings(OIDC_ISSUER=discovery_server),
        pytest.raises(ImproperlyConfigured, match="names issuer https://someone-else"),
    ):
        oidc.provider_configuration()


def settings_in_a_new_process(**env: str) -> subprocess.CompletedProcess:
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.OIDC_CLIENT_SECRET, s.OIDC_SCOPES, s.AUTHENTICATION_BACKENDS]))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OIDC_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "chatsite.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_settings_read_the_environment(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    done = settings_in_a_new_process(
        OIDC_ISSUER=ISSUER, OIDC_CLIENT_ID=CLIENT_ID, OIDC_CLIENT_SECRET_FILE=str(secret)
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        "from-a-file",
        "openid email profile",
        [MODEL_BACKEND, OIDC_BACKEND],
    ]

    refused = settings_in_a_new_process(PASSWORD_LOGIN="false")
    assert refused.returncode != 0
    assert "PASSWORD_LOGIN=false leaves no way to log in" in refused.stderr


def test_the_user_admin_shows_the_identities_read_only(client, superuser, sso):
    user = oidc.identity_login(
        issuer=ISSUER, claims=claims_of("subject-7", groups=["sales"], preferred_username="eve")
    )
    client.force_login(superuser)
    page = client.get(reverse("admin:auth_user_change", args=[user.pk])).content.decode()
    assert "subject-7" in page and ISSUER in page and "sales" in page
    assert 'name="sso_identities-0-subject"' not in page  # shown, never edited
