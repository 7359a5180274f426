"""What a new user met (issue 17): the model chip and the tab's title follow changes, the
number of choices has the site's own limit, and busy errors say they clear."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from conversations.accounts.selectors import site_settings
from conversations.chat.services import conversations as chat_services
from conversations.models import SiteSettings
from tests.http import HTMX


def save_settings(client, conversation, **values):
    data = {"settings-model": conversation.model} | {f"settings-{k}": v for k, v in values.items()}
    return client.post(reverse("conversation_settings", args=[conversation.pk]), data, **HTMX)


def test_saving_another_model_redraws_the_headers_model_chip(alice_client, conversation, settings):
    settings.CHAT_MODELS = ["gpt-4o-mini", "gpt-4o"]
    conversation.model = "gpt-4o-mini"
    conversation.save()

    page = save_settings(alice_client, conversation, model="gpt-4o").content.decode()

    # Out of band: htmx puts it in place of the header's chip, which the answer is not.
    chip = re.search(r'<span id="conversation-model"[^>]*>([^<]*)</span>', page)
    assert chip and chip.group(1) == "gpt-4o"
    assert 'hx-swap-oob="true"' in chip.group(0)


def test_a_refused_save_leaves_the_chip_alone(alice_client, conversation):
    page = save_settings(alice_client, conversation, temperature="9").content.decode()
    assert 'id="conversation-model"' not in page


def test_the_chat_page_has_one_model_chip(alice_client, conversation):
    page = alice_client.get(reverse("conversation_detail", args=[conversation.pk])).content
    assert page.decode().count('id="conversation-model"') == 1


def test_renaming_answers_with_the_tabs_new_title(alice_client, conversation):
    url = reverse("conversation_rename", args=[conversation.pk])
    page = alice_client.post(url, {"title": "Trip to Kyoto"}, **HTMX).content.decode()
    # htmx sets document.title from a <title> in the answer.
    assert "<title>Trip to Kyoto · chatsite</title>" in page


def test_a_refused_rename_keeps_the_tabs_title(alice_client, conversation):
    url = reverse("conversation_rename", args=[conversation.pk])
    page = alice_client.post(url, {"title": ""}, **HTMX).content.decode()
    assert "<title>" not in page


def test_the_first_message_titles_the_tab_too(alice_client, alice):
    conversation = chat_services.conversation_create(owner=alice)
    url = reverse("message_send", args=[conversation.pk])
    page = alice_client.post(url, {"content": "Plan a week in Lisbon"}, **HTMX).content.decode()
    assert "<title>Plan a week in Lisbon · chatsite</title>" in page


# --- Choices (n): the site's limit ---


def test_choices_above_the_sites_limit_are_refused_beside_the_field(alice_client, conversation):
    assert site_settings().max_choices == 4  # the default

    page = save_settings(alice_client, conversation, n="5").content.decode()

    group = page.split('field-n field-invalid"', 1)[1].split('<div class="field ', 1)[0]
    assert "Ensure this value is less than or equal to 4." in group
    conversation.refresh_from_db()
    assert conversation.n is None


def test_the_limit_is_stated_next_to_the_field(alice_client, conversation):
    page = alice_client.get(reverse("conversation_detail", args=[conversation.pk])).content
    group = page.decode().split('class="field field-n', 1)[1].split('<div class="field ', 1)[0]
    assert "up to 4 on this site" in group
    assert 'max="4"' in group


def test_up_to_the_limit_is_accepted(alice_client, conversation):
    assert "Settings saved." in save_settings(alice_client, conversation, n="4").content.decode()
    conversation.refresh_from_db()
    assert conversation.n == 4


def test_an_administrator_changes_the_limit_and_the_form_follows(alice_client, conversation):
    SiteSettings.objects.update_or_create(pk=1, defaults={"max_choices": 8})
    assert "Settings saved." in save_settings(alice_client, conversation, n="8").content.decode()
    assert "Ensure this value is less than or equal to 8." in (
        save_settings(alice_client, conversation, n="9").content.decode()
    )


def test_the_service_refuses_choices_above_the_limit(alice):
    with pytest.raises(chat_services.ValidationError) as refused:
        chat_services.conversation_create(owner=alice, n=20)
    assert refused.value.message_dict == {"n": ["At most 4 choices on this site."]}


def test_a_conversation_saved_above_a_lowered_limit_asks_for_no_more(alice, send):
    conversation = chat_services.conversation_create(owner=alice, n=4)
    SiteSettings.objects.update_or_create(pk=1, defaults={"max_choices": 2})

    _message, completion = send(conversation, "Three ideas, please")

    assert completion.request_body["n"] == 2


def test_the_limit_is_bounded_by_the_contract(admin_client):
    url = reverse("admin:conversations_sitesettings_change", args=[1])
    SiteSettings.objects.get_or_create(pk=1)
    page = admin_client.post(url, {"signup_mode": "open", "max_choices": 129}).content.decode()
    assert "Ensure this value is less than or equal to 128." in page
    assert site_settings().max_choices == 4


def test_the_site_settings_are_read_through_the_cache(db, django_assert_num_queries):
    with django_assert_num_queries(1):
        site_settings()
    with django_assert_num_queries(0):
        assert site_settings().max_choices == 4
    SiteSettings.objects.update_or_create(pk=1, defaults={"max_choices": 6})
    with django_assert_num_queries(1):
        assert site_settings().max_choices == 6  # the save emptied the cache


# --- Staff find the all-users report ---


def test_staff_get_the_all_users_report_in_the_header(client, alice, superuser):
    client.force_login(superuser)
    page = client.get(reverse("chat_home")).content.decode()
    assert f'href="{reverse("usage_all")}"' in page

    client.force_login(alice)
    assert f'href="{reverse("usage_all")}"' not in client.get(reverse("chat_home")).content.decode()


def test_the_admin_index_links_the_report_and_the_site_settings(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse("usage_all")}"' in page
    assert f'href="{reverse("admin:conversations_sitesettings_changelist")}"' in page
    assert page.count('id="content-main"') == 1


def test_a_send_refused_while_a_reply_is_written_says_its_error_clears(alice_client, conversation):
    url = reverse("message_send", args=[conversation.pk])
    alice_client.post(url, {"content": "first"}, **HTMX)

    page = alice_client.post(url, {"content": "second"}, **HTMX).content.decode()

    error = page.split('id="composer-error"', 1)[1].split("</div>", 1)[0]
    assert "Wait for the reply to finish" in error
    assert error.startswith(' role="alert" data-clears-when-idle>')
    assert ">second</textarea>" in page  # the text stays in the composer
