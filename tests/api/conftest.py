"""The API served as in production: one uvicorn process for the module, on the test
database and the simulator, called with the official `openai` client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from openai import OpenAI

from conversations.api import services as api_services
from tests.support import Simulator, WebProcess, subprocess_env


@pytest.fixture(scope="module")
def api_web(django_db_setup, django_db_blocker, simulator_server, tmp_path_factory):
    with django_db_blocker.unblock():
        env = subprocess_env(
            Simulator(simulator_server.base_url),
            OPENAI_API_KEY="sk-test-key",
            # The limits are the service tests' (test_calls.py); here, budgets and streams.
            MESSAGES_PER_MINUTE="100000",
            MAX_REPLIES_IN_FLIGHT="0",
        )
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    web = WebProcess(env, tmp_path_factory.mktemp("api") / "web.log")
    web.start()
    yield web
    web.stop()


@dataclass
class Api:
    url: str
    simulator: Simulator
    web: WebProcess

    def client(self, key: str, **options) -> OpenAI:
        # No retries of its own: each test sees every answer the server gave.
        return OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, **options)


@pytest.fixture
def api(api_web, simulator, transactional_db) -> Iterator[Api]:
    yield Api(url=api_web.url, simulator=simulator, web=api_web)


@pytest.fixture
def alice_key(alice) -> str:
    return api_services.api_key_create(user=alice, name="notebook")[1]
