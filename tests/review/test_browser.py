"""Staff review in a real browser: log in to the admin, search, read a transcript."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from playwright.sync_api import expect

from conversations.models import AuditEvent
from conversations.review import selectors as review_selectors
from tests.factories import make_conversation
from tests.support import wait_for

pytestmark = pytest.mark.browser


def reviewer_group() -> Group:
    # A transactional test before this one may have flushed the migration's rows.
    migration = importlib.import_module("conversations.migrations.0002_reviewer_group")
    migration.create_reviewer_group(apps, None)
    return Group.objects.get(name=review_selectors.REVIEWER_GROUP)


def test_staff_search_and_read_a_transcript_with_both_roles(live_stack, page):
    alice = User.objects.create_user("alice", password="alice-password-1")
    bob = User.objects.create_user("bob", password="bob-password-1")
    rita = User.objects.create_user("rita", password="rita-password-1", is_staff=True)
    rita.groups.add(reviewer_group())
    conversation = make_conversation(
        alice,
        ("How do I repot a fiddle-leaf fig?", "Pick a pot **one size up** and water lightly."),
        title="Houseplants",
    )
    make_conversation(bob, ("Best pot for rice?", "A heavy one."), title="Cooking")

    page.goto(f"{live_stack.url}/admin/login/")
    page.get_by_label("Username").fill("rita")
    page.get_by_label("Password").fill("rita-password-1")
    page.get_by_role("button", name="Log in").click()
    # The model's row on the admin index (the app's heading is also "Conversations").
    page.locator(".model-conversation").get_by_role("link", name="Conversations").click()

    page.get_by_role("textbox", name="Search").fill("fiddle-leaf")
    page.get_by_role("button", name="Search").click()
    results = page.locator("#result_list")
    expect(results.get_by_role("link", name="Houseplants")).to_be_visible()
    expect(results.get_by_role("link", name="Cooking")).to_have_count(0)

    results.get_by_role("link", name="Houseplants").click()
    transcript = page.get_by_role("region", name="Transcript")
    question = transcript.get_by_role("article").filter(has_text="repot a fiddle-leaf fig")
    answer = transcript.get_by_role("article").filter(has_text="water lightly")
    expect(question).to_be_visible()
    expect(question).to_contain_text("user")
    expect(answer).to_be_visible()
    expect(answer).to_contain_text("assistant")
    # The reply's Markdown is rendered, not shown as asterisks.
    expect(answer.locator("strong")).to_have_text("one size up")

    event = wait_for(
        lambda: AuditEvent.objects.filter(actor=rita, action="view_transcript").first(),
        what="the audit record of the visit",
    )
    assert event.conversation_ids == [conversation.pk]


def test_the_admin_pages_work_under_the_content_security_policy(live_stack, page):
    """Django's admin with our models: lists, filters, date widgets, forms, transcripts.
    The `page` fixture fails the test on any refusal of the policy."""
    User.objects.create_superuser("root", password="root-password-1")
    alice = User.objects.create_user("alice", password="alice-password-1")
    conversation = make_conversation(alice, ("Hello", "Hi **there**"), failed="upstream down")
    page.goto(f"{live_stack.url}/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("root-password-1")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()

    for path in (
        "/admin/conversations/conversation/?q=hello",
        f"/admin/conversations/conversation/{conversation.pk}/change/",
        "/admin/conversations/completion/?status__exact=failed",
        "/admin/conversations/modelprice/add/",
        "/admin/conversations/userbudget/add/",
        "/admin/conversations/invitation/add/",
        "/admin/conversations/sitesettings/",
        "/admin/conversations/auditevent/",
        "/admin/auth/user/add/",
        f"/admin/auth/user/{alice.pk}/change/",
    ):
        response = page.goto(f"{live_stack.url}{path}")
        assert response.status == 200, path
        expect(page.locator("#content")).to_be_visible()
    # The date and time shortcuts are built by the admin's scripts: they ran.
    page.goto(f"{live_stack.url}/admin/conversations/modelprice/add/")
    page.get_by_role("link", name="Now").first.click()
    expect(page.locator("#id_valid_from_0")).not_to_have_value("")


def test_the_conversation_list_fits_a_laptop_screen(live_stack, page):
    """At 1280 px every column shows, Flagged included; titles and dates are not squeezed."""
    alice = User.objects.create_user("alice", password="alice-password-1")
    rita = User.objects.create_user("rita", password="rita-password-1", is_staff=True)
    rita.groups.add(reviewer_group())
    for title in ("Planning the spring garden with raised beds and drip lines", "Tax questions"):
        make_conversation(alice, ("Hello there", "Hi."), title=title)

    page.goto(f"{live_stack.url}/admin/login/")
    page.get_by_label("Username").fill("rita")
    page.get_by_label("Password").fill("rita-password-1")
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{live_stack.url}/admin/conversations/conversation/")

    visible = """el => {
        const box = el.getBoundingClientRect();
        const x = box.left + Math.min(box.width / 2, 20), y = box.top + box.height / 2;
        const hit = document.elementFromPoint(x, y);
        return x < innerWidth && (hit === el || el.contains(hit));
    }"""
    for column in ("flagged", "last_activity", "cost", "model"):
        header = page.locator(f"#result_list thead th.column-{column}")
        assert header.evaluate(visible), f"the {column} column is off screen"
        cell = page.locator(f"#result_list tbody td.field-{column}").first
        assert cell.evaluate("el => el.scrollWidth <= el.clientWidth"), column
    long_title = page.locator("#result_list tbody th.field-display_title").filter(has_text="spring")
    assert long_title.bounding_box()["height"] < 3 * 24  # two lines at most
    # The full date is on hover.
    assert page.locator("td.field-last_activity time").first.get_attribute("title")
