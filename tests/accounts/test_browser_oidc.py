"""Single sign-on end to end, in Chromium: the site (uvicorn, as in production) and a real
OpenID provider (panva's certified oidc-provider, tests/oidc_provider/), both on loopback.
A person logs in on the provider's own pages, lands in the chat with the groups the claim
names, and at the next log-in the groups follow the changed claim."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Group, User
from playwright.sync_api import Page, expect

from conversations.models import SingleSignOnIdentity
from tests.accounts.conftest import OidcProvider
from tests.support import WebProcess, subprocess_env, wait_for

pytestmark = pytest.mark.browser

PROVIDER_NAME = "Acme SSO"
# Everything this test's browser may reach: the site and the provider, on loopback.
ELSEWHERE = re.compile(r"^(?!https?://127\.0\.0\.1:\d+/)")


@dataclass
class SsoSite:
    url: str
    provider: OidcProvider


@pytest.fixture
def sso_site(transactional_db, simulator, start_oidc_provider, tmp_path) -> Iterator[SsoSite]:
    """The site in a uvicorn subprocess, its single sign-on pointing at the provider (no
    worker: nothing is sent to a model here)."""
    env = subprocess_env(simulator)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # the browser fixtures' setting is not prod's
    web = WebProcess(env, tmp_path / "web.log")
    provider = start_oidc_provider(f"{web.url}/accounts/oidc/callback/")
    env.update(
        OIDC_ISSUER=provider.issuer,
        OIDC_CLIENT_ID=provider.client_id,
        OIDC_CLIENT_SECRET=provider.client_secret,
        OIDC_SCOPES="openid email profile groups",
        OIDC_PROVIDER_NAME=PROVIDER_NAME,
    )
    try:
        web.start()
        yield SsoSite(url=web.url, provider=provider)
    finally:
        web.stop()


def log_in_with_the_provider(page: Page, site: SsoSite, login: str) -> None:
    """From the site's log-in page through the provider's own pages (log-in and consent,
    when it asks) back to the chat."""
    page.goto(f"{site.url}/accounts/login/")
    page.get_by_role("link", name=f"Log in with {PROVIDER_NAME}").click()
    provider_login = page.get_by_role("textbox", name="Enter any login")
    chat = page.get_by_role("button", name="Log out")
    expect(provider_login.or_(chat)).to_be_visible()
    if provider_login.is_visible():
        provider_login.fill(login)
        page.get_by_placeholder("and password").fill("any password")
        page.get_by_role("button", name="Sign-in").click()
        consent = page.get_by_role("button", name="Continue")
        expect(consent.or_(chat)).to_be_visible()
        if consent.is_visible():
            consent.click()
    expect(chat).to_be_visible()
    expect(page).to_have_url(f"{site.url}/")


def group_names(user: User) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


def test_a_person_logs_in_at_the_company_provider_and_their_groups_follow_its_claim(sso_site, page):
    page.context.route(ELSEWHERE, lambda route: route.abort())  # the provider's web fonts
    sso_site.provider.set_accounts(
        {
            "dana": {
                "email": "dana@example.com",
                "email_verified": True,
                "preferred_username": "dana",
                "given_name": "Dana",
                "family_name": "Scully",
                "groups": ["research", "travel"],
            }
        }
    )
    log_in_with_the_provider(page, sso_site, "dana")
    expect(page.get_by_role("button", name="Log out")).to_have_attribute(
        "title", "Signed in as dana"
    )
    dana = User.objects.get(username="dana")
    assert (dana.email, dana.first_name, dana.last_name) == ("dana@example.com", "Dana", "Scully")
    assert not dana.has_usable_password()
    assert group_names(dana) == {"research", "travel"}
    identity = SingleSignOnIdentity.objects.get(user=dana)
    assert (identity.issuer, identity.subject) == (sso_site.provider.issuer, "dana")
    dana.groups.add(Group.objects.create(name="given-in-the-admin"))

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("link", name=f"Log in with {PROVIDER_NAME}")).to_be_visible()
    # At the provider: out of travel, into security, and a new address.
    sso_site.provider.set_accounts(
        {
            "dana": {
                "email": "dana.scully@example.com",
                "email_verified": True,
                "preferred_username": "dana",
                "groups": ["research", "security"],
            }
        }
    )
    log_in_with_the_provider(page, sso_site, "dana")
    wait_for(
        lambda: group_names(dana) == {"research", "security", "given-in-the-admin"},
        what="dana's groups to follow the claim",
    )
    assert User.objects.count() == 1  # found again by her `sub`, not made anew
    dana.refresh_from_db()
    assert dana.email == "dana.scully@example.com"
    assert SingleSignOnIdentity.objects.get(user=dana).groups == ["research", "security"]
