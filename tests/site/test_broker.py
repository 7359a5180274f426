"""The embedded broker: kombu's filesystem transport, with messages that appear whole."""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from kombu import Connection

from chatsite import broker


@pytest.fixture
def folders(tmp_path) -> dict[str, str]:
    names = ("queue", "processed", "control", "drafts")
    paths = {name: tmp_path / name for name in names}
    for path in paths.values():
        path.mkdir()
    return {
        "data_folder_in": str(paths["queue"]),
        "data_folder_out": str(paths["queue"]),
        "processed_folder": str(paths["processed"]),
        "control_folder": str(paths["control"]),
        "draft_folder": str(paths["drafts"]),
    }


def test_a_message_enters_the_queue_folder_only_once_it_is_whole(folders, monkeypatch):
    seen_before_rename = []
    rename = os.replace

    def watching_replace(source, target):
        # At this moment a worker listing the queue folder must find nothing half-made.
        seen_before_rename.append((os.listdir(folders["data_folder_in"]), os.path.getsize(source)))
        rename(source, target)

    monkeypatch.setattr(broker.os, "replace", watching_replace)
    with Connection("filesystem://", transport=broker.Transport, transport_options=folders) as conn:
        queue = conn.SimpleQueue("chat")
        queue.put({"completion": 7, "text": "你好"})
        message = queue.get(timeout=2)
        assert message.payload == {"completion": 7, "text": "你好"}
        message.ack()
        queue.close()
    [(listing, size)] = seen_before_rename
    assert listing == []
    assert size > 0
    assert os.listdir(folders["draft_folder"]) == []


def test_the_embedded_default_sends_tasks_through_it():
    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        assert not hasattr(settings, "CELERY_BROKER_TRANSPORT")  # Redis: kombu's own
        return
    from chatsite.celery import app

    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, broker.Transport)
        assert os.path.isdir(connection.transport_options["draft_folder"])
