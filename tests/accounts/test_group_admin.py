"""Groups in the admin: Django's pages, with the group's managers (chosen by superusers)
and a count of members that opens the user list filtered to the group."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse

from conversations.models import GroupManager, GroupRetention

MANAGERS = "managers"  # the inline formset's prefix (GroupManager.group's related name)


@pytest.fixture
def mia(db) -> User:
    return User.objects.create_user("mia", password="mia-password-1")


@pytest.fixture
def lab(alice, bob) -> Group:
    group = Group.objects.create(name="Lab")
    group.user_set.add(alice, bob)
    return group


def change_url(group: Group) -> str:
    return reverse("admin:auth_group_change", args=[group.pk])


def form_data(
    group: Group, *managers: User, initial: int = 0, keep_days: str | None = None
) -> dict:
    data = {
        "name": group.name,
        # The group's retention (a one-to-one inline): none unless `keep_days` is given.
        "retention-TOTAL_FORMS": "0" if keep_days is None else "1",
        "retention-INITIAL_FORMS": "0",
        "retention-MIN_NUM_FORMS": "0",
        "retention-MAX_NUM_FORMS": "1",
        f"{MANAGERS}-TOTAL_FORMS": str(len(managers)),
        f"{MANAGERS}-INITIAL_FORMS": str(initial),
        f"{MANAGERS}-MIN_NUM_FORMS": "0",
        f"{MANAGERS}-MAX_NUM_FORMS": "1000",
    }
    for n, user in enumerate(managers):
        data |= {f"{MANAGERS}-{n}-user": str(user.pk), f"{MANAGERS}-{n}-group": str(group.pk)}
    if keep_days is not None:
        data |= {"retention-0-retention_days": keep_days, "retention-0-group": str(group.pk)}
    return data


def test_a_superuser_sets_the_groups_retention(client, superuser, lab):
    client.force_login(superuser)
    assert "retention for the group" in client.get(change_url(lab)).content.decode()
    response = client.post(change_url(lab), form_data(lab, keep_days="14"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert GroupRetention.objects.get(group=lab).retention_days == 14


def test_a_superuser_adds_a_manager_on_the_group_form(client, superuser, mia, lab):
    client.force_login(superuser)
    page = client.get(change_url(lab)).content.decode()
    assert "Managers" in page
    assert f'name="{MANAGERS}-TOTAL_FORMS"' in page
    response = client.post(change_url(lab), form_data(lab, mia))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert list(GroupManager.objects.values_list("group", "user")) == [(lab.pk, mia.pk)]
    # The manager is listed on the form now.
    assert "mia" in client.get(change_url(lab)).content.decode()


def test_the_manager_field_searches_users(client, superuser, mia, lab):
    client.force_login(superuser)
    response = client.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "conversations",
            "model_name": "groupmanager",
            "field_name": "user",
            "term": "mi",
        },
    )
    assert response.status_code == 200
    assert [row["text"] for row in response.json()["results"]] == ["mia"]


def test_staff_with_group_permissions_see_managers_but_cannot_change_them(
    client, charlie, mia, lab
):
    GroupManager.objects.create(group=lab, user=mia)
    charlie.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="auth", codename__in=["view_group", "change_group"]
        )
    )
    client.force_login(charlie)
    page = client.get(change_url(lab)).content.decode()
    assert "Managers" in page and "mia" in page
    assert f'name="{MANAGERS}-0-user"' not in page  # read only
    dora = User.objects.create_user("dora")
    client.post(change_url(lab), form_data(lab, dora))
    assert list(GroupManager.objects.values_list("user", flat=True)) == [mia.pk]


def test_the_group_list_counts_members_and_links_to_them(client, superuser, lab):
    client.force_login(superuser)
    page = client.get(reverse("admin:auth_group_changelist")).content.decode()
    members = reverse("admin:auth_user_changelist") + f"?groups__id__exact={lab.pk}"
    assert f'<a href="{members}">2</a>' in page
    listed = client.get(members).content.decode()
    assert "alice" in listed and "bob" in listed and "root" not in listed.split("result_list")[1]


def test_a_superuser_makes_a_group_with_its_managers(client, superuser, mia):
    client.force_login(superuser)
    assert client.get(reverse("admin:auth_group_add")).status_code == 200
    data = form_data(Group(name="New"), mia)
    del data[f"{MANAGERS}-0-group"]
    response = client.post(reverse("admin:auth_group_add"), data)
    assert response.status_code == 302
    assert GroupManager.objects.get().group == Group.objects.get(name="New")
