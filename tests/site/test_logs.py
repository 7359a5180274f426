"""Request ids on responses and in log lines; the JSON log format."""

from __future__ import annotations

import json
import logging

import pytest

from chatsite.logs import JsonFormatter, RequestIdFilter, request_id_var


def test_every_response_carries_a_fresh_request_id(client, db):
    first = client.get("/accounts/login/")["X-Request-ID"]
    second = client.get("/accounts/login/")["X-Request-ID"]
    assert len(first) == 32 and first != second


def test_a_request_id_from_the_proxy_is_kept(client, db):
    response = client.get("/accounts/login/", HTTP_X_REQUEST_ID="edge-7f3a.1")
    assert response["X-Request-ID"] == "edge-7f3a.1"


@pytest.mark.parametrize("offered", ["two words", "x" * 101, "<script>", "a\nb"])
def test_a_malformed_request_id_is_replaced(client, db, offered):
    response = client.get("/accounts/login/", HTTP_X_REQUEST_ID=offered)
    assert response["X-Request-ID"] != offered
    assert len(response["X-Request-ID"]) == 32


def test_the_access_line_is_logged_under_the_request_id(client, db, caplog):
    with caplog.at_level(logging.INFO, logger="chatsite.request"):
        client.get("/accounts/login/", HTTP_X_REQUEST_ID="abc-123")
    [record] = [r for r in caplog.records if r.name == "chatsite.request"]
    assert record.getMessage() == "GET /accounts/login/ 200"
    assert (record.method, record.path, record.status) == ("GET", "/accounts/login/", 200)
    assert record.request_id == "abc-123"
    assert record.duration_ms >= 0
    # The id was set while the request was served, and is gone after it.
    assert request_id_var.get() == "-"


def test_json_lines_have_the_request_id_and_extras():
    record = logging.makeLogRecord(
        {"name": "x", "levelname": "INFO", "msg": "Completion %s: %s", "args": (7, "succeeded")}
    )
    record.outcome = "succeeded"
    token = request_id_var.set("rid-9")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "Completion 7: succeeded"
    assert line["request_id"] == "rid-9"
    assert line["outcome"] == "succeeded"
    assert line["level"] == "INFO" and line["logger"] == "x"
    assert line["time"].endswith("Z")


def test_json_lines_keep_chinese_readable():
    record = logging.makeLogRecord({"msg": "你好", "levelname": "INFO"})
    assert '"message": "你好"' in JsonFormatter().format(record)
