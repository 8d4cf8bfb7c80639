"""What the gateway relays from an upstream's call stream, and how `/mcp` requests are routed.

* Only progress for the call's own token and log messages at or above the caller's level pass; anything
  else on the stream (other tokens, malformed params, unknown levels, other methods) is dropped.
* Events split across chunks are read whole.
* A request goes to the session manager only when it opens or uses a session, or (2026-07-28) asks for
  something streamed; every other request is served on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
import pytest

from gateway.call_relay import MAX_EVENT_CHARS, InputDeclined, UpstreamEvents, level_allows, relayable
from gateway.mcp_endpoint import wants_session


@dataclass
class Recorder:
    progress_token: str | int | None = "tok"
    log_level: types.LoggingLevel | None = "warning"
    capabilities: dict[str, Any] = field(default_factory=dict)
    can_ask: bool = False
    answers_itself: bool = False
    seen: list[tuple[Any, ...]] = field(default_factory=list)

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append(("progress", progress, total, message))

    async def log(self, level: types.LoggingLevel, data: Any, logger_name: str | None) -> None:
        if level_allows(self.log_level, level):
            self.seen.append(("log", level, data))

    async def ask(self, requests: Any, upstream: str) -> dict[str, Any]:
        raise AssertionError("not asked here")


def event(message: dict[str, Any]) -> bytes:
    return f"event: message\ndata: {json.dumps(message)}\n\n".encode()


def progress(token: Any, value: Any, total: Any = 10) -> dict[str, Any]:
    params = {"progressToken": token, "progress": value, "total": total}
    return {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}


def log(level: Any, data: Any = "x") -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": level, "data": data}}


async def test_only_the_calls_own_progress_and_logs_at_its_level_pass() -> None:
    relay = Recorder()
    events = UpstreamEvents(relay)
    stream = b"".join(
        [
            event(progress("tok", 1)),
            event(progress("another-call", 2)),  # not this call's token
            event(progress("tok", True)),  # a boolean is not a number
            event(progress("tok", "3")),
            event(log("error", {"k": 1})),
            event(log("info")),  # below the caller's level
            event(log("loud")),  # no such level
            event({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "x"}}),
            b"data: not json\n\n",
            event({"jsonrpc": "2.0", "id": 1, "result": {"content": []}}),  # the response, read elsewhere
        ]
    )
    for start in range(0, len(stream), 7):  # events split across chunks
        await events.feed(stream[start : start + 7])
    assert relay.seen == [("progress", 1, 10, None), ("log", "error", {"k": 1})]


async def test_a_caller_that_asked_for_no_logs_gets_none() -> None:
    relay = Recorder(log_level=None, progress_token=None)
    events = UpstreamEvents(relay)
    await events.feed(event(log("emergency")) + event(progress(None, 1)))
    assert relay.seen == []


def scope(method: str = "POST", **headers: str) -> dict[str, Any]:
    raw = [(name.encode(), value.encode()) for name, value in headers.items()]
    return {"type": "http", "method": method, "headers": raw}


def call(meta: dict[str, Any] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": "t", "arguments": {}}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}


@pytest.mark.parametrize(
    ("request_scope", "message", "in_session"),
    [
        (scope(), {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}, True),
        (scope(**{"mcp-session-id": "abc"}), call(), True),
        (scope("GET"), None, True),
        (scope("DELETE", **{"mcp-session-id": "abc"}), None, True),
        (scope(), call(), False),  # an older version without a session: served on its own
        (scope(**{"mcp-protocol-version": "2025-11-25"}), call(), False),
        (scope(**{"mcp-protocol-version": "2026-07-28"}), call(), False),
        (scope(**{"mcp-protocol-version": "2026-07-28"}), call({"progressToken": 1}), True),
        (scope(**{"mcp-protocol-version": "2026-07-28"}), call({types.LOG_LEVEL_META_KEY: "info"}), True),
    ],
)
def test_requests_are_served_in_a_session_only_when_they_need_one(
    request_scope: dict[str, Any], message: dict[str, Any] | None, in_session: bool
) -> None:
    assert wants_session(request_scope, message) is in_session


async def test_an_oversized_event_is_skipped_whole_and_a_split_character_survives() -> None:
    relay = Recorder(log_level="debug")
    events = UpstreamEvents(relay)
    huge = event(log("error", "x" * (MAX_EVENT_CHARS + 10)))
    for start in range(0, len(huge), 65_536):
        await events.feed(huge[start : start + 65_536])
    crlf = f"data: {json.dumps(log('error', 'café'), ensure_ascii=False)}\r\n\r\n".encode()
    split = crlf.index("é".encode()) + 1  # inside the two bytes of é
    await events.feed(crlf[:split])
    await events.feed(crlf[split:])
    assert relay.seen == [("log", "error", "café")]


def test_only_form_elicitation_and_toolless_sampling_reach_a_caller_marked_as_the_upstreams() -> None:
    form = types.ElicitRequest(
        params=types.ElicitRequestFormParams(
            message="m", requested_schema={"type": "object", "properties": {}}
        )
    )
    url = types.ElicitRequest(
        params=types.ElicitRequestURLParams(message="m", url="https://evil.example/login", elicitation_id="e")
    )
    message = types.SamplingMessage(role="user", content=types.TextContent(type="text", text="hi"))
    everything = types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(
            messages=[message], max_tokens=5, include_context="allServers"
        )
    )
    tools = types.Tool(name="t", input_schema={"type": "object"})
    with_tools = types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(messages=[message], max_tokens=5, tools=[tools])
    )

    relayed_form = relayable(form, "fixture")
    relayed_sampling = relayable(everything, "fixture")
    with pytest.raises(InputDeclined):
        relayable(url, "fixture")
    with pytest.raises(InputDeclined):
        relayable(with_tools, "fixture")
    assert isinstance(relayed_form, types.ElicitRequest)
    assert relayed_form.params.meta == {"accord/provenance": {"upstream": "fixture", "untrusted": True}}
    assert isinstance(relayed_sampling, types.CreateMessageRequest)
    assert relayed_sampling.params.include_context == "none"


async def test_every_blank_line_ending_ends_an_event_and_a_long_run_of_them_is_cheap() -> None:
    relay = Recorder(log_level="debug")
    events = UpstreamEvents(relay)
    body = json.dumps(log("error", "a"))
    await events.feed(f"data: {body}\n\r\n".encode())
    await events.feed(f"data: {body}\r\r".encode())
    await events.feed(b"\n\n" * 400_000)  # linear: was quadratic
    assert relay.seen == [("log", "error", "a")] * 2
