"""The gateway is a faithful MCP server in front of its upstreams: resources, prompts and completion beside
the tools, and what an upstream sends back while a call runs (real processes: the tool servers, the MCP
conformance fixture server as one more upstream `fixture`, and the gateway).

* A caller holding `resources:fixture` and `prompts:fixture` lists, reads and completes exactly as it would
  against the fixture server itself: URIs pass through, templates resolve, prompts answer under their own
  names (the fixture is the gateway's unprefixed upstream) and under `fixture.<name>`; every read is
  audited (the target as a digest).
* Without the scope a listing shows nothing of that upstream, and a read is refused 403
  `insufficient_scope` naming the scope, audited, with no request reaching the upstream; with the scope
  but without the policy naming the upstream for the client, the same with 403 `policy_denied`.
* A URI no upstream offers is JSON-RPC -32602 with the URI in its data (SEP-2164), audited.
* A tool of the unprefixed upstream is called by its own name and authorized and audited under its full
  name.
* Progress and log messages the upstream sends during a call reach the caller that asked for them (a
  progress token; a log level, by `logging/setLevel` in a session or per request), at its level only.
* Elicitation and sampling: a handshake-session caller is asked by the gateway on the call's stream and
  the call completes with its answer; a 2026-07-28 caller gets the `input_required` result and answers
  by retrying, each retry authorized and audited like any call. A caller that declared no such
  capability is never asked: the call ends `input_unavailable`, audited.
* A session is served only to the identity that opened it.
* A session subscribes to a resource (authorized like a read, audited) and gets
  `notifications/resources/updated` when the upstream reports a change, until it unsubscribes; without a
  session, or for a resource the upstream does not watch, the subscription is refused.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from accord.mesh import MeshRunner
from accord.testing.ports import free_port
from accord.testing.readiness import wait_until_ready
from accord.topology import repo_root
from tests.gateway_mesh import (
    MCP_HEADERS,
    ONLY,
    GatewayMesh,
    assert_rejected,
    eventually,
    gateway_mesh,
    new_trace,
)

OFFSET = 22700  # ports 31400-31518: below the ephemeral range
UPSTREAM = "fixture"
READER = "fixture-reader"
UNLISTED = "fixture-unlisted"
READ_SCOPES = [f"resources:{UPSTREAM}", f"prompts:{UPSTREAM}", f"tool:{UPSTREAM}.test_simple_text"]
ASKER = "fixture-asker"
BACK_CHANNEL_TOOLS = [
    "test_tool_with_progress",
    "test_tool_with_logging",
    "test_elicitation",
    "test_sampling",
    "update_watched_resource",
]
ASKER_SCOPES = [f"tool:{UPSTREAM}.{tool}" for tool in BACK_CHANNEL_TOOLS] + [f"resources:{UPSTREAM}"]
WATCHED = "test://watched-resource"
SESSIONS_PER_CLIENT = 3
FIXTURE = repo_root() / "conformance" / "fixture_server.py"


@dataclass
class World:
    mesh: GatewayMesh
    fixture_url: str
    fixture_secret: str

    def token(self, scopes: list[str], client_id: str = READER, lifetime_s: int = 120) -> str:
        return self.mesh.mint(scopes=scopes, client_id=client_id, subject=client_id, lifetime_s=lifetime_s)

    async def reads_at_fixture(self, method: str) -> int:
        """Requests of one MCP method the fixture server received (its own record of their headers)."""
        response = await self.mesh.http.get(
            self.fixture_url + "/debug/received-headers",
            headers={"Authorization": f"Bearer {self.fixture_secret}"},
        )
        assert response.status_code == 200, response.text
        requests = [{k.lower(): v for k, v in r["headers"]} for r in response.json()["requests"]]
        return sum(1 for headers in requests if headers.get("mcp-method") == method)


@pytest.fixture(scope="module")
def fixture_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    state = tmp_path_factory.mktemp("fixture-server")
    port, secret = free_port(), secrets.token_urlsafe(32)
    env = {**os.environ, "ACCORD_HOST": "127.0.0.1", "ACCORD_PORT": str(port), "ACCORD_STATE_DIR": str(state)}
    env |= {"ACCORD_TOOLS_GATEWAY_SECRET": secret, "ACCORD_TOOLS_RECORD_HEADERS": "1"}
    with (state / "fixture.log").open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - this repo's own fixture server
            [sys.executable, str(FIXTURE)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process, 60, state / "fixture.log")
        yield url, secret
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
async def world(
    tmp_path_factory: pytest.TempPathFactory, fixture_server: tuple[str, str]
) -> AsyncIterator[World]:
    state = tmp_path_factory.mktemp("gw-resources")
    fixture_url, fixture_secret = fixture_server
    # The mesh's own upstreams, plus the fixture (resolved as the gateway's environment would be).
    probe = MeshRunner(state, port_offset=OFFSET, only=ONLY)
    resolved = probe.topology.resolve_env(
        probe.topology.by_name("gateway"), probe.host, OFFSET, probe._secrets()
    )
    upstreams = {**json.loads(resolved["ACCORD_GATEWAY_UPSTREAMS"]), UPSTREAM: fixture_url + "/mcp"}
    upstream_secrets = {**json.loads(resolved["ACCORD_GATEWAY_UPSTREAM_SECRETS"]), UPSTREAM: fixture_secret}
    gateway_env = {
        "ACCORD_GATEWAY_MAX_SESSIONS_PER_CLIENT": str(SESSIONS_PER_CLIENT),
        "ACCORD_GATEWAY_UPSTREAMS": json.dumps(upstreams),
        "ACCORD_GATEWAY_UPSTREAM_SECRETS": json.dumps(upstream_secrets),
        "ACCORD_GATEWAY_UNPREFIXED_UPSTREAM": UPSTREAM,
    }
    reader = {
        "tools": [{"tool": f"{UPSTREAM}.test_simple_text"}],
        "resources": [UPSTREAM],
        "prompts": [UPSTREAM],
    }
    # Holds the scopes in its token, but its policy names no upstream for resources or prompts.
    unlisted = {"tools": [{"tool": f"{UPSTREAM}.test_simple_text"}]}
    asker = {
        "tools": [{"tool": f"{UPSTREAM}.{tool}"} for tool in BACK_CHANNEL_TOOLS],
        "resources": [UPSTREAM],
    }
    policy = {"version": 1, "clients": {READER: reader, UNLISTED: unlisted, ASKER: asker}}
    async with gateway_mesh(state, OFFSET, policy=policy, extra_env={"gateway": gateway_env}) as mesh:
        yield World(mesh, fixture_url, fixture_secret)


def result_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "error" not in body, body
    result: dict[str, Any] = body["result"]
    return result


async def test_a_caller_with_the_scopes_lists_reads_and_completes_as_against_the_server_itself(
    world: World,
) -> None:
    token = world.token(READ_SCOPES)
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http, Client(streamable_http_client(world.mesh.mcp_url, http_client=http)) as client:
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        text = (await client.read_resource("test://static-text")).contents[0]
        binary = (await client.read_resource("test://static-binary")).contents[0]
        templated = (await client.read_resource("test://template/123/data")).contents[0]
        prompts = sorted(p.name for p in (await client.list_prompts()).prompts)
        simple = await client.get_prompt("test_simple_prompt")
        with_args = await client.get_prompt("fixture.test_prompt_with_arguments", {"arg1": "a", "arg2": "b"})
        tools = sorted(t.name for t in (await client.list_tools()).tools)

    assert await world.reads_at_fixture("resources/read") >= 3  # the upstream's own record of the reads
    assert {"test://static-text", "test://static-binary", "test://watched-resource"} <= resources
    assert templates == ["test://template/{id}/data"]
    assert getattr(text, "text", None) == "This is the content of the static text resource."
    assert base64.b64decode(getattr(binary, "blob", "")).startswith(b"\x89PNG")
    assert "Data for ID: 123" in getattr(templated, "text", "")
    assert "test_simple_prompt" in prompts
    assert "test_prompt_with_arguments" in prompts
    assert getattr(simple.messages[0].content, "text", None) == "This is a simple prompt for testing."
    assert "arg1='a'" in getattr(with_args.messages[0].content, "text", "")
    # Tools: only the one its scope and policy allow, under the fixture's own name.
    assert tools == ["test_simple_text"]

    completed = result_of(
        await world.mesh.rpc(
            token,
            "completion/complete",
            {
                "ref": {"type": "ref/prompt", "name": "test_prompt_with_arguments"},
                "argument": {"name": "arg1", "value": "par"},
            },
        )
    )
    assert completed["completion"]["values"] == ["paris", "park", "party"]

    reads = [
        r for r in await world.mesh.audit.records() if r["actor"] == READER and r["outcome"] == "allowed"
    ]
    digest = hashlib.sha256(b"test://template/123/data").hexdigest()
    assert any(
        r["action"] == "resources/read"
        and r["details"] == {"upstream": UPSTREAM, "target_sha256": digest, "subject": READER}
        for r in reads
    )
    assert {r["action"] for r in reads} >= {"resources/read", "prompts/get", "completion/complete"}
    assert not any("test://template/123/data" in str(r) for r in await world.mesh.audit.records())


async def test_without_the_scope_a_listing_shows_nothing_and_a_read_is_refused_before_the_upstream(
    world: World,
) -> None:
    token = world.token([f"tool:{UPSTREAM}.test_simple_text"], client_id="tools-only")
    trace_id, traceparent = new_trace()
    before = await world.reads_at_fixture("resources/read")

    listed = result_of(await world.mesh.rpc(token, "resources/list", {}))
    prompts = result_of(await world.mesh.rpc(token, "prompts/list", {}))
    refused = await world.mesh.rpc(token, "resources/read", {"uri": "test://static-text"}, traceparent)
    prompt = await world.mesh.rpc(token, "prompts/get", {"name": "test_simple_prompt"})

    assert listed["resources"] == [] and prompts["prompts"] == []  # noqa: PT018
    assert_rejected(refused, 403, "insufficient_scope", "insufficient_scope")
    assert 'scope="resources:fixture"' in refused.headers["www-authenticate"]
    assert_rejected(prompt, 403, "insufficient_scope", "insufficient_scope")
    assert await world.reads_at_fixture("resources/read") == before, "no read reached the upstream"
    [record] = await world.mesh.records(trace_id)
    assert (record["action"], record["outcome"], record["reason"], record["actor"]) == (
        "resources/read",
        "denied",
        "insufficient_scope",
        "tools-only",
    )


async def test_a_uri_no_upstream_offers_is_invalid_params_naming_it_and_audited(world: World) -> None:
    trace_id, traceparent = new_trace()
    uri = "test://nonexistent-resource"
    response = await world.mesh.rpc(world.token(READ_SCOPES), "resources/read", {"uri": uri}, traceparent)

    assert response.status_code == 200
    error = response.json()["error"]
    assert (error["code"], error["data"]) == (-32602, {"reason": "unknown_resource", "uri": uri})
    [record] = await world.mesh.records(trace_id)
    assert (record["action"], record["outcome"], record["reason"]) == (
        "resources/read",
        "rejected",
        "unknown_resource",
    )


async def test_a_tool_of_the_unprefixed_upstream_is_called_by_its_name_and_audited_by_its_full_name(
    world: World,
) -> None:
    trace_id, traceparent = new_trace()
    response = await world.mesh.call(world.token(READ_SCOPES), "test_simple_text", {}, traceparent)

    assert result_of(response)["content"][0]["text"] == "This is a simple text response for testing."
    record = await world.mesh.record_for(trace_id)
    assert (record["details"]["tool"], record["outcome"]) == ("fixture.test_simple_text", "ok")
    # And a bare name the caller has no scope for is refused under its full name.
    refused = await world.mesh.call(world.token(READ_SCOPES), "test_image_content", {})
    assert_rejected(refused, 403, "insufficient_scope", "insufficient_scope")
    assert 'scope="tool:fixture.test_image_content"' in refused.headers["www-authenticate"]


async def test_the_protected_resource_metadata_names_the_resource_and_prompt_scopes(world: World) -> None:
    response = await world.mesh.http.get(world.mesh.url + "/.well-known/oauth-protected-resource/mcp")
    scopes = response.json()["scopes_supported"]
    assert {"resources:fixture", "prompts:fixture", "tool:fixture.test_simple_text"} <= set(scopes)
    assert "tool:sanctions.search" in scopes


async def test_the_scope_without_the_policy_naming_the_upstream_shows_nothing_and_reads_nothing(
    world: World,
) -> None:
    token = world.token(READ_SCOPES, client_id=UNLISTED)
    trace_id, traceparent = new_trace()
    before = await world.reads_at_fixture("prompts/get")

    listed = result_of(await world.mesh.rpc(token, "resources/list", {}))
    refused = await world.mesh.rpc(token, "prompts/get", {"name": "test_simple_prompt"}, traceparent)

    assert listed["resources"] == []
    assert_rejected(refused, 403, "policy_denied")
    assert await world.reads_at_fixture("prompts/get") == before
    [record] = await world.mesh.records(trace_id)
    assert (record["action"], record["outcome"], record["reason"]) == (
        "prompts/get",
        "denied",
        "policy_denied",
    )


# --- what an upstream sends back while a call runs ----------------------------------------------------


@dataclass
class Asked:
    """What the gateway asked a caller, and what the caller received while its calls ran."""

    elicitations: list[types.ElicitRequestParams] = field(default_factory=list)
    samplings: list[types.CreateMessageRequestParams] = field(default_factory=list)
    logs: list[types.LoggingMessageNotificationParams] = field(default_factory=list)
    progress: list[tuple[float, float | None]] = field(default_factory=list)
    updates: list[str] = field(default_factory=list)

    async def elicit(self, _ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.elicitations.append(params)
        return types.ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.org"})

    async def sample(self, _ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.samplings.append(params)
        text = types.TextContent(type="text", text="a sampled answer")
        return types.CreateMessageResult(
            role="assistant", content=text, model="stand-in", stop_reason="endTurn"
        )

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params)

    async def message(self, message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.updates.append(message.params.uri)

    async def on_progress(self, progress: float, total: float | None, _message: str | None) -> None:
        self.progress.append((progress, total))


@asynccontextmanager
async def asker(
    world: World, mode: str, asked: Asked, http: httpx.AsyncClient | None = None, **options: Any
) -> AsyncIterator[Client]:
    """A caller of the back-channel tools, answering as `asked` records (`options` go to the client), over
    `http` (by default a client of its own with a fresh token)."""
    token = world.token(ASKER_SCOPES, client_id=ASKER)
    http = http or create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    callbacks: dict[str, Any] = {
        "elicitation_callback": asked.elicit,
        "sampling_callback": asked.sample,
        "logging_callback": asked.log,
        "message_handler": asked.message,
    }
    transport = streamable_http_client(world.mesh.mcp_url, http_client=http)
    async with http, Client(transport, mode=mode, **(callbacks | options)) as client:  # type: ignore[arg-type]
        yield client


def text_of(result: types.CallToolResult) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def asker_records(world: World) -> list[dict[str, Any]]:
    return [
        r for r in await world.mesh.audit.records() if r["actor"] == ASKER and r["action"] == "tools/call"
    ]


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_progress_reaches_the_caller_that_asked_for_it(world: World, mode: str) -> None:
    asked = Asked()
    async with asker(world, mode, asked) as client:
        result = await client.call_tool("test_tool_with_progress", {}, progress_callback=asked.on_progress)
        silent = await client.call_tool("test_tool_with_progress", {})
    assert "executed successfully" in text_of(result) and not result.is_error  # noqa: PT018
    assert asked.progress == [(0.0, 100.0), (50.0, 100.0), (100.0, 100.0)]  # none for the call without
    assert not silent.is_error


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # logging/setLevel
async def test_a_session_gets_the_upstreams_log_messages_at_the_level_it_set(world: World) -> None:
    asked = Asked()
    async with asker(world, "legacy", asked) as client:
        await client.call_tool("test_tool_with_logging", {})
        unasked = len(asked.logs)
        await client.set_logging_level("error")
        await client.call_tool("test_tool_with_logging", {})
        above_info = len(asked.logs)
        await client.set_logging_level("debug")
        await client.call_tool("test_tool_with_logging", {})
    assert (unasked, above_info) == (0, 0)  # no level set yet; then only errors and above
    assert [log.data for log in asked.logs] == [
        "Tool execution started",
        "Tool processing data",
        "Tool execution completed",
    ]
    assert {log.level for log in asked.logs} == {"info"}


async def test_a_modern_caller_gets_log_messages_by_asking_per_request(world: World) -> None:
    asked = Asked()
    async with asker(world, "2026-07-28", asked, log_level="info") as client:
        await client.call_tool("test_tool_with_logging", {})
    assert len(asked.logs) == 3


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_elicitation_and_sampling_reach_the_caller_and_its_answers_the_upstream(
    world: World, mode: str
) -> None:
    asked = Asked()
    before = len(await asker_records(world))
    async with asker(world, mode, asked) as client:
        elicited = await client.call_tool("test_elicitation", {"message": "Who are you?"})
        sampled = await client.call_tool("test_sampling", {"prompt": "Say something"})

    [question] = asked.elicitations
    assert isinstance(question, types.ElicitRequestFormParams)
    assert question.message == "Who are you?"
    assert question.requested_schema["required"] == ["username", "email"]
    assert text_of(elicited) == (
        'User response: action=accept, content={"email": "ada@example.org", "username": "ada"}'
    )
    [sampling] = asked.samplings
    assert getattr(sampling.messages[0].content, "text", None) == "Say something"
    assert text_of(sampled) == "LLM response: a sampled answer"

    # Asked in the session (the gateway retried upstream) or by the caller's own retry: one audit record
    # per upstream call either way.
    records = (await asker_records(world))[before:]
    assert [(r["details"]["tool"], r["outcome"]) for r in records] == [
        ("fixture.test_elicitation", "input_required"),
        ("fixture.test_elicitation", "ok"),
        ("fixture.test_sampling", "input_required"),
        ("fixture.test_sampling", "ok"),
    ]
    assert getattr(sampling, "include_context", None) in (None, "none")


async def test_a_caller_without_the_capability_is_never_asked_and_the_call_ends_input_unavailable(
    world: World,
) -> None:
    token = world.token(ASKER_SCOPES, client_id=ASKER)
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    before = len(await asker_records(world))
    transport = streamable_http_client(world.mesh.mcp_url, http_client=http)
    async with http, Client(transport, mode="legacy") as client:  # declares no elicitation capability
        result = await client.call_tool("test_elicitation", {"message": "Who are you?"})
    assert result.is_error
    assert result.meta is not None
    assert result.meta["accord/error"]["reason"] == "input_unavailable"
    [record] = (await asker_records(world))[before:]  # the upstream asked; the gateway could not ask on
    assert (record["outcome"], record["reason"]) == ("failed", "input_unavailable")


async def test_a_session_is_served_only_to_the_identity_that_opened_it(world: World) -> None:
    owner = {**MCP_HEADERS, "authorization": f"Bearer {world.token(ASKER_SCOPES, client_id=ASKER)}"}
    hello = {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    }
    opened = await world.mesh.http.post(
        world.mesh.mcp_url,
        json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello},
        headers=owner,
    )
    session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    await world.mesh.http.post(world.mesh.mcp_url, json=initialized, headers=owner | session)
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    other = {**MCP_HEADERS, "authorization": f"Bearer {world.token(READ_SCOPES)}"}  # valid, another client's

    stolen = await world.mesh.http.post(world.mesh.mcp_url, json=listing, headers=other | session)
    own = await world.mesh.http.post(world.mesh.mcp_url, json=listing, headers=owner | session)

    assert opened.status_code == 200
    assert stolen.status_code == 404  # as if the session did not exist
    assert own.status_code == 200
    assert all(f'"{tool}"' in own.text for tool in BACK_CHANNEL_TOOLS)


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # resources/subscribe
async def test_a_session_hears_of_a_subscribed_resource_changing_until_it_unsubscribes(world: World) -> None:
    asked = Asked()
    async with asker(world, "legacy", asked) as client:
        await client.subscribe_resource(WATCHED)
        await client.call_tool("update_watched_resource", {})

        async def heard() -> bool:
            return asked.updates == [WATCHED]

        await eventually(heard, timeout=10)
        await client.unsubscribe_resource(WATCHED)
        await client.call_tool("update_watched_resource", {})
        await asyncio.sleep(1)
    assert asked.updates == [WATCHED]  # nothing after unsubscribing
    subscribed = [
        r
        for r in await world.mesh.audit.records()
        if r["actor"] == ASKER and r["action"] in ("resources/subscribe", "resources/unsubscribe")
    ]
    assert [(r["action"], r["outcome"]) for r in subscribed][-2:] == [
        ("resources/subscribe", "allowed"),
        ("resources/unsubscribe", "allowed"),
    ]


SHORT_TOKEN_S = 3


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # resources/subscribe
@pytest.mark.parametrize("renewed", [False, True])
async def test_a_subscription_is_served_only_while_the_sessions_token_holds(
    world: World, renewed: bool
) -> None:
    """Updates reach a session under the token of its latest request: once that token has expired, the
    next update ends the watch (audited) instead of reaching the session; a session that went on with a
    fresh token keeps hearing."""
    asked, other = Asked(), Asked()
    before = len(await ended_watches(world))
    token = world.token(ASKER_SCOPES, client_id=ASKER, lifetime_s=SHORT_TOKEN_S)
    expires = time.time() + SHORT_TOKEN_S
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with asker(world, "legacy", asked, http=http) as client, asker(world, "legacy", other) as updater:
        await client.subscribe_resource(WATCHED)
        await updater.call_tool("update_watched_resource", {})

        async def heard(count: int) -> bool:
            return asked.updates == [WATCHED] * count

        await eventually(lambda: heard(1), timeout=10)
        if renewed:
            http.headers["Authorization"] = f"Bearer {world.token(ASKER_SCOPES, client_id=ASKER)}"
            await client.send_ping()  # the session's latest request, under the fresh token
        await asyncio.sleep(expires - time.time() + 0.5)
        await updater.call_tool("update_watched_resource", {})
        if renewed:
            await eventually(lambda: heard(2), timeout=10)
        else:
            await asyncio.sleep(1.5)
            assert asked.updates == [WATCHED]  # the update after expiry did not reach the session
    ended = (await ended_watches(world))[before:]
    assert ended == ([] if renewed else [("denied", "invalid_token", "expired")])


async def ended_watches(world: World) -> list[tuple[str, str, str | None]]:
    return [
        (r["outcome"], r["reason"], r["details"].get("cause"))
        for r in await world.mesh.audit.records()
        if r["actor"] == ASKER and r["action"] == "notifications/resources/updated"
    ]


async def test_a_subscription_without_a_session_or_that_nothing_watches_is_refused(world: World) -> None:
    token = world.token(ASKER_SCOPES, client_id=ASKER)
    no_session = await world.mesh.rpc(token, "resources/subscribe", {"uri": WATCHED})
    unknown = await world.mesh.rpc(token, "resources/subscribe", {"uri": "test://nothing-here"})
    without_scope = await world.mesh.rpc(
        world.token(ASKER_SCOPES[:1]), "resources/subscribe", {"uri": WATCHED}
    )

    assert no_session.json()["error"]["data"]["reason"] == "invalid_input"
    assert unknown.json()["error"]["code"] == -32602
    assert_rejected(without_scope, 403, "insufficient_scope", "insufficient_scope")


MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
}


async def modern_call(world: World, token: str, arguments: dict[str, Any], **params: Any) -> dict[str, Any]:
    """A raw 2026-07-28 `tools/call` of the fixture's elicitation tool; the JSON-RPC response."""
    headers = {
        **MCP_HEADERS,
        "authorization": f"Bearer {token}",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "test_elicitation",
    }
    body = {
        "jsonrpc": "2.0",
        "id": 9,
        "method": "tools/call",
        "params": {"name": "test_elicitation", "arguments": arguments, "_meta": MODERN_META, **params},
    }
    response = await world.mesh.http.post(world.mesh.mcp_url, json=body, headers=headers)
    answer: dict[str, Any] = response.json()
    return answer


async def test_a_rounds_state_is_sealed_to_its_call_and_caller(world: World) -> None:
    token = world.token(ASKER_SCOPES, client_id=ASKER)
    arguments = {"message": "Who are you?"}
    asked = (await modern_call(world, token, arguments))["result"]
    state = asked["requestState"]
    answer = {"elicit": {"action": "accept", "content": {"username": "ada", "email": "a@example.org"}}}
    impostor = world.mesh.mint(scopes=ASKER_SCOPES, client_id=ASKER, subject="someone-else")
    calls_before = await world.reads_at_fixture("tools/call")
    before = len(await asker_records(world))

    refusals = [
        await modern_call(world, impostor, arguments, requestState=state, inputResponses=answer),
        await modern_call(world, token, {"message": "Other"}, requestState=state, inputResponses=answer),
        await modern_call(world, token, arguments, requestState=state[:-2] + "AA", inputResponses=answer),
        await modern_call(world, token, arguments, inputResponses=answer),  # answers to nothing asked
        await modern_call(
            world, token, arguments, requestState=state, inputResponses={"other": answer["elicit"]}
        ),
    ]
    genuine = await modern_call(world, token, arguments, requestState=state, inputResponses=answer)

    assert asked["resultType"] == "input_required"
    assert state.startswith("accord-input-1.")
    for refused in refusals:
        assert refused["error"]["code"] == -32602, refused
        assert refused["error"]["data"]["reason"] == "invalid_input"
    assert await world.reads_at_fixture("tools/call") == calls_before + 1  # only the genuine retry
    assert "action=accept" in genuine["result"]["content"][0]["text"]
    records = (await asker_records(world))[before:]
    assert [(r["outcome"], r["reason"]) for r in records] == [("rejected", "invalid_input")] * 5 + [
        ("ok", None)
    ]


async def test_a_client_holds_a_bounded_number_of_sessions(world: World) -> None:
    token = world.token(ASKER_SCOPES[:1], client_id="session-hoarder")
    headers = {**MCP_HEADERS, "authorization": f"Bearer {token}"}
    hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "h", "version": "1"}}
    opening = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}
    statuses = [
        (await world.mesh.http.post(world.mesh.mcp_url, json=opening, headers=headers)).status_code
        for _ in range(SESSIONS_PER_CLIENT + 1)
    ]
    assert statuses == [200] * SESSIONS_PER_CLIENT + [429]
    refused = [r for r in await world.mesh.audit.records() if r["actor"] == "session-hoarder"]
    assert [(r["outcome"], r["reason"]) for r in refused][-1:] == [("denied", "rate_limited")]


async def test_a_burst_of_openings_cannot_pass_the_session_cap_together(world: World) -> None:
    """Openings sent at once are each checked against the sessions the others opened: the cap holds
    however many arrive together."""
    token = world.token(ASKER_SCOPES[:1], client_id="session-burst")
    headers = {**MCP_HEADERS, "authorization": f"Bearer {token}"}
    hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "b", "version": "1"}}
    opening = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}
    responses = await asyncio.gather(
        *(
            world.mesh.http.post(world.mesh.mcp_url, json=opening, headers=headers)
            for _ in range(3 * SESSIONS_PER_CLIENT)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * SESSIONS_PER_CLIENT + [429] * (2 * SESSIONS_PER_CLIENT), statuses
    # Refused by the cap (which asks a client to come back in a minute), not by the rate limiter.
    assert {r.headers.get("retry-after") for r in responses if r.status_code == 429} == {"60"}
    opened = {r.headers.get("mcp-session-id") for r in responses if r.status_code == 200}
    assert len(opened) == SESSIONS_PER_CLIENT
    refused = [r for r in await world.mesh.audit.records() if r["actor"] == "session-burst"]
    assert [(r["outcome"], r["reason"]) for r in refused] == [("denied", "rate_limited")] * (
        2 * SESSIONS_PER_CLIENT
    )
