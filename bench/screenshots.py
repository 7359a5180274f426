"""The screenshots in docs/screenshots/, made again from the running app: `make screenshots`.

It starts the same stack the benchmark does (the embedded default here: SQLite, the
filesystem broker, the simulator with its default Markdown replies), signs a person up
through the page, chats a little and photographs the pages in Chromium: the chat on a
desktop (light, dark, a reply streaming), on a phone and in Chinese, the usage page on a
phone in dark mode, and the 404 page.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from pathlib import Path

from bench.stack import ROOT, Stack

CHROMIUM = "/usr/bin/chromium"
OUT = ROOT / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}
REPLY_TIMEOUT = 30_000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="chatsite-screenshots-"))
    stack = Stack(workdir=workdir, kind="embedded", web_processes=1, latency=0.2)
    stack.plain_replies = False
    stack.prepare()
    stack.env["MODEL_TITLES"] = "1"  # as a new user's `make run` has it
    try:
        stack.migrate()
        stack.start()
        shoot(stack, args.output)
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def shoot(stack: Stack, out: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=REPLY_TIMEOUT)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport=DESKTOP, color_scheme="light")
        page = context.new_page()
        page.set_default_timeout(REPLY_TIMEOUT)

        page.goto(f"{stack.url}/accounts/signup/")
        page.get_by_label("Username").fill("dora")
        page.get_by_label("Password", exact=True).fill("a-long-pass-phrase")
        page.get_by_label("Password confirmation").fill("a-long-pass-phrase")
        page.get_by_role("button", name="Sign up").click()
        expect(page.get_by_role("button", name="Log out")).to_be_visible()

        for number, question in enumerate(
            ["How do tides work?", "Plan a picnic for four people", "Show me some code"]
        ):
            box = page.get_by_label("Message", exact=True)
            box.fill(question)
            box.press("Enter")
            expect(page.locator("[data-role=assistant]")).to_have_count(number + 1)
            expect(page.locator(".reply-pending")).to_have_count(0)
        page.wait_for_timeout(2500)  # the model's title (one call after the first reply)
        chat_url = page.url
        page.reload()
        page.screenshot(path=out / "chat-desktop.png")
        page.emulate_media(color_scheme="dark")
        page.screenshot(path=out / "chat-desktop-dark.png")
        page.emulate_media(color_scheme="light")

        stack.simulator_control(token_delay=0.08)
        box = page.get_by_label("Message", exact=True)
        box.fill("Tell me about the moon")
        box.press("Enter")
        expect(page.locator(".reply-pending .streaming").first).to_contain_text(
            re.compile(r"\w+ \w+ \w+ \w+ \w+")
        )
        page.screenshot(path=out / "chat-streaming-desktop.png")
        expect(page.locator(".reply-pending")).to_have_count(0)
        stack.simulator_control(token_delay=0)

        page.goto(f"{stack.url}/no/such/page/")
        page.screenshot(path=out / "not-found.png")

        page.set_viewport_size(PHONE)
        page.goto(chat_url)
        page.screenshot(path=out / "chat-phone.png")
        page.emulate_media(color_scheme="dark")
        page.goto(f"{stack.url}/usage/")
        page.screenshot(path=out / "usage-phone-dark.png", full_page=True)
        signed_in = [c for c in context.cookies() if c["name"] in ("sessionid", "csrftoken")]
        context.close()

        chinese = browser.new_context(
            viewport=DESKTOP, locale="zh-CN", extra_http_headers={"Accept-Language": "zh-hans"}
        )
        chinese.add_cookies(signed_in)
        page = chinese.new_page()
        page.goto(chat_url)
        page.screenshot(path=out / "chat-chinese.png")
        browser.close()
    print(f"screenshots written to {out.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
