"""The all-chats ZIP served by uvicorn, as in production: it arrives in pieces and opens."""

from __future__ import annotations

import io
import zipfile

import pytest
import requests
from django.conf import settings
from django.test import Client

from tests.factories import make_conversation
from tests.support import WebProcess, subprocess_env


@pytest.fixture
def web(transactional_db, simulator, tmp_path):
    process = WebProcess(subprocess_env(simulator), tmp_path / "web.log")
    process.start()
    yield process
    process.stop()


def test_uvicorn_streams_the_zip_of_every_conversation(web, alice, bob):
    made = [make_conversation(alice, (f"Question {i}", "Answer " * 2000)) for i in range(60)]
    make_conversation(bob, ("Bob's", "secret"))
    client = Client()
    client.force_login(alice)
    cookies = {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}
    with requests.get(f"{web.url}/export/chats.zip", cookies=cookies, stream=True, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers.get("Transfer-Encoding") == "chunked"  # no length: streamed
        chunks = list(r.iter_content(chunk_size=None))
    assert len(chunks) > 1
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive:
        names = archive.namelist()
    assert sorted(names) == sorted(
        f"{c.pk}-review-me.{extension}" for c in made for extension in ("json", "md")
    )
