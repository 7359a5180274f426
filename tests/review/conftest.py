"""Staff review's people and settings: rita the reviewer (root the superuser, and alice,
bob and charlie, are in tests/conftest.py), and the site's staff-reading policy."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from conversations.models import SiteSettings
from conversations.review import selectors as review_selectors


@pytest.fixture
def reviewer(db) -> User:
    user = User.objects.create_user("rita", password="rita-password-1", is_staff=True)
    user.groups.add(Group.objects.get(name=review_selectors.REVIEWER_GROUP))
    return user


@pytest.fixture
def staff_reading(db):
    """Set the site's staff-reading policy (saving the row empties the settings cache)."""

    def set_reading(value: str) -> None:
        SiteSettings.objects.update_or_create(pk=1, defaults={"staff_reading": value})

    return set_reading
