"""Big numbers in forms and URLs get a form error or a 404, never a 500 (issue 13,
defect 6)."""

from __future__ import annotations

import pytest

from conversations.models import SiteSettings
from tests.http import HTMX

HUGE = "99999999999999999999999"
NUMERIC = ["temperature", "top_p", "max_tokens", "n", "presence_penalty", "frequency_penalty"]


@pytest.mark.parametrize("field", NUMERIC)
@pytest.mark.parametrize("value", [HUGE, f"-{HUGE}", "1e400", "-1e400", "nan", "inf"])
def test_a_number_out_of_range_is_a_form_error(client, alice, conversation, field, value):
    client.force_login(alice)
    data = {"settings-model": conversation.model, f"settings-{field}": value}
    response = client.post(f"/c/{conversation.pk}/settings/", data, **HTMX)
    page = response.content.decode()
    assert response.status_code == 200
    # The error sits in the field's own group, and only that field is marked.
    assert page.count("field-invalid") == 1
    group = page.split(f'field-{field} field-invalid"', 1)[1].split('<div class="field ', 1)[0]
    assert 'class="errorlist' in group
    conversation.refresh_from_db()
    assert getattr(conversation, field) is None  # nothing was saved


def test_the_largest_max_tokens_and_choices_are_accepted(client, alice, conversation):
    SiteSettings.objects.update_or_create(pk=1, defaults={"max_choices": 128})
    client.force_login(alice)
    data = {
        "settings-model": conversation.model,
        "settings-max_tokens": "1000000",
        "settings-n": "128",
    }
    response = client.post(f"/c/{conversation.pk}/settings/", data, **HTMX)
    assert "Settings saved." in response.content.decode()
    conversation.refresh_from_db()
    assert (conversation.max_tokens, conversation.n) == (1_000_000, 128)


@pytest.mark.parametrize("page", [HUGE, "100001", "3"])
def test_a_sidebar_page_past_the_end_is_404(client, alice, conversation, page):
    client.force_login(alice)
    assert client.get(f"/conversations/?page={page}").status_code == 404
    assert client.get(f"/conversations/?page={page}", **HTMX).status_code == 404


@pytest.mark.parametrize("page", ["1", "abc", "-5", ""])
def test_a_first_or_unreadable_page_number_is_the_first_page(client, alice, conversation, page):
    client.force_login(alice)
    assert client.get(f"/conversations/?page={page}").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        f"/c/{HUGE}/",
        f"/c/{HUGE}/completions/{HUGE}/",
        f"/c/{HUGE}/completions/{HUGE}/events/",
    ],
)
def test_a_huge_id_in_a_page_address_is_404(client, alice, path):
    client.force_login(alice)
    assert client.get(path).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        f"/c/{HUGE}/messages/",
        f"/c/{HUGE}/messages/{HUGE}/select/",
        f"/c/{HUGE}/completions/{HUGE}/retry/",
        f"/c/{HUGE}/completions/{HUGE}/stop/",
        f"/c/{HUGE}/settings/",
        f"/c/{HUGE}/rename/",
        f"/c/{HUGE}/delete/",
    ],
)
def test_a_huge_id_in_a_form_address_is_404(client, alice, path):
    client.force_login(alice)
    assert client.post(path, {"content": "hi", "title": "x"}).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        f"/usage/all/{HUGE}/",
        f"/admin/conversations/conversation/{HUGE}/change/",
        f"/admin/conversations/completion/{HUGE}/change/",
        f"/admin/auth/user/{HUGE}/change/",
        f"/admin/conversations/auditevent/?q={HUGE}",
        f"/admin/conversations/conversation/?q={HUGE}",
        f"/admin/conversations/conversation/?p={HUGE}",
        f"/usage/all/?order={HUGE}",
    ],
)
def test_staff_pages_with_huge_numbers_never_fail(client, superuser, path):
    client.force_login(superuser)
    assert client.get(path).status_code in (200, 302, 404)
