"""Big numbers in inputs on the production stack (issue 13, defect 6): a conversation
setting and a sidebar page number far beyond any column or page get a form error or a
404 from every web process, never a 500."""

from __future__ import annotations

from collections import Counter

import pytest

from conversations.models import Conversation

from .harness import Row, Stack, assert_no_tracebacks, logged_in, record

pytestmark = [pytest.mark.faults, pytest.mark.worker]

HUGE = "99999999999999999999999"
HUGE_PAGE = "99999999999999999999"


def test_big_numbers_get_a_form_error_or_a_404_never_a_500(stack: Stack):
    person = logged_in(stack.webs[0])
    conversation = person.open_conversation(stack.webs[0])
    action = f"{conversation.path}settings/"
    answers: Counter[str] = Counter()
    for web in stack.webs:
        for field, value in [("max_tokens", HUGE), ("n", HUGE), ("temperature", "1e400")]:
            response = conversation.session.post(
                f"{web.url}{action}",
                data=conversation.page.forms[action] | {f"settings-{field}": value},
                headers=conversation.headers,
                timeout=10,
            )
            invalid = response.status_code == 200 and "field-invalid" in response.text
            answers[f"settings {field}: {'form error' if invalid else response.status_code}"] += 1
        for headers in ({}, conversation.headers):
            response = conversation.session.get(
                f"{web.url}/conversations/?page={HUGE_PAGE}", headers=headers, timeout=10
            )
            answers[f"sidebar page: {response.status_code}"] += 1
        response = conversation.session.get(f"{web.url}/c/{HUGE}/", timeout=10)
        answers[f"conversation id: {response.status_code}"] += 1
    row = record(
        Row(
            fault="big numbers in inputs (settings, ?page=, ids)",
            notes=[", ".join(f"{answer} ×{count}" for answer, count in sorted(answers.items()))],
        )
    )
    assert answers == Counter(
        {
            "settings max_tokens: form error": 2,
            "settings n: form error": 2,
            "settings temperature: form error": 2,
            "sidebar page: 404": 4,
            "conversation id: 404": 2,
        }
    ), row.notes
    saved = Conversation.objects.get(pk=int(conversation.path.split("/")[2]))
    assert (saved.max_tokens, saved.n, saved.temperature) == (None, None, None)
    assert_no_tracebacks(stack)
