"""The site's staff-reading policy in the admin: with "none" no page shows chat content to
anyone (superusers included) and lists show numbers; with "flagged" only flagged
conversations open; with "all" (the default) staff review works as before."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from conversations.models import AuditEvent, Conversation, Message, SiteSettings
from conversations.review import exports
from conversations.review import services as review_services
from tests.factories import make_conversation
from tests.review.support import change_url, changelist, make_api_call

ALL = SiteSettings.StaffReading.ALL
FLAGGED = SiteSettings.StaffReading.FLAGGED
NONE = SiteSettings.StaffReading.NONE


def results(response) -> list:
    return list(response.context["cl"].result_list)


def flag(conversation: Conversation, reviewer) -> Conversation:
    return review_services.conversation_review(
        conversation=conversation, reviewer=reviewer, flagged=True, note=""
    )


@pytest.fixture
def staff(request, reviewer, superuser):
    """Each test below runs for a reviewer and for a superuser."""
    return {"reviewer": reviewer, "superuser": superuser}[request.param]


both_roles = pytest.mark.parametrize("staff", ["reviewer", "superuser"], indirect=True)


# --- None: no content anywhere ---


@both_roles
def test_with_none_no_content_page_opens_and_nothing_is_audited(
    client, staff, alice, staff_reading
):
    conversation = make_conversation(alice, ("secret plans", "noted"), title="Secret title")
    message = conversation.messages.get(role="user")
    completion = conversation.completions.get()
    call = make_api_call(alice)
    staff_reading(NONE)
    client.force_login(staff)
    for obj in (conversation, message, completion, call):
        response = client.get(change_url(obj))
        assert response.status_code == 403, obj
        assert "secret plans" not in response.content.decode()
    assert not AuditEvent.objects.exists()


def test_with_none_the_delete_and_history_pages_name_nothing_either(
    client, superuser, alice, staff_reading
):
    conversation = make_conversation(alice, ("secret plans", "noted"), title="Secret title")
    staff_reading(NONE)
    client.force_login(superuser)
    for view in ("delete", "history"):
        url = reverse(f"admin:conversations_conversation_{view}", args=[conversation.pk])
        assert client.get(url).status_code == 403, view
    # Deleting from the list still works; its confirmation lists numbers, not words.
    response = client.post(
        changelist(Conversation),
        {"action": "delete_selected", "_selected_action": [conversation.pk]},
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert f"Conversation: #{conversation.pk}" in page
    assert "Secret title" not in page and "secret plans" not in page
    response = client.post(
        changelist(Conversation),
        {"action": "delete_selected", "_selected_action": [conversation.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


def test_with_none_a_reviewer_cannot_flag_through_the_conversation_page(
    client, reviewer, alice, staff_reading
):
    conversation = make_conversation(alice, ("a", "b"))
    staff_reading(NONE)
    client.force_login(reviewer)
    response = client.post(change_url(conversation), {"flagged": "on", "review_note": "x"})
    assert response.status_code == 403
    assert not Conversation.objects.get(pk=conversation.pk).flagged


@both_roles
def test_with_none_the_list_shows_totals_and_flags_but_no_title(
    client, staff, reviewer, alice, staff_reading
):
    conversation = make_conversation(alice, ("secret plans", "noted"), title="Secret title")
    flag(conversation, reviewer)
    staff_reading(NONE)
    client.force_login(staff)
    response = client.get(changelist(Conversation))
    page = response.content.decode()
    assert results(response) == [conversation]
    assert "Secret title" not in page and "secret plans" not in page
    assert f"Conversation #{conversation.pk}" in page
    assert "0.002 USD" not in page  # one turn
    assert "0.001 USD" in page and ">30<" not in page and ">15<" in page
    assert 'alt="True"' in page  # the flag
    # No link leads to a page that would refuse.
    assert change_url(conversation) not in page


def test_with_none_the_list_does_not_sort_by_title(client, reviewer, alice, staff_reading):
    apple = make_conversation(alice, title="Apple")
    zebra = make_conversation(alice, title="Zebra")
    client.force_login(reviewer)
    by_title = {"o": "1"}  # the first column after the checkboxes
    assert results(client.get(changelist(Conversation), by_title)) == [apple, zebra]
    staff_reading(NONE)
    response = client.get(changelist(Conversation), by_title)
    assert results(response) == [zebra, apple]
    # The header is plain text, not a sorting link.
    assert '<th scope="col" class="column-display_title">' in response.content.decode()


def test_with_none_search_finds_owners_but_never_words(client, reviewer, alice, bob, staff_reading):
    alices = make_conversation(alice, ("turquoise umbrella", "ok"), title="Quarterly numbers")
    bobs = make_conversation(bob, ("x", "y"))
    staff_reading(NONE)
    client.force_login(reviewer)
    for words in ("turquoise", "quarterly"):
        assert results(client.get(changelist(Conversation), {"q": words})) == [], words
    assert results(client.get(changelist(Conversation), {"q": "bob"})) == [bobs]
    assert results(client.get(changelist(Conversation), {"q": "alice"})) == [alices]
    page = client.get(changelist(Conversation)).content.decode()
    assert "Finds owners by username" in page


def test_with_none_the_message_list_shows_no_title(client, reviewer, alice, staff_reading):
    conversation = make_conversation(alice, ("secret plans", "noted"), title="Secret title")
    staff_reading(NONE)
    client.force_login(reviewer)
    response = client.get(changelist(Message))
    page = response.content.decode()
    assert len(results(response)) == 2
    assert "Secret title" not in page and "secret plans" not in page
    assert f"Conversation #{conversation.pk}" in page


def test_with_none_api_call_words_are_not_searched(client, superuser, alice, staff_reading):
    call = make_api_call(alice)
    client.force_login(superuser)
    url = changelist(call)
    assert f"/completion/{call.pk}/change/" in client.get(url, {"q": "purple"}).content.decode()
    staff_reading(NONE)
    response = client.get(url, {"q": "purple"})
    assert results(response) == []
    assert "words of an API call" not in response.content.decode()


@both_roles
@pytest.mark.parametrize("action", ["export_json", "export_markdown", "export_csv"])
def test_with_none_exports_refuse_and_record_nothing(client, staff, alice, staff_reading, action):
    conversation = make_conversation(alice, ("secret plans", "noted"))
    staff_reading(NONE)
    client.force_login(staff)
    response = client.post(
        changelist(Conversation),
        {"action": action, "_selected_action": [conversation.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Content-Disposition" not in response
    page = response.content.decode()
    assert "Staff may not read conversations on this site: nothing was exported." in page
    assert "secret plans" not in page
    assert not AuditEvent.objects.exists()


def test_with_none_reviewers_still_flag_and_unflag_from_the_list(
    client, reviewer, alice, staff_reading
):
    one = make_conversation(alice, ("a", "b"))
    two = make_conversation(alice, ("c", "d"))
    staff_reading(NONE)
    client.force_login(reviewer)
    response = client.post(
        changelist(Conversation),
        {"action": "flag_selected", "_selected_action": [one.pk, two.pk]},
        follow=True,
    )
    assert "Flagged 2 conversations." in response.content.decode()
    assert set(Conversation.objects.filter(flagged=True)) == {one, two}
    client.post(
        changelist(Conversation), {"action": "unflag_selected", "_selected_action": [one.pk]}
    )
    assert set(Conversation.objects.filter(flagged=True)) == {two}
    assert not AuditEvent.objects.exists()


def test_exports_leave_out_what_staff_may_not_read_whoever_calls_them(
    reviewer, alice, staff_reading
):
    flagged = flag(make_conversation(alice, ("flagged words", "b")), reviewer)
    make_conversation(alice, ("unflagged words", "d"))
    staff_reading(FLAGGED)
    document = json.loads(
        exports.export_json(conversations=Conversation.objects.all(), actor=reviewer)
    )
    assert [c["id"] for c in document["conversations"]] == [flagged.pk]
    assert AuditEvent.objects.get().conversation_ids == [flagged.pk]


# --- Flagged: only flagged conversations open ---


@both_roles
def test_with_flagged_a_flagged_transcript_opens_and_is_audited_an_unflagged_one_does_not(
    client, staff, reviewer, alice, staff_reading
):
    flagged = flag(make_conversation(alice, ("flagged words", "b")), reviewer)
    unflagged = make_conversation(alice, ("unflagged words", "d"))
    staff_reading(FLAGGED)
    client.force_login(staff)
    response = client.get(change_url(flagged))
    assert response.status_code == 200
    assert "flagged words" in response.content.decode()
    event = AuditEvent.objects.get()
    assert (event.actor, event.conversation_ids) == (staff, [flagged.pk])
    assert client.get(change_url(flagged.messages.first())).status_code == 200
    for obj in (unflagged, unflagged.messages.first(), unflagged.completions.first()):
        assert client.get(change_url(obj)).status_code == 403, obj
    assert AuditEvent.objects.count() == 2


def test_with_flagged_api_calls_stay_unreadable(client, superuser, alice, staff_reading):
    call = make_api_call(alice)
    staff_reading(FLAGGED)
    client.force_login(superuser)
    assert client.get(change_url(call)).status_code == 403
    assert results(client.get(changelist(call), {"q": "purple"})) == []
    assert not AuditEvent.objects.exists()


def test_with_flagged_the_list_titles_and_searches_flagged_conversations_only(
    client, reviewer, alice, staff_reading
):
    flagged = flag(make_conversation(alice, ("kiwi one", "b"), title="Flagged title"), reviewer)
    unflagged = make_conversation(alice, ("kiwi two", "d"), title="Unflagged title")
    staff_reading(FLAGGED)
    client.force_login(reviewer)
    page = client.get(changelist(Conversation)).content.decode()
    assert "Flagged title" in page
    assert "Unflagged title" not in page and f"Conversation #{unflagged.pk}" in page
    assert results(client.get(changelist(Conversation), {"q": "kiwi"})) == [flagged]
    assert results(client.get(changelist(Conversation), {"q": "unflagged"})) == []
    assert set(results(client.get(changelist(Conversation), {"q": "alice"}))) == {
        flagged,
        unflagged,
    }


def test_with_flagged_an_export_with_unflagged_conversations_is_refused_whole(
    client, reviewer, alice, staff_reading
):
    flagged = flag(make_conversation(alice, ("flagged words", "b")), reviewer)
    unflagged = make_conversation(alice, ("unflagged words", "d"))
    other = make_conversation(alice, ("other words", "f"))
    staff_reading(FLAGGED)
    client.force_login(reviewer)
    response = client.post(
        changelist(Conversation),
        {"action": "export_csv", "_selected_action": [flagged.pk, unflagged.pk, other.pk]},
        follow=True,
    )
    assert "Content-Disposition" not in response
    assert "Nothing was exported: 2 of the selected conversations are not flagged" in (
        response.content.decode()
    )
    assert not AuditEvent.objects.exists()
    response = client.post(
        changelist(Conversation), {"action": "export_csv", "_selected_action": [flagged.pk]}
    )
    assert response["Content-Disposition"].startswith("attachment;")
    assert "flagged words" in response.content.decode("utf-8-sig")
    assert AuditEvent.objects.get().conversation_ids == [flagged.pk]


# --- All: as before ---


def test_by_default_staff_read_everything(client, superuser, alice):
    assert SiteSettings.objects.filter(pk=1).first() is None or (
        SiteSettings.objects.get(pk=1).staff_reading == ALL
    )
    conversation = make_conversation(alice, ("a", "b"), title="Open title")
    call = make_api_call(alice)
    client.force_login(superuser)
    assert "Open title" in client.get(changelist(Conversation)).content.decode()
    for obj in (conversation, conversation.messages.first(), call):
        assert client.get(change_url(obj)).status_code == 200, obj
    assert AuditEvent.objects.count() == 3


def test_superusers_change_the_policy_in_the_site_settings(client, superuser, staff_reading):
    staff_reading(ALL)
    client.force_login(superuser)
    url = reverse("admin:conversations_sitesettings_change", args=[1])
    form = client.get(url).context["adminform"].form
    data = {
        name: value
        for name, value in form.initial.items()
        if value is not None and not isinstance(value, bool)
    }
    data.update(
        {name: "on" for name, value in form.initial.items() if value is True},
        staff_reading=NONE,
    )
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert SiteSettings.objects.get(pk=1).staff_reading == NONE
    assert "may not read your conversations" in client.get("/privacy/").content.decode()


def test_the_admin_conversation_picker_names_only_what_staff_may_read(
    client, reviewer, alice, staff_reading
):
    flagged = flag(make_conversation(alice, ("a", "b"), title="Flagged title"), reviewer)
    make_conversation(alice, ("c", "d"), title="Unflagged title")
    client.force_login(reviewer)
    url = reverse("admin:autocomplete")
    picker = {"app_label": "conversations", "model_name": "message", "field_name": "conversation"}
    named = {row["text"] for row in client.get(url, picker).json()["results"]}
    assert named == {"Flagged title", "Unflagged title"}
    staff_reading(FLAGGED)
    assert client.get(url, picker).json()["results"] == [
        {"id": str(flagged.pk), "text": "Flagged title"}
    ]
    staff_reading(NONE)
    assert client.get(url, picker).json()["results"] == []
