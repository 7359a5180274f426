"""The Content-Security-Policy in Chromium: it is enforced, and the app runs under it.

Every browser test fails on a CSP refusal (see the `page` fixture); this one shows the
policy really is in force, so that silence elsewhere means something.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from tests.support import browser_login

pytestmark = pytest.mark.browser


def test_the_policy_refuses_injected_inline_script_and_style(live_stack, page, csp_violations):
    User.objects.create_user("alice", password="alice-password-1")
    browser_login(page, live_stack.url, "alice", "alice-password-1")
    assert csp_violations == []

    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.injected = true";
            document.body.append(script);
            const style = document.createElement("style");
            style.textContent = "body { display: none }";
            document.head.append(style);
        }"""
    )
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    assert page.evaluate("() => window.injected === undefined")
    assert any("script-src" in text for text in csp_violations)
    assert any("style-src" in text for text in csp_violations)
    csp_violations.clear()  # expected here; the fixture fails on any other
