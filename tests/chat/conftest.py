"""Fixtures of the chat's tests."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User


@pytest.fixture
def carol(transactional_db) -> User:
    """A user of the browser tests, logged in through the form (the live stack needs rows
    committed, hence the transactional database)."""
    return User.objects.create_user("carol", password="carol-password-1")
