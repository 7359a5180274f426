"""Operations over the real stack (uvicorn, a Celery worker, the simulator): the request id
follows a message into the worker's log, and the upstream key appears nowhere."""

from __future__ import annotations

import io
import secrets

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from conversations.chat.services import conversations as chat_services
from conversations.models import Completion
from tests.http import logged_in_session, post
from tests.support import wait_for

pytestmark = pytest.mark.worker

API_KEY = f"sk-live-{secrets.token_hex(16)}"


def send(stack, session, conversation, text: str, **headers: str):
    response = post(
        session, stack.url, f"/c/{conversation.pk}/messages/", headers=headers, content=text
    )
    assert response.status_code == 200, response.text[:500]
    return response


def ended(conversation) -> Completion:
    def latest_ended():
        latest = Completion.objects.filter(conversation=conversation).order_by("-pk").first()
        return latest if latest and not latest.is_active else None

    return wait_for(latest_ended, timeout=20, what="the reply to end")


def test_the_request_id_follows_a_message_into_the_worker_log(live_stack):
    alice = User.objects.create_user("alice", password="alice-password-1")
    session = logged_in_session(live_stack.url, "alice", "alice-password-1")
    conversation = chat_services.conversation_create(owner=alice)
    request_id = f"trace-{secrets.token_hex(8)}"

    response = send(
        live_stack, session, conversation, "/echo traced", **{"X-Request-ID": request_id}
    )
    assert response.headers["X-Request-ID"] == request_id
    completion = ended(conversation)
    assert completion.status == Completion.Status.SUCCEEDED
    assert completion.request_id == request_id

    def worker_lines() -> list[str]:
        return [line for line in live_stack.worker.log().splitlines() if f"[{request_id}]" in line]

    lines = wait_for(
        lambda: (found := worker_lines()) and any("succeeded" in line for line in found) and found,
        what="the worker's lines under the request id",
    )
    assert any(f"Completion {completion.pk}: attempt 1" in line for line in lines)
    assert any(f"Completion {completion.pk}: succeeded" in line for line in lines)
    web_lines = [line for line in live_stack.web_log.read_text().splitlines() if request_id in line]
    assert any(f"POST /c/{conversation.pk}/messages/ 200" in line for line in web_lines)

    # A request without an id gets a fresh one, and the next task does not inherit the first.
    other = send(live_stack, session, conversation, "/echo untraced")
    assert other.headers["X-Request-ID"] not in ("", request_id)
    second = ended(conversation)
    wait_for(
        lambda: f"[{other.headers['X-Request-ID']}]" in live_stack.worker.log(),
        what="the second request's id in the worker log",
    )
    assert not any(f"Completion {second.pk}:" in line for line in worker_lines())


@pytest.fixture
def real_looking_key(simulator, settings, monkeypatch):
    """A key like a real one, sent to every process; logs as talkative as they get."""
    settings.OPENAI_API_KEY = API_KEY
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    return API_KEY


def test_the_api_key_appears_in_no_page_log_or_row(real_looking_key, live_stack):
    alice = User.objects.create_user("alice", password="alice-password-1")
    admin = User.objects.create_superuser("root", password="root-password-1")
    session = logged_in_session(live_stack.url, "alice", "alice-password-1")
    conversation = chat_services.conversation_create(owner=alice)

    send(live_stack, session, conversation, "/echo hello")
    ok = ended(conversation)
    assert ok.status == Completion.Status.SUCCEEDED
    # A server that echoes the key it refuses: the message is kept, the key is not.
    live_stack.simulator.control(
        faults=[{"status": 401, "message": f"Incorrect API key provided: {API_KEY}"}]
    )
    send(live_stack, session, conversation, "try again")
    failed = ended(conversation)
    assert failed.status == Completion.Status.FAILED
    assert "[redacted]" in failed.error_message

    # The key did go to the upstream, as a Bearer token and nowhere else.
    assert {r["authorization"] for r in live_stack.simulator.requests()} == {f"Bearer {API_KEY}"}

    pages = [
        session.get(f"{live_stack.url}/c/{conversation.pk}/", timeout=10).text,
        post(session, live_stack.url, f"/c/{conversation.pk}/settings/").text,
        session.get(f"{live_stack.url}/usage/", timeout=10).text,
        session.get(
            f"{live_stack.url}/c/{conversation.pk}/completions/{failed.pk}/", timeout=10
        ).text,
    ]
    staff = Client()
    staff.force_login(admin)
    for url in (
        f"/admin/conversations/conversation/{conversation.pk}/change/",
        f"/admin/conversations/completion/{failed.pk}/change/",
        f"/admin/conversations/completion/{ok.pk}/change/",
        "/admin/conversations/completion/",
    ):
        response = staff.get(url)
        assert response.status_code == 200, url
        pages.append(response.content.decode())
    assert "Incorrect API key provided: [redacted]" in pages[0]
    for page in pages:
        assert API_KEY not in page

    web_log, worker_log = live_stack.web_log.read_text(), live_stack.worker.log()
    assert " DEBUG " in worker_log  # the logs really were as talkative as they get
    assert API_KEY not in web_log
    assert API_KEY not in worker_log

    rows = io.StringIO()
    call_command("dumpdata", stdout=rows)
    assert str(ok.pk) in rows.getvalue()  # the dump has the completions
    assert API_KEY not in rows.getvalue()
