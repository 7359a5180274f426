"""The API keys page in Chromium: a key made, copied and used with the official client
against uvicorn, then revoked from the page."""

from __future__ import annotations

import openai
import pytest
from django.contrib.auth.models import User
from openai import OpenAI
from playwright.sync_api import expect

from tests.support import browser_login

pytestmark = pytest.mark.browser


@pytest.fixture
def dana(transactional_db) -> User:
    return User.objects.create_user("dana", password="dana-password-1")


def test_a_key_made_on_the_page_calls_the_api_until_it_is_revoked(live_stack, page, dana):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_stack.url)
    browser_login(page, live_stack.url, "dana", "dana-password-1")
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys", level=1)).to_be_visible()
    expect(page.get_by_text("You have no API keys yet.")).to_be_visible()

    page.get_by_label("Name").fill("notebook")
    page.get_by_label("Expires").select_option(label="In 30 days")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_text("it is shown only this once")).to_be_visible()
    page.get_by_role("button", name="Copy key").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    key = page.evaluate("navigator.clipboard.readText()")
    assert key.startswith("cs-") and key == page.get_by_label("API key").input_value()

    client = OpenAI(base_url=f"{live_stack.url}/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello from a notebook"}]
    )
    assert "Hello from a notebook" in reply.choices[0].message.content

    # A reload of that answer posts the form again: no second key, and no key shown.
    page.reload()
    expect(page.get_by_text("This form already made its key")).to_be_visible()
    expect(page.get_by_label("API key")).to_have_count(0)
    assert dana.api_keys.count() == 1

    # Listed by its start only, with its last use.
    page.get_by_role("link", name="API keys").click()
    row = page.get_by_role("row", name="notebook")
    expect(row).to_contain_text(key[:11])
    expect(row).not_to_contain_text(key[11:])
    expect(row.get_by_role("cell").nth(2)).not_to_have_text("Never")  # last used
    row.get_by_role("button", name="Revoke “notebook”").click()
    expect(page.get_by_text("The key “notebook” is revoked.")).to_be_visible()
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
