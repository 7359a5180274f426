"""Shared fixtures: this run's own settings, the people (alice owns, bob is another user,
charlie is staff), a simulator over real HTTP, captured or real task delivery, the app as
in production (uvicorn + worker) and a browser."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.test.signals import setting_changed
from django.utils import translation

from chatsite.celery import app as celery_app
from conversations.chat import tasks
from conversations.chat.models import Conversation
from conversations.chat.services import conversations as chat_services
from conversations.shared import ratelimits
from conversations.upstream import simulator as simulator_module
from tests.support import Clock, Simulator, WebProcess, WorkerProcess, subprocess_env, wait_for


@pytest.fixture(scope="session", autouse=True)
def _this_run_only() -> None:
    """What this test run uses is its own, so parallel runs (and `make run`) on one machine,
    one broker and one Redis never meet: the task queue, the Redis keys, the static files
    (the uvicorn subprocesses inherit their folder through the environment). And users
    are made in most tests: their passwords are hashed cheaply (tests/hashers.py)."""
    run = os.getpid()
    settings.CELERY_TASK_DEFAULT_QUEUE = f"chatsite-test-{run}"
    celery_app.conf.task_default_queue = settings.CELERY_TASK_DEFAULT_QUEUE
    settings.REDIS_KEY_PREFIX = f"chatsite-test-{run}:"
    settings.CACHES["default"]["KEY_PREFIX"] = f"{settings.REDIS_KEY_PREFIX}cache"
    # A cache made before this (on import) would keep the shared prefix, and its keys would
    # outlive the test that made them: make them again with this run's.
    setting_changed.send(sender=None, setting="CACHES", value=settings.CACHES, enter=True)
    settings.PASSWORD_HASHERS = ["tests.hashers.FastPBKDF2PasswordHasher"]
    # No title call after a first reply, so each test sees only the calls it makes; the
    # tests of titles turn them on (tests/chat/test_titles.py).
    settings.MODEL_TITLES = False
    os.environ["MODEL_TITLES"] = "0"
    os.environ["DJANGO_STATIC_ROOT"] = str(settings.VAR_DIR / f"static-test-{run}")
    settings.STATIC_ROOT = Path(os.environ["DJANGO_STATIC_ROOT"])


@pytest.fixture(scope="session", autouse=True)
def _collected_static_files(_this_run_only) -> Iterator[None]:
    import shutil

    from django.core.management import call_command

    call_command("collectstatic", interactive=False, verbosity=0)
    yield
    shutil.rmtree(settings.STATIC_ROOT, ignore_errors=True)


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    """Limits count in the cache: every test starts from zero. Only this run's keys go,
    so parallel runs sharing one Redis database keep theirs."""
    yield
    from django.core.cache import cache

    if settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
        client = cache._cache.get_client(write=True)
        pattern = f"{settings.CACHES['default']['KEY_PREFIX']}:*"
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    else:
        cache.clear()


@pytest.fixture(autouse=True)
def _language_reset() -> Iterator[None]:
    """A request through the test client activates its language in this thread (Django's
    LocaleMiddleware) and leaves it on: the next test starts in the default one."""
    yield
    translation.deactivate()


@pytest.fixture
def alice(db) -> User:
    return User.objects.create_user("alice", password="alice-password-1")


@pytest.fixture
def bob(db) -> User:
    return User.objects.create_user("bob", password="bob-password-1")


@pytest.fixture
def charlie(db) -> User:
    return User.objects.create_user("charlie", password="charlie-password-1", is_staff=True)


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("root", password="root-password-1")


@pytest.fixture
def postgresql(transactional_db) -> None:
    """For tests of row locks between connections, which SQLite (one writer) cannot have:
    skipped there, except in CI when PostgreSQL was asked for and is not what runs."""
    from django.db import connection

    if connection.vendor == "postgresql":
        return
    wanted = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
    if os.environ.get("CI") and wanted:
        pytest.fail(f"CI asked for PostgreSQL but the tests run on {connection.vendor}")
    pytest.skip(
        "needs PostgreSQL for real row locks between connections: run with "
        "DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres"
    )


@pytest.fixture
def alice_client(client: Client, alice: User) -> Client:
    client.force_login(alice)
    return client


@pytest.fixture
def conversation(alice: User) -> Conversation:
    return chat_services.conversation_create(owner=alice, title="Alice's chat")


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """The abuse limits count time from this clock, which the test moves."""
    clock = Clock()
    monkeypatch.setattr(ratelimits, "clock", clock)
    return clock


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[simulator_module.SimulatorServer]:
    server = simulator_module.start_in_thread()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def second_simulator_server() -> Iterator[simulator_module.SimulatorServer]:
    """Another simulator: a second provider (tests of several providers)."""
    server = simulator_module.start_in_thread()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def second_simulator(second_simulator_server) -> Simulator:
    handle = Simulator(second_simulator_server.base_url)
    handle.reset()
    return handle


@pytest.fixture
def simulator(simulator_server, settings) -> Simulator:
    """A fresh simulator state, with the app's settings pointing at it."""
    handle = Simulator(simulator_server.base_url)
    handle.reset()
    settings.OPENAI_BASE_URL = simulator_server.base_url
    settings.OPENAI_API_KEY = "sk-test-key"
    settings.UPSTREAM_SIMULATED = True
    settings.COMPLETION_RETRY_BASE_DELAY = 0.02
    settings.COMPLETION_RETRY_MAX_DELAY = 2.0
    return handle


class Enqueued:
    """Task deliveries captured instead of sent to a broker; `drain` runs them here."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float | None]] = []
        self.titles: list[int] = []  # title calls' tasks (when a test turns titles on)

    @property
    def ids(self) -> list[int]:
        return [completion_id for completion_id, _ in self.calls]

    def drain(self, *, timeout: float = 10.0) -> None:
        """Run every captured delivery in order (retries included), honouring countdowns."""
        deadline = time.monotonic() + timeout
        while self.calls:
            completion_id, countdown = self.calls.pop(0)
            if countdown:
                due = time.monotonic() + countdown
                wait_for(lambda due=due: time.monotonic() >= due, timeout=countdown + 1)
            tasks.run_completion(completion_id)
            if time.monotonic() > deadline:
                raise AssertionError("deliveries did not settle in time")
        while self.titles:
            tasks.title_conversation(self.titles.pop(0))


@pytest.fixture(autouse=True)
def enqueued(request, monkeypatch) -> Enqueued | None:
    """Capture task sends, unless the test runs a real worker process."""
    real = {"worker", "live_stack"} & set(request.fixturenames)
    if real or request.node.get_closest_marker("worker"):
        return None
    captured = Enqueued()

    def send_task(name, args=None, countdown=None, **options):
        if name == tasks.title_conversation.name:
            captured.titles.append(args[0])
            return
        assert name == tasks.run_completion.name
        captured.calls.append((args[0], countdown))

    monkeypatch.setattr(celery_app, "send_task", send_task)
    return captured


@pytest.fixture
def worker(transactional_db, simulator, tmp_path) -> Iterator[WorkerProcess]:
    """A real Celery worker process on the test database, broker and simulator."""
    process = WorkerProcess(subprocess_env(simulator), tmp_path / "worker.log")
    process.start()
    yield process
    process.stop()


@pytest.fixture
def send(django_capture_on_commit_callbacks):
    """message_send with its after-commit work (enqueueing) run, as in production."""

    def send_message(conversation, content: str):
        with django_capture_on_commit_callbacks(execute=True):
            return chat_services.message_send(
                owner=conversation.owner, conversation_id=conversation.pk, content=content
            )

    return send_message


# --- The app as in production (uvicorn + Celery worker + simulator) and a browser ---

CHROMIUM = "/usr/bin/chromium"


@dataclass
class LiveStack:
    url: str
    simulator: Simulator
    worker: WorkerProcess
    web_log: Path


@pytest.fixture
def live_stack_env() -> dict[str, str]:
    """More environment for the live stack's processes: a test changes it by parametrizing
    `live_stack_env` (e.g. REDIS_URL="" for the database channel)."""
    return {}


@pytest.fixture
def live_stack(transactional_db, simulator, tmp_path, live_stack_env) -> Iterator[LiveStack]:
    """uvicorn and a Celery worker as subprocesses on the test database, and the simulator."""
    env = subprocess_env(simulator, **live_stack_env)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # the browser fixtures' setting is not prod's
    web = WebProcess(env, tmp_path / "web.log")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            for started in [pool.submit(worker.start), pool.submit(web.start)]:
                started.result()
        yield LiveStack(url=web.url, simulator=simulator, worker=worker, web_log=web.log_path)
    finally:
        web.stop()
        worker.stop()


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session (the system one; no download)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; browser tests must run in CI")
        pytest.skip(f"{CHROMIUM} is missing: install Chromium to run the browser tests")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM in tests is still sync.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", "--disable-sync",
                ],
            )  # fmt: skip
            yield browser
            browser.close()


class CspViolations(list):
    """Console errors in which the browser says it refused something under our CSP."""

    def listen(self, page) -> None:
        page.on("console", self._on_console)

    def _on_console(self, message) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.append(f"{message.text} at {message.location}")


@pytest.fixture
def csp_violations() -> CspViolations:
    return CspViolations()


@pytest.fixture
def page(browser, csp_violations):
    """A fresh browser context (cookies, storage) and page per test. Every browser test
    also proves its pages work under the Content-Security-Policy: a refusal fails it."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    csp_violations.listen(page)
    yield page
    context.close()
    assert list(csp_violations) == [], "the page broke the Content-Security-Policy"
