"""Structured logs: one JSON object per line, trace and span ids on each, and no secret ever written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from accord.logs import JsonFormatter, RedactionFilter
from accord.redaction import REDACTED, redact_text, redact_value

JWT = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhZ2VudCIsImF1ZCI6Im1jcCJ9.MEUCIQDx4lUwYx2yQ-sig_part"
HEX_SECRET = "9f" * 24
PEM = (
    "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----"
)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("unit"))
    handler.addFilter(RedactionFilter())
    logger = logging.getLogger("test.logs.redaction")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, stream
    logger.handlers.clear()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_line_is_one_json_object_with_trace_and_span_ids_of_the_current_span(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    tracer = TracerProvider().get_tracer("test")
    logger.info("outside any span")
    with tracer.start_as_current_span("work") as span:
        logger.info("inside a span", extra={"step": "sanctions"})
        context = span.get_span_context()

    outside, inside = lines(stream)
    assert outside["trace_id"] is None
    assert outside["span_id"] is None
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert inside["step"] == "sanctions"
    assert inside["service"] == "unit"
    assert inside["level"] == "info"


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("upstream said 401 for Authorization: Bearer %s", JWT),
        ("token request failed: client_id=agent&client_secret=%s&grant_type=x", "hunter2-but-longer-0123"),
        ("loaded key %s", PEM),
        ("exchanging %s", JWT),
        ('config {"client_secret": "%s"}', "abcdEFGHijklMNOPqrst0123"),
        ("ACCORD_TOOLS_GATEWAY_SECRET=%s", "Zk9Q3c1n4lYl2xZyX0WmR7aQ8bTtPpK1uVvDdEeFfGg"),
    ],
)
def test_secrets_in_messages_and_their_arguments_are_redacted(
    captured: tuple[logging.Logger, io.StringIO], message: str, secret: str
) -> None:
    logger, stream = captured
    logger.warning(message, secret)

    output = stream.getvalue()
    for part in secret.splitlines():  # JSON escapes newlines: look for each line of a PEM block
        assert part not in output
    assert "REDACTED" in output


def test_secret_named_fields_lose_their_values_and_ordinary_fields_keep_theirs(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    digest = "a" * 64
    logger.info(
        "call",
        extra={
            "client_secret": "short",
            "access_token": HEX_SECRET,
            "headers": {
                "authorization": f"Bearer {JWT}",
                "accept": "application/json",
                "set-cookie": "sid=1",
            },
            "dbPassword": "pw",
            "secret_file": "/run/secrets/gateway",
            "arguments_sha256": digest,
            "token_endpoint": "http://127.0.0.1:8700/oauth/token",
            "token_type": "Bearer",
        },
    )

    [line] = lines(stream)
    assert line["client_secret"] == REDACTED
    assert line["access_token"] == REDACTED
    assert line["headers"] == {
        "authorization": REDACTED,
        "accept": "application/json",
        "set-cookie": REDACTED,
    }
    assert line["dbPassword"] == REDACTED
    assert line["secret_file"] == "/run/secrets/gateway"
    assert line["arguments_sha256"] == digest
    assert line["token_endpoint"] == "http://127.0.0.1:8700/oauth/token"
    assert line["token_type"] == "Bearer"


def test_a_message_whose_arguments_do_not_fit_is_still_logged_without_them(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.info("two slots %s %s", JWT)

    [line] = lines(stream)
    assert line["msg"] == "two slots %s %s"
    assert JWT not in stream.getvalue()


def test_redaction_leaves_ids_digests_and_urls_alone() -> None:
    text = (
        "run 3f1c2a9e-7d2b-4c55-9a0e-1b2c3d4e5f60 trace 4bf92f3577b34da6a3ce929d0e0e4736 "
        "sha256 " + "b" * 64 + " at http://127.0.0.1:8702/v1/runs?limit=5"
    )
    assert redact_text(text) == text
    assert redact_value("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736") == "4bf92f3577b34da6a3ce929d0e0e4736"
