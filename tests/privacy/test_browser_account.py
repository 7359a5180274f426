"""Leaving, in Chromium against uvicorn: alice deletes her account from the Account page
with her password, lands on the log-in page and cannot log in again; an administrator
then finds none of her conversations in the admin."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from conversations.chat.models import Conversation
from tests.factories import make_conversation
from tests.support import browser_login

pytestmark = pytest.mark.browser


def test_alice_deletes_her_account_and_it_is_gone_everywhere(live_stack, page):
    alice = User.objects.create_user("alice", password="alice-password-1")
    User.objects.create_superuser("root", password="root-password-1")
    bob = User.objects.create_user("bob", password="bob-password-1")
    make_conversation(alice, ("How do I prune roses?", "In late winter."), title="Rose garden")
    make_conversation(alice, ("Best hiking boots?", "Ones that fit."), title="Hiking gear")
    make_conversation(bob, ("Bob's question", "Bob's answer"), title="Bob's chat")

    browser_login(page, live_stack.url, "alice", "alice-password-1")
    page.get_by_role("navigation", name="Site").get_by_role("link", name="Account").click()
    expect(page.get_by_role("heading", name="Account", level=1)).to_be_visible()
    expect(page.get_by_role("button", name="Download my data")).to_be_visible()

    # A wrong password: told beside the field, nothing deleted.
    page.get_by_label("Your password").fill("not-my-password")
    page.get_by_label("I understand this deletes all my conversations").check()
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_text("That is not your password. Nothing was deleted.")).to_be_visible()
    expect(page.get_by_label("Your password")).to_have_attribute("aria-invalid", "true")
    assert Conversation.objects.filter(owner=alice).count() == 2

    page.get_by_label("Your password").fill("alice-password-1")
    page.get_by_label("I understand this deletes all my conversations").check()
    page.get_by_role("button", name="Delete my account").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    expect(page.get_by_role("status")).to_have_text("Your account and conversations were deleted.")

    # Her password no longer opens anything: the log-in form's usual refusal.
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-password-1")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Please enter a correct username and password"
    )
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))

    page.goto(f"{live_stack.url}/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("root-password-1")
    page.get_by_role("button", name="Log in").click()
    page.locator(".model-conversation").get_by_role("link", name="Conversations").click()
    results = page.locator("#result_list")
    expect(results.get_by_role("link", name="Bob's chat")).to_be_visible()
    expect(results.get_by_role("link", name="Rose garden")).to_have_count(0)
    expect(results.get_by_role("link", name="Hiking gear")).to_have_count(0)
    expect(page.get_by_text("alice", exact=True)).to_have_count(0)
