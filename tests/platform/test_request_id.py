import io
import json
import logging
import re

import pytest

from config.observability import JsonFormatter

GENERATED = re.compile(r"^[0-9a-f]{32}$")


def test_it_echoes_a_valid_request_id(client):
    response = client.get("/healthz", headers={"X-Request-ID": "edge-7f3a.42:retry-1"})

    assert response["X-Request-ID"] == "edge-7f3a.42:retry-1"


def test_it_generates_a_request_id_when_none_is_sent(client):
    first = client.get("/healthz")["X-Request-ID"]
    second = client.get("/healthz")["X-Request-ID"]

    assert GENERATED.match(first)
    assert GENERATED.match(second)
    assert first != second


@pytest.mark.parametrize(
    "hostile",
    ["abc\ninjected: header", "abc\r\nX-Evil: 1", "a" * 129, 'quote"and space', "", "ümlaut"],
    ids=["newline", "crlf", "overlong", "quote-and-space", "empty", "non-ascii"],
)
def test_it_replaces_a_hostile_request_id_with_a_generated_one(client, hostile):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=hostile)

    assert GENERATED.match(response["X-Request-ID"])


def test_access_log_lines_are_json_carrying_the_request_id(client):
    # The handler configured by settings.LOGGING, with its formatter and filter; only its stream is swapped.
    handler = next(h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter))
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        client.get("/healthz", headers={"X-Request-ID": "trace-log-check-1"})
    finally:
        handler.setStream(previous)

    lines = [line for line in buffer.getvalue().splitlines() if "trace-log-check-1" in line]
    assert len(lines) == 1, buffer.getvalue()
    record = json.loads(lines[0])
    assert record["request_id"] == "trace-log-check-1"
    assert record["logger"] == "shipshape.access"
    assert record["path"] == "/healthz"
    assert record["status"] == 200
    assert record["level"] == "info"
