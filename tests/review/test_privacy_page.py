"""The Privacy page: what staff may read and how long chats are kept, and for each person
every time staff opened or exported one of their conversations or API calls."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from conversations.models import AuditEvent, AuditSubject, Conversation, SiteSettings
from conversations.review import services as review_services
from tests.factories import make_conversation
from tests.review.support import change_url, changelist, make_api_call

PRIVACY = "/privacy/"
# The session is read from the shared cache where there is one (REDIS_URL), else a query.
SESSION = 0 if settings.SESSION_ENGINE == "conversations.accounts.sessions" else 1


def reads_on(client, user, **params) -> str:
    client.force_login(user)
    response = client.get(PRIVACY, params)
    assert response.status_code == 200
    return response.content.decode()


def test_the_privacy_url_is_named():
    assert reverse("privacy") == PRIVACY


# --- Whose chats each read touched ---


def test_an_audit_record_names_the_owner_of_each_conversation_and_api_call(reviewer, alice, bob):
    alices = make_conversation(alice, ("a", "b"))
    bobs = make_conversation(bob, ("c", "d"))
    call = make_api_call(bob)
    event = review_services.audit_record(
        actor=reviewer,
        action=AuditEvent.Action.EXPORT_JSON,
        conversation_ids=[bobs.pk, alices.pk, alices.pk],
        completion_ids=[call.pk],
        details={"note": "ids only"},
    )
    subjects = AuditSubject.objects.filter(event=event)
    assert set(subjects.values_list("owner__username", "conversation_id", "completion_id")) == {
        ("alice", alices.pk, None),
        ("bob", bobs.pk, None),
        ("bob", None, call.pk),
    }
    assert {subject.created_at for subject in subjects} == {event.created_at}
    assert event.details == {"note": "ids only"}


def test_the_site_itself_records_without_an_actor_or_subjects(db):
    event = review_services.audit_record(
        actor=None, action=AuditEvent.Action.RETENTION_PURGE, details={"conversations": 3}
    )
    assert event.actor is None
    assert not event.subjects.exists()


def test_recording_an_export_of_many_conversations_takes_a_handful_of_queries(reviewer, alice):
    many = Conversation.objects.bulk_create(
        [Conversation(owner=alice, model="gpt-4o-mini") for _ in range(1500)]
    )
    with CaptureQueriesContext(connection) as queries:
        review_services.audit_record(
            actor=reviewer,
            action=AuditEvent.Action.EXPORT_CSV,
            conversation_ids=[c.pk for c in many],
        )
    assert AuditSubject.objects.filter(owner=alice).count() == 1500
    # The event, one look-up of the owners, the inserts in batches (SQLite's are smaller).
    assert len(queries) <= 15


# --- The list of reads ---


def test_a_transcript_read_shows_on_the_owners_page_and_no_one_elses(client, reviewer, alice, bob):
    conversation = make_conversation(alice, ("secret plans", "noted"), title="Garden plans")
    client.force_login(reviewer)
    assert client.get(change_url(conversation)).status_code == 200
    event = AuditEvent.objects.get()

    page = reads_on(client, alice)
    assert "rita" in page
    assert "Viewed transcript" in page
    when = date_format(timezone.localtime(event.created_at), "DATETIME_FORMAT")
    assert when in page
    detail = reverse("conversation_detail", args=[conversation.pk])
    assert f'<a href="{detail}">Garden plans</a>' in page
    assert "secret plans" not in page

    page = reads_on(client, bob)
    assert "No staff member has opened your conversations." in page
    assert "rita" not in page


def test_an_export_of_two_peoples_conversations_shows_on_both_pages(client, reviewer, alice, bob):
    alices = make_conversation(alice, ("a", "b"), title="Alice's trip")
    bobs = make_conversation(bob, ("c", "d"), title="Bob's taxes")
    client.force_login(reviewer)
    response = client.post(
        changelist(Conversation),
        {"action": "export_markdown", "_selected_action": [alices.pk, bobs.pk]},
    )
    assert response.status_code == 200
    page = reads_on(client, alice)
    assert "Exported as Markdown" in page and "Alice&#x27;s trip" in page
    assert "Bob&#x27;s taxes" not in page
    page = reads_on(client, bob)
    assert "Exported as Markdown" in page and "Bob&#x27;s taxes" in page
    assert "Alice&#x27;s trip" not in page


def test_a_read_of_an_api_call_shows_as_that_call(client, superuser, alice):
    call = make_api_call(alice)
    client.force_login(superuser)
    assert client.get(change_url(call)).status_code == 200
    page = reads_on(client, alice)
    assert "root" in page
    assert "Viewed API call" in page
    assert f"API call #{call.pk}" in page


def test_a_deleted_conversation_and_a_departed_staff_member_are_named_plainly(
    client, reviewer, alice
):
    conversation = make_conversation(alice, ("a", "b"), title="Gone soon")
    client.force_login(reviewer)
    client.get(change_url(conversation))
    number = conversation.pk
    conversation.delete()
    reviewer.delete()
    page = reads_on(client, alice)
    assert f"Conversation #{number} (deleted)" in page
    assert "A former staff member" in page
    assert "Gone soon" not in page


def test_reads_are_listed_newest_first(client, reviewer, alice):
    first = make_conversation(alice, ("a", "b"), title="Older read")
    second = make_conversation(alice, ("c", "d"), title="Newer read")
    client.force_login(reviewer)
    client.get(change_url(first))
    client.get(change_url(second))
    page = reads_on(client, alice)
    assert page.index("Newer read") < page.index("Older read")


def test_the_list_is_paginated_25_a_page(client, reviewer, alice):
    conversation = make_conversation(alice, ("a", "b"))
    for _ in range(30):
        review_services.audit_record(
            actor=reviewer, action="view_transcript", conversation_ids=[conversation.pk]
        )
    client.force_login(alice)
    first = client.get(PRIVACY)
    assert len(first.context["reads"].object_list) == 25
    assert 'href="?page=2"' in first.content.decode()
    second = client.get(PRIVACY, {"page": 2})
    assert len(second.context["reads"].object_list) == 5
    assert 'rel="prev"' in second.content.decode()
    # A page past the end shows the last one.
    assert client.get(PRIVACY, {"page": 9}).context["reads"].number == 2


@pytest.mark.parametrize("reads", [1, 40])
def test_the_page_runs_the_same_queries_however_many_reads(
    client, reviewer, alice, bob, django_assert_num_queries, reads
):
    mine = make_conversation(alice, ("a", "b"))
    gone = make_conversation(alice, ("c", "d"))
    call = make_api_call(alice)
    theirs = make_conversation(bob, ("e", "f"))
    for i in range(reads):
        review_services.audit_record(
            actor=reviewer if i % 2 else None,
            action="export_json",
            conversation_ids=[mine.pk, gone.pk, theirs.pk],
            completion_ids=[call.pk],
        )
    gone.delete()
    client.force_login(alice)
    client.get(PRIVACY)  # the site settings are cached from here on
    # (The session,) the user, their groups' retention, the count, the page of reads,
    # their conversations.
    with django_assert_num_queries(SESSION + 5):
        response = client.get(PRIVACY)
    assert response.status_code == 200


def test_anonymous_visitors_see_the_policy_and_no_list(client, reviewer, alice):
    conversation = make_conversation(alice, ("a", "b"), title="Not for strangers")
    review_services.audit_record(
        actor=reviewer, action="view_transcript", conversation_ids=[conversation.pk]
    )
    response = client.get(PRIVACY)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Staff (the site's administrators and reviewers) may read" in page
    assert "Temporary chats are deleted a day after their last message." in page
    assert "When staff opened your conversations" not in page
    assert "Not for strangers" not in page and "rita" not in page


# --- The policy in plain words ---


def test_the_page_states_the_staff_reading_policy(client, alice, staff_reading):
    client.force_login(alice)
    says = {
        SiteSettings.StaffReading.ALL: "may read your conversations and your API calls.",
        SiteSettings.StaffReading.FLAGGED: "may read only conversations they have flagged",
        SiteSettings.StaffReading.NONE: "may not read your conversations or your API calls",
    }
    for reading, text in says.items():
        staff_reading(reading)
        page = client.get(PRIVACY).content.decode()
        assert text in page, reading
        assert all(other not in page for other in says.values() if other != text), reading


def test_the_page_states_how_long_conversations_are_kept(client, db):
    site, _ = SiteSettings.objects.get_or_create(pk=1)
    page = client.get(PRIVACY).content.decode()
    assert "Conversations are kept until you delete them." in page
    assert "Usage figures (tokens and cost, per day and model) are kept" in page

    site.retention_days = 30
    site.save()
    page = client.get(PRIVACY).content.decode()
    assert "Conversations are deleted after 30 days without a new message" in page
    assert "flagged conversations are kept until they are unflagged" in page
    assert "kept until you delete them" not in page

    site.retention_days = 1
    site.save()
    assert "deleted after 1 day without" in client.get(PRIVACY).content.decode()


# --- The footer link ---


def test_pages_link_to_the_privacy_page_and_the_chat_page_from_its_sidebar(client, alice):
    client.force_login(alice)
    usage = client.get(reverse("usage_mine")).content.decode()
    assert '<footer class="site-footer">' in usage and f'href="{PRIVACY}"' in usage
    chat = client.get(reverse("chat_home")).content.decode()
    assert '<footer class="site-footer">' not in chat
    sidebar = chat[chat.index('<aside class="sidebar"') : chat.index("</aside>")]
    assert f'href="{PRIVACY}"' in sidebar
