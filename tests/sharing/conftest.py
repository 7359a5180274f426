"""Fixtures of the share links' tests."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User


@pytest.fixture
def bob_client(client, bob: User):
    client.force_login(bob)
    return client
