"""Take my data and leave: the account page, the download of everything of a person (one
ZIP, nobody else's data, no secret), and the deletion of an account by its owner or by
staff: nothing of theirs left, sessions and keys ended at once, in bounded batches that
each commit, usage kept in the reports as "Deleted accounts", an audit record of counts."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission, User
from django.db import connection, connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from conversations.accounts.models import SiteSettings
from conversations.api import services as api_services
from conversations.api import serving
from conversations.api.errors import ApiError
from conversations.chat.models import Completion, Conversation, Message
from conversations.chat.services import conversations as chat_services
from conversations.models import ApiKey, AuditEvent, AuditSubject, ModelPrice, UsageDay
from conversations.privacy import services
from conversations.review.services import audit_record
from conversations.usage import reports
from tests.factories import csv_rows, make_conversation
from tests.portability.helpers import streamed_body
from tests.usage.helpers import COMPLETION_RATE, DAY1, DAY2, PROMPT_RATE, at, chat

DELETE_FORM = {"password": "alice-password-1", "understood": "on"}


@pytest.fixture
def history(alice, bob, simulator, enqueued, send) -> dict[str, Completion]:
    """Real calls through the simulator, priced: alice two on DAY1 and one on DAY2, bob
    one on DAY1."""
    ModelPrice.objects.create(
        model="gpt-4o-mini",
        prompt_price_per_million=PROMPT_RATE,
        completion_price_per_million=COMPLETION_RATE,
        currency="USD",
        valid_from=timezone.now() - timedelta(days=3650),
    )
    mine = chat_services.conversation_create(owner=alice, model="gpt-4o-mini", title="Mine")
    other = chat_services.conversation_create(owner=alice, model="gpt-4o-mini", title="Other")
    bobs = chat_services.conversation_create(owner=bob, model="gpt-4o-mini", title="Bob's")
    return {
        "a1": chat(send, enqueued, mine, "/echo alpine meadow", on=at(DAY1, 9)),
        "a2": chat(send, enqueued, mine, "/echo quiet harbour", on=at(DAY1, 15)),
        "a3": chat(send, enqueued, other, "/echo copper kettle", on=at(DAY2)),
        "b1": chat(send, enqueued, bobs, "/echo bob says hello there", on=at(DAY1)),
    }


def api_call(user: User, key: ApiKey | None = None, **fields) -> Completion:
    """A call to the site's API as its row is once settled (no conversation)."""
    return Completion.objects.create(
        **{
            "conversation": None,
            "source": Completion.Source.API,
            "api_key": key,
            "user": user,
            "model": "gpt-4o-mini",
            "request_body": {"messages": [{"role": "user", "content": "api secret question"}]},
            "choices": [{"index": 0, "message": {"content": "api secret answer"}}],
            "status": Completion.Status.SUCCEEDED,
            "prompt_tokens": 7,
            "completion_tokens": 3,
            "total_tokens": 10,
            "cost": Decimal("0.00050000"),
            "currency": "USD",
            "queued_at": at(DAY2, 18),
            **fields,
        }
    )


def zip_members(response) -> dict[str, bytes]:
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    # Streamed by an async iterator (a sync one would be read into a list under ASGI).
    assert hasattr(response.streaming_content, "__aiter__")
    with zipfile.ZipFile(io.BytesIO(streamed_body(response))) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def csv_sections(data: bytes) -> list[list[list[str]]]:
    """The tables of a CSV file whose tables are parted by an empty line."""
    sections: list[list[list[str]]] = [[]]
    for row in csv.reader(io.StringIO(data.decode("utf-8-sig"))):
        if row:
            sections[-1].append(row)
        else:
            sections.append([])
    return sections


def column_sums(rows: list[list[str]]) -> list[int]:
    """The sums of an all-users CSV's counts, Requests to Total tokens."""
    return [sum(int(row[index]) for row in rows[1:]) for index in range(2, 7)]


def in_another_connection(read):
    """`read()` on another thread's connection: it sees only what was committed."""

    def run():
        try:
            return read()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def v1_status(key: str) -> int:
    """The status of GET /v1/models with the key, from the API's own ASGI app (on another
    thread: a browser test earlier in the run leaves Playwright's loop on this one)."""
    return in_another_connection(lambda: _v1_status(key))


def _v1_status(key: str) -> int:
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v1/models",
        "headers": [(b"authorization", f"Bearer {key}".encode())],
    }
    async_to_sync(serving.serve)(scope, receive, send)
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


# --- The page ---


@pytest.mark.parametrize(
    ("method", "name"),
    [("get", "account"), ("get", "account_export"), ("post", "account_delete")],
)
def test_it_requires_log_in(client, method, name):
    response = getattr(client, method)(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_page_shows_who_they_are_with_download_and_delete(alice_client, alice):
    User.objects.filter(pk=alice.pk).update(email="alice@example.com")
    make_conversation(alice, ("Hi", "Hello"))
    response = alice_client.get("/account/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'href="/account/" aria-current="page"' in page  # the header's link
    assert "alice@example.com" in page
    assert f'datetime="{alice.date_joined.isoformat()}"' in page
    assert f'action="{reverse("account_export")}"' in page
    assert f'action="{reverse("account_delete")}"' in page
    assert "your 1 conversation," in page
    assert page.count('name="csrfmiddlewaretoken"') >= 2


def test_every_post_needs_the_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(reverse("account_export")).status_code == 403
    assert client.post(reverse("account_delete"), DELETE_FORM).status_code == 403
    assert User.objects.filter(pk=alice.pk, is_active=True).exists()


# --- Download my data ---


def test_the_zip_holds_everything_of_alice_and_nothing_of_bobs(
    alice_client, alice, bob, charlie, history
):
    User.objects.filter(pk=alice.pk).update(email="alice@example.com")
    alice.refresh_from_db()
    archived = make_conversation(alice, ("An old question", "An old answer"), title="Old")
    Conversation.objects.filter(pk=archived.pk).update(archived_at=timezone.now())
    bobs_own = make_conversation(bob, ("Bob's private words", "Noted"), title="Bob only")
    key, text = api_services.api_key_create(user=alice, name="laptop script")
    api_services.api_key_create(user=bob, name="bob's robot")
    call = api_call(alice, key)
    api_call(bob)
    mine = list(Conversation.objects.filter(owner=alice).order_by("pk"))
    # Staff read two of hers (and one of bob's); one reader's account is gone since.
    audit_record(
        actor=charlie,
        action=AuditEvent.Action.VIEW_TRANSCRIPT,
        conversation_ids=[mine[0].pk, bobs_own.pk],
    )
    audit_record(actor=charlie, action=AuditEvent.Action.VIEW_API_CALL, completion_ids=[call.pk])
    gone = User.objects.create_user("dana", is_staff=True)
    audit_record(actor=gone, action=AuditEvent.Action.EXPORT_JSON, conversation_ids=[mine[1].pk])
    gone.delete()

    response = alice_client.post(reverse("account_export"))
    today = timezone.localdate()
    assert response["Content-Disposition"] == (
        f'attachment; filename="chatsite-alice-{today:%Y-%m-%d}.zip"'
    )
    assert response["Cache-Control"] == "private, no-store"
    members = zip_members(response)

    conversation_files = {name for name in members if name[0].isdigit()}
    assert {name.split("-")[0] for name in conversation_files} == {str(c.pk) for c in mine}
    assert len(conversation_files) == 2 * len(mine)  # JSON and Markdown each
    documents = [json.loads(members[n]) for n in conversation_files if n.endswith(".json")]
    assert sorted(d["id"] for d in documents) == [c.pk for c in mine]
    assert set(members) - conversation_files == {
        "account.json",
        "usage.csv",
        "api_keys.json",
        "staff_access.json",
    }

    account = json.loads(members["account.json"])
    assert account == {
        "username": "alice",
        "email": "alice@example.com",
        "first_name": "",
        "last_name": "",
        "date_joined": alice.date_joined.isoformat(),
        "last_login": alice.last_login.isoformat(),
    }

    keys = json.loads(members["api_keys.json"])
    assert keys == [
        {
            "name": "laptop script",
            "prefix": key.prefix,
            "created_at": key.created_at.isoformat(),
            "expires_at": None,
            "last_used_at": None,
            "revoked_at": None,
        }
    ]

    access = json.loads(members["staff_access.json"])
    assert [
        (a["action"], a["actor"], a["conversation_id"], a["completion_id"]) for a in access
    ] == [
        ("view_transcript", "charlie", mine[0].pk, None),
        ("view_api_call", "charlie", None, call.pk),
        ("export_json", None, mine[1].pk, None),
    ]
    assert all(a["at"] for a in access)

    days, models = csv_sections(members["usage.csv"])
    assert members["usage.csv"].startswith("\ufeff".encode())
    assert days[0] == [
        "Day", "Requests", "Failed", "Prompt tokens", "Completion tokens", "Total tokens",
        "Cost", "Currency", "Requests without a price",
    ]  # fmt: skip
    expected_days = reports.per_day(alice.pk, DAY1, today, fill=False)
    # From her first call (before she joined, as the history has it) to the archived chat's.
    assert [row[0] for row in days[1:]] == [str(DAY1), str(DAY2), str(today)]
    assert [int(row[1]) for row in days[1:]] == [r["requests"] for r in expected_days] == [2, 2, 1]
    assert [int(row[5]) for row in days[1:]] == [r["total_tokens"] for r in expected_days]
    assert models[0][:3] == ["Model", "Provider", "Source"]
    assert sorted((row[0], row[2], int(row[3])) for row in models[1:]) == [
        ("gpt-4o-mini", "API", 1),
        ("gpt-4o-mini", "Browser", 4),
    ]

    everything = b"".join(members.values())
    for secret in (text, key.hashed, key.salt, alice.password):
        assert secret.encode() not in everything
    for theirs in ("Bob's private words", "bob says hello", "bob's robot", "bob"):
        assert theirs.encode() not in everything


def test_an_account_with_nothing_gets_its_files_all_the_same(alice_client):
    members = zip_members(alice_client.get(reverse("account_export")))
    assert set(members) == {"account.json", "usage.csv", "api_keys.json", "staff_access.json"}
    days, models = csv_sections(members["usage.csv"])
    assert len(days) == 1 and len(models) == 1  # the headers only
    assert json.loads(members["api_keys.json"]) == []
    assert json.loads(members["staff_access.json"]) == []


# --- Delete my account ---


def test_a_wrong_password_deletes_nothing_and_says_so_by_the_field(alice_client, alice):
    conversation = make_conversation(alice, ("Keep me", "Kept"))
    _key, text = api_services.api_key_create(user=alice, name="kept")
    response = alice_client.post(
        reverse("account_delete"), {"password": "not-it", "understood": "on"}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "That is not your password. Nothing was deleted." in page
    form = response.context["form"]
    assert list(form.errors) == ["password"]
    assert 'aria-invalid="true"' in page
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    assert Message.objects.filter(conversation=conversation).count() == 2
    alice.refresh_from_db()
    assert alice.is_active and alice.check_password("alice-password-1")
    assert api_services.key_authenticate(f"Bearer {text}").user_id == alice.pk
    assert alice_client.get(reverse("account")).status_code == 200  # still logged in
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.DELETE_ACCOUNT).exists()


def test_an_account_of_single_sign_on_confirms_with_its_username(client, alice):
    """No password of its own (made at an SSO log-in): the username confirms instead."""
    alice.set_unusable_password()
    alice.save()
    client.force_login(alice)
    page = client.get(reverse("account")).content.decode()
    assert "Type your username to confirm" in page and 'type="password"' not in page
    wrong = client.post(reverse("account_delete"), {"password": "bob", "understood": "on"})
    assert wrong.status_code == 400
    assert "That is not your username. Nothing was deleted." in wrong.content.decode()
    assert User.objects.filter(pk=alice.pk).exists()
    client.post(reverse("account_delete"), {"password": "alice", "understood": "on"})
    assert not User.objects.filter(pk=alice.pk).exists()


def test_the_box_must_be_ticked(alice_client, alice):
    response = alice_client.post(reverse("account_delete"), {"password": "alice-password-1"})
    assert response.status_code == 400
    assert list(response.context["form"].errors) == ["understood"]
    assert User.objects.filter(pk=alice.pk).exists()


@pytest.fixture(params=["database", "cache"])
def session_engine(request, settings):
    """Sessions kept in the database only, or read from the cache (as in production)."""
    if request.param == "cache":
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        settings.SESSION_ENGINE = "conversations.accounts.sessions"
    else:
        settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    return request.param


def test_deleting_leaves_nothing_of_alice_and_keeps_the_usage_totals(
    session_engine, alice, bob, charlie, history
):
    # Logged in twice through the log-in form: this browser and another device.
    here, elsewhere = Client(), Client()
    for client in (here, elsewhere):
        client.post(reverse("login"), {"username": "alice", "password": "alice-password-1"})
        assert client.get(reverse("account")).status_code == 200
    key, text = api_services.api_key_create(user=alice, name="notebook")
    api_call(alice, key)
    api_call(alice, key, status=Completion.Status.RUNNING, total_tokens=None, cost=None)
    theirs = make_conversation(bob, ("Bob stays", "Yes"))
    bobs_calls = Completion.objects.filter(user=bob).count()
    ids = list(Conversation.objects.filter(owner=alice).values_list("pk", flat=True))
    texts = list(
        Message.objects.filter(conversation__owner=alice).values_list("content", flat=True)
    )
    assert len(ids) == 2 and texts
    staff = Client()
    staff.force_login(charlie)
    csv_url = reverse("usage_all_csv") + f"?start={DAY1}&end={DAY2}"
    total_before = reports.all_users_total(DAY1, DAY2)
    rows_before = reports.all_users(DAY1, DAY2)
    csv_before = csv_rows(staff.get(csv_url))
    alices = [row for row in rows_before if row["user_id"] == alice.pk]

    response = here.post(reverse("account_delete"), DELETE_FORM, follow=True)

    assert response.redirect_chain == [(reverse("login"), 302)]
    assert "Your account and conversations were deleted." in response.content.decode()
    assert not User.objects.filter(pk=alice.pk).exists()
    assert not Conversation.objects.filter(pk__in=ids).exists()
    assert not Message.objects.filter(conversation_id__in=ids).exists()
    assert not Message.objects.filter(content__in=texts).exists()
    assert not Completion.objects.filter(user_id=alice.pk).exists()
    assert not Completion.objects.filter(conversation_id__in=ids).exists()
    assert not Completion.objects.filter(request_body__icontains="api secret").exists()
    assert not ApiKey.objects.filter(user_id=alice.pk).exists()
    # Her sessions, this one and the other device's, are over.
    for client in (here, elsewhere):
        answer = client.get(reverse("account"))
        assert answer.status_code == 302 and answer["Location"].startswith(reverse("login"))
    with pytest.raises(ApiError) as refused:
        api_services.key_authenticate(f"Bearer {text}")
    assert refused.value.status == 401

    # The reports keep every figure; hers are now one "Deleted accounts" row a source.
    assert reports.all_users_total(DAY1, DAY2) == total_before
    rows_after = reports.all_users(DAY1, DAY2)
    gone = sorted((row for row in rows_after if row["user_id"] is None), key=lambda r: r["source"])
    assert [(r["source"], r["requests"], r["total_tokens"], r["cost"]) for r in gone] == [
        (r["source"], r["requests"], r["total_tokens"], r["cost"])
        for r in sorted(alices, key=lambda r: r["source"])
    ]
    assert [r for r in rows_after if r["user_id"] == bob.pk] == [
        r for r in rows_before if r["user_id"] == bob.pk
    ]
    csv_after = csv_rows(staff.get(csv_url))
    assert column_sums(csv_after) == column_sums(csv_before)
    assert "alice" in [row[0] for row in csv_before]
    assert "alice" not in [row[0] for row in csv_after]
    assert "Deleted accounts" in [row[0] for row in csv_after]
    assert UsageDay.objects.filter(user__isnull=True).exists()

    event = AuditEvent.objects.get(action=AuditEvent.Action.DELETE_ACCOUNT)
    assert event.actor is None
    assert event.details == {"user_id": alice.pk, "conversations": 2, "messages": 6, "api_calls": 2}
    assert event.conversation_ids == [] and event.completion_ids == []
    recorded = json.dumps(event.details) + str(event)
    assert "alice" not in recorded and not any(t in recorded for t in texts)

    # Nobody else's rows went, and logging in as her fails as for any wrong password.
    assert Conversation.objects.filter(pk=theirs.pk).exists()
    assert Completion.objects.filter(user=bob).count() == bobs_calls
    refused_login = Client().post(
        reverse("login"), {"username": "alice", "password": "alice-password-1"}
    )
    assert refused_login.status_code == 200
    assert "Please enter a correct username and password" in refused_login.content.decode()


def test_it_deletes_in_bounded_batches_each_committed_on_its_own(
    transactional_db, alice, bob, monkeypatch
):
    monkeypatch.setattr(services, "BATCH_SIZE", 3)
    monkeypatch.setattr(services, "API_CALLS_BATCH_SIZE", 2)
    for number in range(10):
        make_conversation(alice, (f"Question {number}", f"Answer {number}"))
    for _ in range(3):
        api_call(alice)
    make_conversation(bob, ("Not in any batch", "Right"))
    _key, text = api_services.api_key_create(user=alice, name="script")
    assert v1_status(text) == 200

    def remaining() -> tuple[int, int]:
        return (
            Conversation.objects.filter(owner_id=alice.pk).count(),
            Completion.objects.filter(user_id=alice.pk, conversation__isnull=True).count(),
        )

    batches: list[tuple[int, tuple[int, int]]] = []
    api_batches: list[tuple[int, tuple[int, int]]] = []
    key_status: list[int] = []
    real_batch = services.conversations_batch_delete
    real_api_batch = services.api_calls_batch_delete

    def batch(*, owner_id: int) -> dict[str, int]:
        # Not inside a caller's transaction: the batch's own commits when it returns.
        assert not connection.in_atomic_block
        if not batches:
            key_status.append(v1_status(text))  # the account was locked before any batch
        counts = real_batch(owner_id=owner_id)
        batches.append((counts["conversations"], in_another_connection(remaining)))
        return counts

    def api_batch(*, user_id: int) -> int:
        assert not connection.in_atomic_block
        deleted = real_api_batch(user_id=user_id)
        api_batches.append((deleted, in_another_connection(remaining)))
        return deleted

    monkeypatch.setattr(services, "conversations_batch_delete", batch)
    monkeypatch.setattr(services, "api_calls_batch_delete", api_batch)

    deleted = services.account_delete(user=alice)

    # Each batch's deletion was seen from another connection as soon as it returned.
    assert batches == [(3, (7, 3)), (3, (4, 3)), (3, (1, 3)), (1, (0, 3)), (0, (0, 3))]
    assert api_batches == [(2, (0, 1)), (1, (0, 0)), (0, (0, 0))]
    assert key_status == [401]
    assert (deleted.conversations, deleted.messages, deleted.api_calls) == (10, 20, 3)
    assert not User.objects.filter(pk=alice.pk).exists()
    assert Conversation.objects.filter(owner=bob).count() == 1


def test_a_conversation_made_during_the_deletion_is_deleted_too(alice, monkeypatch):
    make_conversation(alice, ("First", "One"))
    real_batch = services.api_calls_batch_delete
    late = []

    def api_batch(*, user_id: int) -> int:
        if not late:  # a send that was under way when the account was locked
            late.append(make_conversation(alice, ("Late", "Too late")))
        return real_batch(user_id=user_id)

    monkeypatch.setattr(services, "api_calls_batch_delete", api_batch)
    deleted = services.account_delete(user=alice)
    assert deleted.conversations == 2
    assert not Conversation.objects.filter(pk=late[0].pk).exists()
    assert not User.objects.filter(pk=alice.pk).exists()


# --- Staff, in the admin ---


@pytest.fixture
def root_client(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def test_the_admin_confirmation_counts_instead_of_naming_every_message(root_client, alice):
    make_conversation(alice, ("My diary entry", "Noted"))
    api_call(alice)
    page = root_client.get(reverse("admin:auth_user_delete", args=[alice.pk]))
    assert page.status_code == 200
    assert dict(page.context["model_count"]) == {
        "Conversations": 1,
        "Messages": 2,
        "API calls": 1,
    }
    assert "My diary entry" not in page.content.decode()


@pytest.mark.parametrize("how", ["delete_view", "delete_selected"])
def test_staff_delete_goes_through_the_same_service_and_keeps_usage(
    root_client, superuser, alice, bob, history, monkeypatch, how
):
    calls = []
    real = services.account_delete

    def spy(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(services, "account_delete", spy)
    total_before = reports.all_users_total(DAY1, DAY2)
    if how == "delete_view":
        response = root_client.post(
            reverse("admin:auth_user_delete", args=[alice.pk]), {"post": "yes"}
        )
    else:
        response = root_client.post(
            reverse("admin:auth_user_changelist"),
            {"action": "delete_selected", "_selected_action": [alice.pk], "post": "yes"},
        )
    assert response.status_code == 302
    assert [(c["user"].pk, c["actor"]) for c in calls] == [(alice.pk, superuser)]
    assert not User.objects.filter(pk=alice.pk).exists()
    assert not Completion.objects.filter(user_id=alice.pk).exists()
    assert reports.all_users_total(DAY1, DAY2) == total_before
    assert UsageDay.objects.filter(user__isnull=True).exists()
    event = AuditEvent.objects.get(action=AuditEvent.Action.DELETE_ACCOUNT)
    assert event.actor == superuser
    assert event.details["user_id"] == alice.pk and event.details["conversations"] == 2
    # The admin's own log of the deletion does not keep her name either.
    logged = LogEntry.objects.get(action_flag=DELETION)
    assert logged.object_id == str(alice.pk) and "alice" not in logged.object_repr


def test_a_superuser_downloads_a_persons_data_and_it_is_audited(
    root_client, superuser, alice, alice_client, bob
):
    mine = [make_conversation(alice, ("Hers", "Yes")), make_conversation(alice, ("Two", "2"))]
    make_conversation(bob, ("Bob's own words", "Fine"))
    change = root_client.get(reverse("admin:auth_user_change", args=[alice.pk]))
    url = reverse("admin:auth_user_download", args=[alice.pk])
    assert f'href="{url}"' in change.content.decode()
    assert "Download this person's data" in change.content.decode()

    members = zip_members(root_client.get(url))
    assert {name.split("-")[0] for name in members if name[0].isdigit()} == {
        str(c.pk) for c in mine
    }
    assert b"Bob's own words" not in b"".join(members.values())
    event = AuditEvent.objects.get(action=AuditEvent.Action.EXPORT_ACCOUNT)
    assert event.actor == superuser
    assert event.conversation_ids == sorted(c.pk for c in mine)
    assert event.details == {"user_id": alice.pk, "conversations": 2}
    assert AuditSubject.objects.filter(event=event, owner=alice).count() == 2

    # She sees it in her own download.
    own = zip_members(alice_client.get(reverse("account_export")))
    access = json.loads(own["staff_access.json"])
    assert {(a["action"], a["actor"]) for a in access} == {("export_account", "root")}


def test_other_staff_cannot_download_nor_anyone_while_staff_may_not_read(
    client, root_client, alice, charlie
):
    charlie.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_user", "change_user"])
    )
    client.force_login(charlie)
    url = reverse("admin:auth_user_download", args=[alice.pk])
    change = client.get(reverse("admin:auth_user_change", args=[alice.pk]))
    assert change.status_code == 200 and url not in change.content.decode()
    assert client.get(url).status_code == 403

    SiteSettings.objects.update_or_create(pk=1, defaults={"staff_reading": "none"})
    change = root_client.get(reverse("admin:auth_user_change", args=[alice.pk]))
    assert url not in change.content.decode()
    assert root_client.get(url).status_code == 403
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.EXPORT_ACCOUNT).exists()
