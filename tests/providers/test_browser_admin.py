"""A provider added in the admin, in Chromium, through to a reply: an admin adds it by
address and key, refreshes its model list and offers one of its models; a person picks
that model in a chat's Settings and gets the reply from that provider, called with its key."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from conversations.models import Completion
from conversations.providers.models import Provider, ProviderModel
from conversations.upstream.simulated_text import SIMULATED_MODELS
from tests.chat.browser import new_chat, open_settings
from tests.support import browser_login, wait_for

pytestmark = pytest.mark.browser

LAB_KEY = "sk-lab-browser-0123456789"
REPLY_TIMEOUT = 20_000


def admin_adds_and_offers_a_provider(page: Page, url: str, base_url: str) -> Provider:
    page.goto(f"{url}/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("root-password-1")
    page.get_by_role("button", name="Log in").click()
    page.locator(".model-provider").get_by_role("link", name="Providers").click()
    page.get_by_role("link", name="Add provider").click()

    page.get_by_label("Name:", exact=True).fill("Lab")
    page.get_by_label("Base URL:", exact=True).fill(base_url)
    page.get_by_label("API key:", exact=True).fill(LAB_KEY)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Refreshing: the list updates in a few seconds.")).to_be_visible()
    page.locator("#result_list").get_by_role("link", name="Lab").click()

    page.get_by_role("button", name="Refresh now").click()
    expect(page.get_by_text("Refreshing: the list updates in a few seconds.")).to_be_visible()
    provider = Provider.objects.get(name="Lab")
    # The worker reads the list; the page shows it once it is in.
    wait_for(
        lambda: provider.models.count() == len(SIMULATED_MODELS),
        timeout=15,
        what="the worker to read the provider's model list",
    )
    page.reload()
    page.get_by_role("checkbox", name="Offer gpt-4.1-mini").check()
    page.get_by_role("textbox", name="Display name of gpt-4.1-mini").fill("Lab 4.1 mini")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.get_by_text("was changed successfully")).to_be_visible()
    expect(page.get_by_role("checkbox", name="Offer gpt-4.1-mini")).to_be_checked()
    return provider


def test_a_model_an_admin_offers_on_a_new_provider_answers_a_chat_with_its_key(
    live_stack, page, browser, csp_violations, simulators
):
    lab = simulators(api_key=LAB_KEY)  # answers only to its own key
    User.objects.create_superuser("root", password="root-password-1")
    User.objects.create_user("erin", password="erin-password-1")

    provider = admin_adds_and_offers_a_provider(page, live_stack.url, lab.base_url)
    assert LAB_KEY not in page.content()
    offered = ProviderModel.objects.get(provider=provider, model_id="gpt-4.1-mini")
    assert offered.enabled and offered.display_name == "Lab 4.1 mini"

    # A person, in a browser of their own.
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        chat = context.new_page()
        chat.set_default_timeout(10_000)
        csp_violations.listen(chat)
        browser_login(chat, live_stack.url, "erin", "erin-password-1")
        new_chat(chat)
        open_settings(chat)
        chat.get_by_label("Model", exact=True).select_option(label="Lab 4.1 mini")
        chat.get_by_role("button", name="Save settings").click()
        expect(chat.get_by_text("Settings saved.")).to_be_visible()
        chat.keyboard.press("Escape")
        box = chat.get_by_label("Message", exact=True)
        box.fill("Which provider answers this?")
        box.press("Enter")
        expect(chat.locator("[data-role=assistant]")).to_contain_text(
            "Simulated reply", timeout=REPLY_TIMEOUT
        )
    finally:
        context.close()

    [call] = lab.handle.requests()
    assert call["authorization"] == f"Bearer {LAB_KEY}"
    assert call["body"]["model"] == "gpt-4.1-mini"
    assert live_stack.simulator.requests() == []  # the environment's provider was not called
    completion = Completion.objects.get()
    assert (completion.provider_id, completion.provider_name) == (provider.pk, "Lab")
    assert completion.status == Completion.Status.SUCCEEDED
