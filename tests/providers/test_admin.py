"""Providers in the admin: superusers add them with a write-only key (stored encrypted,
never shown, dumped or logged), refresh their model lists in the background, offer their
models and pick the one new chats start on, and see each provider's health."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from conversations.models import Completion, Conversation
from conversations.providers import catalog, services
from conversations.providers.models import Provider, ProviderModel
from conversations.upstream.simulated_text import SIMULATED_MODELS

RAW_KEY = "sk-lab-0123456789abcdefSECRET"
CHANGELIST = "admin:conversations_provider_changelist"


def change_url(provider: Provider) -> str:
    return reverse("admin:conversations_provider_change", args=[provider.pk])


def make_provider(name: str, base_url: str, key: str = "") -> Provider:
    return services.provider_save(provider=Provider(name=name, base_url=base_url), api_key=key)


def new_lab(base_url: str) -> dict:
    """The add form of a provider named Lab at `base_url`, with the raw key."""
    return {
        "name": "Lab",
        "base_url": base_url,
        "api_key": RAW_KEY,
        "connect_timeout": "2",
        "read_timeout": "60",
        "enabled": "on",
        "models-TOTAL_FORMS": "0",
        "models-INITIAL_FORMS": "0",
    }


def form_data(provider: Provider, models: dict[str, dict] | None = None, **fields) -> dict:
    """The change form as its page posts it, with `fields` changed and, per model id, the
    model rows' (booleans are checkboxes: ticked or left out)."""
    rows = list(provider.models.order_by("model_id"))
    values = {
        "name": provider.name,
        "base_url": provider.base_url,
        "api_key": "",
        "connect_timeout": provider.connect_timeout,
        "read_timeout": provider.read_timeout,
        "enabled": provider.enabled,
        **fields,
    }
    data = {
        "models-TOTAL_FORMS": len(rows),
        "models-INITIAL_FORMS": len(rows),
        "models-MIN_NUM_FORMS": 0,
        "models-MAX_NUM_FORMS": 1000,
    }
    for index, row in enumerate(rows):
        current = {
            "display_name": row.display_name,
            "enabled": row.enabled,
            "is_default": row.is_default,
        }
        current.update((models or {}).get(row.model_id, {}))
        prefix = f"models-{index}-"
        values.update({f"{prefix}id": row.pk, f"{prefix}provider": provider.pk})
        values.update({f"{prefix}{name}": value for name, value in current.items()})
    for name, value in values.items():
        if value is True:
            data[name] = "on"
        elif value is not False:
            data[name] = value
    return data


@pytest.fixture
def admin_client(client: Client, superuser) -> Client:
    client.force_login(superuser)
    return client


@pytest.fixture
def posted(admin_client, django_capture_on_commit_callbacks):
    """Post to the admin with the request's after-commit work (queueing refreshes) run."""

    def post(url: str, data: dict, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return admin_client.post(url, data, **kwargs)

    return post


@pytest.fixture
def refreshed(simulators):
    """Two providers on simulators of their own, their model lists read."""
    alpha = make_provider("Alpha", simulators().base_url, "sk-alpha")
    beta = make_provider("Beta", simulators().base_url, "sk-beta")
    services.providers_refresh()
    return alpha, beta


# --- The key: write-only, encrypted, never shown ---


def test_a_superuser_adds_a_provider_and_its_key_is_stored_encrypted(
    admin_client, posted, simulators, refreshes
):
    lab = simulators()
    page = admin_client.get(reverse("admin:conversations_provider_add"))
    assert page.status_code == 200
    assert 'type="password"' in page.text
    assert "Leave empty to keep the saved key" in page.text
    assert "No key saved." in page.text

    response = posted(
        reverse("admin:conversations_provider_add"),
        new_lab(lab.base_url),
    )
    assert response.status_code == 302
    provider = Provider.objects.get(name="Lab")
    assert RAW_KEY not in provider.api_key_encrypted
    assert provider.api_key == RAW_KEY
    assert (provider.base_url, provider.connect_timeout, provider.read_timeout) == (
        lab.base_url,
        2.0,
        60.0,
    )
    # Its model list is read at once, in the worker.
    assert refreshes.ids == [provider.pk]

    change = admin_client.get(change_url(provider))
    assert "A key is saved (never shown)." in change.text
    assert RAW_KEY not in change.text
    assert provider.api_key_encrypted not in change.text
    assert RAW_KEY not in admin_client.get(reverse(CHANGELIST)).text
    dumped = StringIO()
    call_command("dumpdata", "conversations", stdout=dumped)
    assert RAW_KEY not in dumped.getvalue()
    assert provider.api_key_encrypted in dumped.getvalue()  # the token only


def test_an_empty_key_keeps_the_saved_one_a_new_one_replaces_it_and_it_can_be_removed(
    admin_client, posted
):
    provider = make_provider("Lab", "http://vllm:8000/v1", RAW_KEY)
    assert posted(change_url(provider), form_data(provider)).status_code == 302
    provider.refresh_from_db()
    assert provider.api_key == RAW_KEY

    posted(change_url(provider), form_data(provider, api_key="sk-the-new-one"))
    provider.refresh_from_db()
    assert provider.api_key == "sk-the-new-one"

    posted(change_url(provider), form_data(provider, clear_api_key=True))
    provider.refresh_from_db()
    assert provider.api_key_encrypted == ""
    assert "No key saved." in admin_client.get(change_url(provider)).text


@pytest.fixture
def echoing_url() -> Iterator[str]:
    """A server that refuses every key, saying it back (as some providers do)."""

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self):
            said = self.headers.get("Authorization", "")
            body = json.dumps({"error": {"message": f"Incorrect API key provided: {said}"}})
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_the_key_is_in_no_log_line_page_or_error_through_add_refresh_and_failures(
    admin_client, posted, simulators, refreshes, echoing_url, caplog
):
    caplog.set_level(logging.DEBUG)
    lab = simulators()
    posted(
        reverse("admin:conversations_provider_add"),
        new_lab(lab.base_url),
    )
    refreshes.run()
    provider = Provider.objects.get(name="Lab")
    assert provider.models.count() == len(SIMULATED_MODELS)

    # A provider that says the key back, then one that is gone.
    posted(change_url(provider), form_data(provider, base_url=echoing_url))
    refreshes.run()
    provider.refresh_from_db()
    assert "Incorrect API key provided" in provider.models_error
    assert RAW_KEY not in provider.models_error
    pages = [admin_client.get(change_url(provider)).text]
    lab.stop()
    posted(change_url(provider), form_data(provider, base_url=lab.base_url))
    refreshes.run()
    provider.refresh_from_db()
    assert provider.models_error
    pages += [
        admin_client.get(change_url(provider)).text,
        admin_client.get(reverse(CHANGELIST)).text,
    ]

    assert caplog.records  # the flow was logged (the refreshes' failures at least)
    assert [r for r in caplog.records if RAW_KEY in r.getMessage()] == []
    assert RAW_KEY not in caplog.text
    assert [page for page in pages if RAW_KEY in page] == []


def test_an_address_without_a_dot_is_taken_and_one_with_a_password_is_refused(admin_client, posted):
    provider = make_provider("Lab", "http://127.0.0.1:9/v1")
    posted(change_url(provider), form_data(provider, base_url="http://vllm:8000/v1"))
    provider.refresh_from_db()
    assert provider.base_url == "http://vllm:8000/v1"

    page = posted(
        change_url(provider),
        form_data(provider, base_url="http://me:sk-secret@vllm:8000/v1", api_key=RAW_KEY),
    )
    assert page.status_code == 200
    assert "Leave the user and password out of the address" in page.text
    assert RAW_KEY not in page.text  # the form shown again leaves the key out
    provider.refresh_from_db()
    assert provider.base_url == "http://vllm:8000/v1"


# --- Who may ---


def test_staff_who_are_not_superusers_are_refused_even_with_the_permissions(client, charlie):
    charlie.user_permissions.set(Permission.objects.filter(codename__endswith="provider"))
    provider = make_provider("Lab", "http://vllm:8000/v1", RAW_KEY)
    client.force_login(charlie)
    for url in (
        reverse(CHANGELIST),
        reverse("admin:conversations_provider_add"),
        change_url(provider),
        reverse("admin:conversations_provider_delete", args=[provider.pk]),
    ):
        assert client.get(url).status_code == 403, url
    assert client.post(change_url(provider), form_data(provider, name="Mine")).status_code == 403
    assert Provider.objects.get().name == "Lab"
    assert "Providers" not in client.get(reverse("admin:index")).text


def test_people_logged_out_are_sent_to_log_in(client, db):
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


# --- Refreshing ---


def test_refresh_now_saves_and_queues_the_refresh_and_the_page_does_not_wait(
    admin_client, posted, simulators, refreshes
):
    lab = simulators()
    provider = make_provider("Lab", lab.base_url, RAW_KEY)
    page = admin_client.get(change_url(provider))
    assert 'name="_refresh"' in page.text and 'value="Refresh now"' in page.text

    response = posted(change_url(provider), {**form_data(provider), "_refresh": "Refresh now"})
    assert response.status_code == 302
    assert response["Location"] == change_url(provider)
    assert refreshes.ids == [provider.pk]
    assert provider.models.count() == 0  # read by the worker, not by this request
    shown = admin_client.get(change_url(provider))
    assert "Refreshing: the list updates in a few seconds." in shown.text

    refreshes.run()
    page = admin_client.get(change_url(provider)).text
    for model in SIMULATED_MODELS:
        assert f'aria-label="Offer {model}"' in page


def test_the_list_action_queues_a_refresh_of_each_selected_provider(posted, refreshes):
    alpha = make_provider("Alpha", "http://127.0.0.1:9/v1")
    beta = make_provider("Beta", "http://127.0.0.1:9/v1")
    make_provider("Gamma", "http://127.0.0.1:9/v1")
    response = posted(
        reverse(CHANGELIST),
        {"action": "refresh_selected", "_selected_action": [alpha.pk, beta.pk]},
        follow=True,
    )
    assert "Refreshing: the list updates in a few seconds." in response.text
    assert sorted(refreshes.ids) == sorted([alpha.pk, beta.pk])


# --- Models: offered, named, one default ---


def test_an_admin_offers_a_model_names_it_and_makes_it_the_default_for_new_chats(
    posted, refreshed, refreshes
):
    alpha, beta = refreshed
    assert catalog.default().provider_id is None  # the environment's, until one is picked

    response = posted(
        change_url(alpha),
        form_data(
            alpha, {"gpt-4o": {"enabled": True, "is_default": True, "display_name": "Alpha 4o"}}
        ),
    )
    assert response.status_code == 302
    chosen = catalog.default()
    assert (chosen.provider_id, chosen.model, chosen.label) == (alpha.pk, "gpt-4o", "Alpha 4o")
    assert refreshes.ids == []  # nothing that needs the list read again

    posted(
        change_url(beta), form_data(beta, {"gpt-4.1-mini": {"enabled": True, "is_default": True}})
    )
    assert list(ProviderModel.objects.filter(is_default=True)) == [
        beta.models.get(model_id="gpt-4.1-mini")
    ]
    assert (catalog.default().provider_id, catalog.default().model) == (beta.pk, "gpt-4.1-mini")
    # Alpha's model is still offered, no longer the default.
    assert catalog.find(alpha.pk, "gpt-4o").is_default is False


def test_two_defaults_at_once_and_a_default_not_offered_are_refused(posted, refreshed):
    alpha, _beta = refreshed
    both = {
        "gpt-4o": {"enabled": True, "is_default": True},
        "gpt-4o-mini": {"enabled": True, "is_default": True},
    }
    page = posted(change_url(alpha), form_data(alpha, both))
    assert page.status_code == 200
    assert "Only one model can be the default for new chats." in page.text

    page = posted(change_url(alpha), form_data(alpha, {"gpt-4o": {"is_default": True}}))
    assert page.status_code == 200
    assert "Offer the model to make it the default for new chats." in page.text
    assert not ProviderModel.objects.filter(is_default=True).exists()


def test_a_model_added_by_hand_is_offered(posted):
    provider = make_provider("Local", "http://llama:8080/v1")
    data = form_data(provider)
    data.update(
        {
            "models-TOTAL_FORMS": 1,
            "models-0-provider": provider.pk,
            "models-0-model_id": "local-llama",
            "models-0-display_name": "Llama (local)",
            "models-0-enabled": "on",
        }
    )
    assert posted(change_url(provider), data).status_code == 302
    offer = catalog.find(provider.pk, "local-llama")
    assert offer is not None and offer.available and offer.label == "Llama (local)"


def list_data(changes: dict[tuple[str, str], dict]) -> dict:
    """The list of models as its page posts it, changed per (provider name, model id)."""
    rows = list(ProviderModel.objects.select_related("provider"))
    data = {"form-TOTAL_FORMS": len(rows), "form-INITIAL_FORMS": len(rows), "_save": "Save"}
    for index, row in enumerate(rows):
        values = {"display_name": row.display_name, "enabled": row.enabled}
        values["is_default"] = row.is_default
        values.update(changes.get((row.provider.name, row.model_id), {}))
        data[f"form-{index}-id"] = row.pk
        data.update(
            {
                f"form-{index}-{k}": ("on" if v is True else v)
                for k, v in values.items()
                if v is not False
            }
        )
    return data


def test_in_the_list_of_all_models_an_admin_offers_one_and_moves_the_default_to_it(
    admin_client, posted, refreshed
):
    alpha, beta = refreshed
    row = alpha.models.get(model_id="gpt-4o")
    row.enabled = True
    services.provider_model_save(provider_model=row, is_default=True)
    models_url = reverse("admin:conversations_providermodel_changelist")
    assert 'aria-label="Offer gpt-4o-mini"' in admin_client.get(models_url).text

    changes = {
        ("Beta", "gpt-4o-mini"): {"enabled": True, "is_default": True, "display_name": "Mini"}
    }
    changes[("Alpha", "gpt-4o")] = {"is_default": False}
    assert posted(models_url, list_data(changes)).status_code == 302
    assert list(ProviderModel.objects.filter(is_default=True)) == [
        beta.models.get(model_id="gpt-4o-mini")
    ]
    chosen = catalog.default()
    assert (chosen.provider_id, chosen.label) == (beta.pk, "Mini")

    # Ticking a second one (the first left ticked) is refused, nothing saved.
    page = posted(models_url, list_data({("Alpha", "gpt-4o"): {"is_default": True}}))
    assert page.status_code == 200
    assert "Only one model can be the default for new chats." in page.text
    assert catalog.default().provider_id == beta.pk


def test_a_provider_with_too_many_models_for_its_page_links_to_the_list(
    admin_client, posted, refreshed, monkeypatch
):
    from conversations.providers.admin import ProviderAdmin

    alpha, _beta = refreshed
    monkeypatch.setattr(ProviderAdmin, "INLINE_MOST", 2)
    page = admin_client.get(change_url(alpha)).text
    assert "models-TOTAL_FORMS" not in page
    assert f"{len(SIMULATED_MODELS)} models, 0 offered: all in one list" in page
    assert f"?provider__id__exact={alpha.pk}" in page
    data = {
        k: v for k, v in form_data(alpha, name="Alpha 2").items() if not k.startswith("models-")
    }
    assert posted(change_url(alpha), data).status_code == 302
    alpha.refresh_from_db()
    assert alpha.name == "Alpha 2"


# --- Health ---


def completion(user, provider: Provider, status: str, latency_ms: int | None, ago_minutes: int):
    return Completion.objects.create(
        user=user,
        model="gpt-4o",
        provider=provider,
        provider_name=provider.name,
        status=status,
        latency_ms=latency_ms,
        queued_at=timezone.now() - timedelta(minutes=ago_minutes),
    )


def test_the_list_shows_each_providers_errors_and_latency_of_the_last_hour(admin_client, alice):
    lab = make_provider("Lab", "http://vllm:8000/v1")
    for latency in (100, 200, 900):
        completion(alice, lab, Completion.Status.SUCCEEDED, latency, ago_minutes=5)
    completion(alice, lab, Completion.Status.FAILED, 30_000, ago_minutes=10)
    completion(alice, lab, Completion.Status.FAILED, None, ago_minutes=120)  # before the hour
    completion(alice, lab, Completion.Status.QUEUED, None, ago_minutes=1)  # not finished
    idle = make_provider("Idle", "http://idle:8000/v1")
    Provider.objects.filter(pk=idle.pk).update(
        models_checked_at=timezone.now(), models_error="ConnectionError: refused"
    )

    page = admin_client.get(reverse(CHANGELIST)).text
    assert "1 of 4 failed (25%)" in page
    assert "400 / 200 / 900 ms" in page  # average / median / p95 of the successful calls
    assert "no calls" in page  # Idle's
    assert "failed: ConnectionError: refused" in page
    assert "1 of 4 failed (25%)" in admin_client.get(change_url(lab)).text


def test_the_list_takes_as_many_queries_for_many_providers_as_for_one(admin_client, alice):
    def queries() -> int:
        with CaptureQueriesContext(connection) as context:
            assert admin_client.get(reverse(CHANGELIST)).status_code == 200
        return len(context)

    first = make_provider("Provider 0", "http://p0:8000/v1")
    completion(alice, first, Completion.Status.SUCCEEDED, 100, ago_minutes=1)
    one = queries()
    for number in range(1, 6):
        provider = make_provider(f"Provider {number}", f"http://p{number}:8000/v1")
        completion(alice, provider, Completion.Status.FAILED, 200, ago_minutes=1)
    assert queries() == one


# --- Disabling and deleting ---


def test_disabling_or_deleting_a_provider_keeps_its_conversations_and_reports(
    admin_client, posted, alice, refreshed
):
    alpha, _beta = refreshed
    row = alpha.models.get(model_id="gpt-4o")
    row.enabled = True
    services.provider_model_save(provider_model=row, is_default=False)
    chat = Conversation.objects.create(owner=alice, model="gpt-4o", provider=alpha)
    call = completion(alice, alpha, Completion.Status.SUCCEEDED, 150, ago_minutes=3)
    call.conversation = chat
    call.save(update_fields=["conversation"])
    owner = Client()
    owner.force_login(alice)
    chat_url = reverse("conversation_detail", args=[chat.pk])

    posted(change_url(alpha), form_data(alpha, enabled=False))
    assert catalog.find(alpha.pk, "gpt-4o") is None
    assert owner.get(chat_url).status_code == 200

    delete = reverse("admin:conversations_provider_delete", args=[alpha.pk])
    assert admin_client.get(delete).status_code == 200
    assert posted(delete, {"post": "yes"}).status_code == 302
    assert not Provider.objects.filter(pk=alpha.pk).exists()
    call.refresh_from_db()
    chat.refresh_from_db()
    assert (call.provider_id, call.provider_name) == (None, "Alpha")
    assert chat.provider_id is None
    assert owner.get(chat_url).status_code == 200
    assert admin_client.get(reverse("usage_all")).status_code == 200
    assert admin_client.get(reverse(CHANGELIST)).status_code == 200
