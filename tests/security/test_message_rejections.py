"""Forged, tampered, misaddressed, stale and replayed messages, and malformed or unauthorized calls at the
relay, are refused at the door: with the exact A2A error (or HTTP/gRPC status) and reason code, recorded in
the refusing service's audit trail, and changing nothing (no task created, no tool called).

Real processes on loopback (tool servers, gateway, registry, the three specialists). A "captured" message
is made here with the gateway's own key ring from the mesh's state dir, exactly as the relay signs.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from a2a.client import A2AClientError, Client, ClientCallContext, ClientConfig, ClientFactory
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    SendMessageRequest,
    Task,
    a2a_pb2_grpc,
)
from a2a.utils.constants import TransportProtocol
from a2a.utils.errors import A2AError, TaskNotFoundError
from google.protobuf import json_format

from accord.a2a_errors import refusal_reason
from accord.agent.testing import running_agent
from accord.cards import card_from_dict
from accord.errors import AccordError
from accord.gateway_keys import GatewayKeys
from accord.keys import KeyRing
from accord.message_signing import SIGNED_MESSAGE_EXTENSION, MessageVerifier
from accord.payloads import skill_request
from accord.replay import MemoryReplayGuard
from accord.testing.backing_services import require_redis
from accord.tokens import issue_access_token
from ledger_agent.agent import agent as ledger_agent
from orchestrator.relay_link import ReplyVerifier
from orchestrator.step_grants import StepRef
from tests.relay_mesh import (
    AGENT,
    GRPC,
    PROFILE,
    SKILL,
    RelayMesh,
    eventually,
    policy_changed,
    refused_direct,
    relay_mesh,
    request,
    send_direct,
    signed,
)
from tests.service_metrics import metric

JSONRPC, HTTP_JSON = TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON
TRANSPORTS = [JSONRPC, HTTP_JSON, GRPC]
# Starting a dozen processes on a busy machine can take minutes; the module's first test pays for it.
pytestmark = pytest.mark.timeout(600)
OFFSET = 17000
VERSION = {"A2A-Version": "1.0"}


@pytest.fixture(scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RelayMesh]:
    async with relay_mesh(tmp_path_factory.mktemp("relay-security"), OFFSET) as running:
        yield running


@pytest.fixture
async def unchanged(mesh: RelayMesh) -> AsyncIterator[None]:
    """The test changes nothing: no agent gets a task and no tool is called."""
    tasks, calls = await mesh.all_agent_tasks(), await mesh.tool_calls()
    yield
    assert await mesh.all_agent_tasks() == tasks
    assert await mesh.tool_calls() == calls


async def denied_at_agent(mesh: RelayMesh, cause: str) -> list[dict[str, Any]]:
    return [
        r
        for r in await mesh.records(AGENT, "a2a.message")
        if r["outcome"] == "denied" and r["details"].get("cause") == cause
    ]


# --- straight to an agent: only the relay's signature for it, fresh and unseen, opens the door ---------


def _tampered(mesh: RelayMesh) -> Message:
    message = signed(mesh)
    # One byte: ACC-100007 -> ACC-100008.
    message.parts[0].data.struct_value.fields["account_id"].string_value = "ACC-100008"
    return message


CASES = {
    "unsigned": lambda mesh: request(),
    "bad_digest": _tampered,
    "unknown_key": lambda mesh: signed(mesh, ring=KeyRing.generate()),
    "wrong_audience": lambda mesh: signed(mesh, callee="bureau-agent"),
    "expired": lambda mesh: signed(mesh, now=time.time() - 300),
    "not_yet_valid": lambda mesh: signed(mesh, now=time.time() + 300),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("cause", sorted(CASES))
async def test_a_message_not_signed_by_the_relay_for_this_agent_now_is_refused_and_changes_nothing(
    mesh: RelayMesh, unchanged: None, transport: str, cause: str
) -> None:
    before = len(await denied_at_agent(mesh, cause))
    labels = {"service": AGENT, "reason": "signature_invalid", "cause": cause}
    failures = await metric(mesh.http, mesh.url(AGENT), "accord_signature_failures_total", **labels)
    assert await refused_direct(mesh, CASES[cause](mesh), transport) == ("signature_invalid", cause)
    records = await denied_at_agent(mesh, cause)
    assert len(records) == before + 1
    assert records[-1]["reason"] == "signature_invalid"
    assert records[-1]["details"]["method"] == "SendMessage"
    # Counted on the agent's /metrics as well, by cause.
    after = await metric(mesh.http, mesh.url(AGENT), "accord_signature_failures_total", **labels)
    assert after == failures + 1


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("cause", sorted(CASES))
async def test_a_streamed_message_is_verified_before_anything_streams(
    mesh: RelayMesh, unchanged: None, transport: str, cause: str
) -> None:
    assert await refused_direct(mesh, CASES[cause](mesh), transport, streaming=True) == (
        "signature_invalid",
        cause,
    )
    assert (await denied_at_agent(mesh, cause))[-1]["details"]["method"] == "SendStreamingMessage"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_same_message_delivered_twice_is_refused_the_second_time(
    mesh: RelayMesh, transport: str
) -> None:
    message = signed(mesh)
    [event] = await send_direct(mesh, message, transport)
    assert event.WhichOneof("payload") == "task", "the first delivery is accepted"
    tasks, calls = await mesh.all_agent_tasks(), await mesh.tool_calls()
    assert await refused_direct(mesh, message, transport) == ("signature_invalid", "replayed")
    assert (await mesh.all_agent_tasks(), await mesh.tool_calls()) == (tasks, calls)


async def test_on_the_wire_each_transport_says_invalid_request_with_the_reason(
    mesh: RelayMesh, unchanged: None
) -> None:
    body = json_format.MessageToDict(request())
    rpc = {"jsonrpc": "2.0", "id": 7, "method": "SendMessage", "params": {"message": body}}
    answer = await mesh.http.post(mesh.url(AGENT) + "/a2a/jsonrpc", json=rpc, headers=VERSION)
    assert answer.status_code == 200
    error = answer.json()["error"]
    assert error["code"] == -32600
    assert error["data"][0]["metadata"] == {"reason": "signature_invalid", "cause": "unsigned"}

    answer = await mesh.http.post(
        mesh.url(AGENT) + "/a2a/rest/message:send", json={"message": body}, headers=VERSION
    )
    assert answer.status_code == 400
    detail = answer.json()["error"]["details"][0]
    assert (detail["reason"], detail["metadata"]) == (
        "INVALID_REQUEST",
        {"reason": "signature_invalid", "cause": "unsigned"},
    )

    async with grpc.aio.insecure_channel(mesh.agent_grpc(AGENT)) as channel:
        stub = a2a_pb2_grpc.A2AServiceStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SendMessage(SendMessageRequest(message=request()))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("signature_invalid (unsigned): ")


# --- at the relay: strict JSON first, then who the caller is and what it may delegate -------------------


def message_json(message: Message | None = None) -> str:
    return json.dumps(json_format.MessageToDict(message or request()))


def relay_body(over: str, message_text: str, tenant: str = AGENT, method: str = "SendMessage") -> str:
    """A relay request as raw text, so that tests can send JSON no serializer would produce."""
    if over == "rest":
        return '{"message": ' + message_text + "}"
    return (
        f'{{"jsonrpc": "2.0", "id": 41, "method": "{method}", '
        f'"params": {{"tenant": "{tenant}", "message": {message_text}}}}}'
    )


def relay_url(mesh: RelayMesh, over: str, tenant: str = AGENT) -> str:
    if over == "rest":
        return f"{mesh.gateway_url}/a2a/relay/rest/{tenant}/message:send"
    return mesh.gateway_url + "/a2a/relay/jsonrpc"


SKILL_ENTRY = f'"accord.skill": "{SKILL}"'
# Each defect, written into the message's metadata.
DEFECTS = {
    # Python's json keeps the last duplicate: the skill that gets authorized must not differ from the one
    # another parser would see.
    "duplicate_key": (f'"accord.skill": "sanctions-screening", {SKILL_ENTRY}', 400, "malformed_json"),
    "non_finite_number": (f'"accord.deadline": NaN, {SKILL_ENTRY}', 400, "malformed_json"),
    "too_deep": ('"nested": ' + "[" * 100 + "]" * 100 + f", {SKILL_ENTRY}", 400, "malformed_json"),
    "body_too_large": (f'"padding": "{"x" * 1_100_000}", {SKILL_ENTRY}', 413, "body_too_large"),
    "number_out_of_range": (f'"accord.deadline": 1e400, {SKILL_ENTRY}', 400, "malformed_json"),
    "lone_surrogate": (f'"note": "\\ud800", {SKILL_ENTRY}', 400, "malformed_json"),
}


async def relay_refusals(mesh: RelayMesh, reason: str) -> list[dict[str, Any]]:
    return [r for r in await mesh.records("gateway", "a2a.relay") if r["reason"] == reason]


async def audited_at_gateway(mesh: RelayMesh, reason: str, count: int) -> dict[str, Any]:
    """The gateway's audit trail holds the `count`-th refusal for `reason` (its writes are batched)."""

    async def recorded() -> bool:
        return len(await relay_refusals(mesh, reason)) >= count

    await eventually(recorded)
    return (await relay_refusals(mesh, reason))[count - 1]


@pytest.mark.parametrize("over", ["jsonrpc", "rest"])
@pytest.mark.parametrize("defect", sorted(DEFECTS))
async def test_a_body_that_is_not_strict_json_is_refused_before_it_is_authorized_or_signed(
    mesh: RelayMesh, unchanged: None, defect: str, over: str
) -> None:
    entry, status, reason = DEFECTS[defect]
    text = message_json()
    assert SKILL_ENTRY in text
    body = relay_body(over, text.replace(SKILL_ENTRY, entry))
    before = len(await relay_refusals(mesh, reason))
    headers = {**VERSION, "Content-Type": "application/json", "Authorization": f"Bearer {await mesh.token()}"}
    answer = await mesh.http.post(relay_url(mesh, over), content=body.encode(), headers=headers)
    assert answer.status_code == status, answer.text
    assert _error_metadata(answer.json()) == {"reason": reason, "cause": defect}
    record = await audited_at_gateway(mesh, reason, before + 1)
    assert (record["outcome"], record["details"]["cause"]) == ("denied", defect)


def _error_metadata(body: dict[str, Any]) -> dict[str, Any]:
    error = body["error"]
    details = error.get("data") or error.get("details")
    metadata: dict[str, Any] = details[0]["metadata"]
    return metadata


async def relay_client(mesh: RelayMesh, transport: str, tenant: str = AGENT) -> Client:
    """An a2a-sdk client of the relay, from the relay's own card, for `tenant`."""
    response = await mesh.http.get(mesh.gateway_url + "/a2a/relay/.well-known/agent-card.json")
    relay = card_from_dict(response.json())
    for interface in relay.supported_interfaces:
        interface.tenant = tenant
    config = ClientConfig(
        streaming=False,
        supported_protocol_bindings=[transport],
        grpc_channel_factory=grpc.aio.insecure_channel,
        httpx_client=mesh.http,
    )
    return ClientFactory(config).create(relay)


async def through_relay(
    mesh: RelayMesh, transport: str, bearer: str | None, message: Message, tenant: str = AGENT
) -> list[Any]:
    client = await relay_client(mesh, transport, tenant)
    headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
    context = ClientCallContext(service_parameters=headers, timeout=60)
    try:
        return [
            event async for event in client.send_message(SendMessageRequest(message=message), context=context)
        ]
    finally:
        await client.close()


async def raw_relay_answer(
    mesh: RelayMesh, transport: str, bearer: str | None, message: Message, tenant: str = AGENT
) -> tuple[int | grpc.StatusCode, dict[str, Any], str]:
    """The relay's answer as the wire carries it: the HTTP status (or gRPC code), the reason (and cause)
    and the WWW-Authenticate challenge (empty when none)."""
    if transport == GRPC:
        metadata = (("authorization", f"Bearer {bearer}"),) if bearer else ()
        async with grpc.aio.insecure_channel(mesh.relay_grpc) as channel:
            stub = a2a_pb2_grpc.A2AServiceStub(channel)  # type: ignore[no-untyped-call]
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.SendMessage(SendMessageRequest(message=message, tenant=tenant), metadata=metadata)
        found = refusal_reason(A2AClientError(caught.value.details() or "")) or ("", None)
        return caught.value.code(), {"reason": found[0], **({"cause": found[1]} if found[1] else {})}, ""
    headers = {**VERSION, "Content-Type": "application/json"}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    over = "jsonrpc" if transport == JSONRPC else "rest"
    body = relay_body(over, message_json(message), tenant)
    answer = await mesh.http.post(relay_url(mesh, over, tenant), content=body.encode(), headers=headers)
    return answer.status_code, _error_metadata(answer.json()), answer.headers.get("www-authenticate", "")


REFUSAL_STATUS = {
    "unauthenticated": (401, grpc.StatusCode.UNAUTHENTICATED),
    "invalid_token": (401, grpc.StatusCode.UNAUTHENTICATED),
    "insufficient_scope": (403, grpc.StatusCode.PERMISSION_DENIED),
    "policy_denied": (403, grpc.StatusCode.PERMISSION_DENIED),
    "not_found": (404, grpc.StatusCode.NOT_FOUND),
}


async def assert_relay_refuses(
    mesh: RelayMesh,
    transport: str,
    bearer: str | None,
    reason: str,
    message: Message | None = None,
    tenant: str = AGENT,
) -> dict[str, Any]:
    before = len(await relay_refusals(mesh, reason))
    status, metadata, challenge = await raw_relay_answer(
        mesh, transport, bearer, message or request(), tenant
    )
    http_status, grpc_status = REFUSAL_STATUS[reason]
    assert status == (grpc_status if transport == GRPC else http_status)
    assert metadata["reason"] == reason
    if transport != GRPC and http_status == 401:
        assert challenge.startswith('Bearer error="invalid_token"')
    # The a2a-sdk client fails too, and nothing is sent on.
    with pytest.raises(A2AError):
        await through_relay(mesh, transport, bearer, message or request(), tenant)
    return await audited_at_gateway(mesh, reason, before + 2)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_unauthenticated_caller_is_refused_by_the_relay(
    mesh: RelayMesh, unchanged: None, transport: str
) -> None:
    record = await assert_relay_refuses(mesh, transport, None, "unauthenticated")
    assert record["actor"] == "anonymous"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_token_the_gateway_did_not_sign_is_refused_by_the_relay(
    mesh: RelayMesh, unchanged: None, transport: str
) -> None:
    forged = issue_access_token(
        KeyRing.generate(),
        issuer=mesh.gateway_url,
        subject="orchestrator",
        client_id="orchestrator",
        audience=mesh.gateway_url,
        scopes=["a2a:delegate"],
        lifetime_s=60,
    )
    record = await assert_relay_refuses(mesh, transport, forged, "invalid_token")
    assert record["details"]["cause"] == "unknown_key"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_token_without_the_delegation_scope_is_refused_by_the_relay(
    mesh: RelayMesh, unchanged: None, transport: str
) -> None:
    token = await mesh.token(scopes=("grants:issue",))
    await assert_relay_refuses(mesh, transport, token, "insufficient_scope")


@pytest.fixture(scope="module")
async def outsider(mesh: RelayMesh) -> str:
    """A client of the gateway, with the delegation scope, that the delegation policy does not name."""
    admin = {"Authorization": f"Bearer {mesh.secrets['gateway-admin']}"}
    registration = {"client_id": "outsider", "kind": "orchestrator", "scopes": ["a2a:delegate"]}
    response = await mesh.http.post(mesh.gateway_url + "/admin/clients", json=registration, headers=admin)
    assert response.status_code == 201, response.text
    return await mesh.token("outsider", response.json()["client_secret"])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_caller_the_delegation_policy_does_not_allow_is_refused_by_the_relay(
    mesh: RelayMesh, unchanged: None, outsider: str, transport: str
) -> None:
    record = await assert_relay_refuses(mesh, transport, outsider, "policy_denied")
    assert (record["actor"], record["details"]["agent"]) == ("outsider", AGENT)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_skill_the_delegation_policy_does_not_allow_for_that_agent_is_refused(
    mesh: RelayMesh, unchanged: None, transport: str
) -> None:
    wrong_skill = skill_request("sanctions-screening", {"name": "Jane Roe"}, wf="wf-x", task="t")
    await assert_relay_refuses(mesh, transport, await mesh.token(), "policy_denied", wrong_skill)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_message_for_an_agent_the_registry_does_not_know_is_not_found(
    mesh: RelayMesh, unchanged: None, transport: str
) -> None:
    def allow_ghost(policy: dict[str, Any]) -> None:
        policy["callers"]["orchestrator"]["agents"]["ghost-agent"] = ["*"]

    async with policy_changed(mesh, mesh.delegation_policy, allow_ghost):
        await assert_relay_refuses(mesh, transport, await mesh.token(), "not_found", tenant="ghost-agent")


async def test_the_relay_lets_a_caller_continue_or_read_only_the_tasks_it_created_through_the_relay(
    mesh: RelayMesh,
) -> None:
    [event] = await send_direct(mesh, signed(mesh), JSONRPC)  # a task the relay never saw
    foreign = event.task.id
    token = await mesh.token()
    follow_up = request()
    follow_up.task_id, follow_up.context_id = foreign, event.task.context_id
    tasks, calls = await mesh.all_agent_tasks(), await mesh.tool_calls()
    with pytest.raises(TaskNotFoundError):
        await through_relay(mesh, JSONRPC, token, follow_up)
    client = await relay_client(mesh, JSONRPC)
    context = ClientCallContext(service_parameters={"authorization": f"Bearer {token}"}, timeout=60)
    try:
        with pytest.raises(TaskNotFoundError):
            await client.get_task(GetTaskRequest(id=foreign), context=context)
        with pytest.raises(TaskNotFoundError):
            await client.cancel_task(CancelTaskRequest(id=foreign), context=context)
        assert list((await client.list_tasks(ListTasksRequest(page_size=100), context=context)).tasks) == []
    finally:
        await client.close()
    assert (await mesh.all_agent_tasks(), await mesh.tool_calls()) == (tasks, calls)


async def test_a_caller_reads_its_relayed_task_with_a_reply_signed_for_it(mesh: RelayMesh) -> None:
    step = StepRef(f"run-{uuid.uuid4().hex[:8]}", "ledger")
    created = await relayed_reply(mesh, step)
    client = await relay_client(mesh, GRPC)
    context = ClientCallContext(
        service_parameters={"authorization": f"Bearer {await mesh.token()}"}, timeout=60
    )
    try:
        read = await client.get_task(GetTaskRequest(id=created.id), context=context)
        listed = await client.list_tasks(ListTasksRequest(page_size=100), context=context)
    finally:
        await client.close()
    assert read.id == created.id
    assert created.id in {task.id for task in listed.tasks}
    async with _keys(mesh) as keys:
        envelope = await reply_verifier(mesh, keys).check(read, AGENT, step)
    assert envelope.aud == "orchestrator"


# --- replies: signed by the relay for the caller; the orchestrator refuses anything else --------------------


async def relayed_reply(mesh: RelayMesh, step: StepRef) -> Task:
    message = skill_request(SKILL, PROFILE, wf=step.run_id, task=step.step_id, deadline=time.time() + 60)
    [event] = await through_relay(mesh, JSONRPC, await mesh.token(), message)
    assert event.WhichOneof("payload") == "task"
    task: Task = event.task
    return task


def reply_verifier(mesh: RelayMesh, keys: GatewayKeys) -> ReplyVerifier:
    verifier = MessageVerifier(
        keys, issuers=[mesh.gateway_url], audience="orchestrator", replay=MemoryReplayGuard()
    )
    return ReplyVerifier(verifier)


async def test_replies_are_signed_for_the_caller_and_a_tampered_or_replayed_reply_is_refused(
    mesh: RelayMesh,
) -> None:
    step = StepRef(f"run-{uuid.uuid4().hex[:8]}", "ledger")
    reply = await relayed_reply(mesh, step)
    assert SIGNED_MESSAGE_EXTENSION in reply.metadata.fields
    tampered = Task()
    tampered.CopyFrom(reply)
    profile = tampered.artifacts[0].parts[0].data.struct_value.fields
    profile["months_observed"].number_value += 1
    async with _keys(mesh) as keys:
        replies = reply_verifier(mesh, keys)
        with pytest.raises(AccordError) as caught:
            await replies.check(tampered, AGENT, step)
        assert (caught.value.reason, caught.value.context["cause"]) == ("signature_invalid", "bad_digest")
        envelope = await replies.check(reply, AGENT, step)
        assert (envelope.iss, envelope.sub, envelope.aud) == (mesh.gateway_url, AGENT, "orchestrator")
        with pytest.raises(AccordError) as caught:
            await replies.check(reply, AGENT, step)
        assert caught.value.context["cause"] == "replayed"


async def test_a_reply_about_another_step_or_from_another_agent_is_refused(mesh: RelayMesh) -> None:
    step = StepRef(f"run-{uuid.uuid4().hex[:8]}", "ledger")
    async with _keys(mesh) as keys:
        for other_step, agent, cause in (
            (StepRef(step.run_id, "bureau"), AGENT, "wrong_step"),
            (step, "bureau-agent", "wrong_agent"),
        ):
            reply = await relayed_reply(mesh, step)
            with pytest.raises(AccordError) as caught:
                await reply_verifier(mesh, keys).check(reply, agent, other_step)
            assert (caught.value.reason, caught.value.context["cause"]) == ("signature_invalid", cause)


# --- replicas sharing Redis refuse a message either of them has seen ----------------------------------------


@pytest.mark.redis
async def test_a_message_replayed_to_another_replica_sharing_redis_is_refused(mesh: RelayMesh) -> None:
    redis_url = require_redis()
    message = signed(mesh)
    secret = mesh.secrets["ledger-agent-client"]
    async with (
        running_agent(ledger_agent, mesh.gateway_url, redis_url=redis_url, client_secret=secret) as first,
        running_agent(ledger_agent, mesh.gateway_url, redis_url=redis_url, client_secret=secret) as second,
    ):
        [event] = await send_direct(mesh, message, JSONRPC, url=first.base_url)
        assert event.WhichOneof("payload") == "task"
        for transport in TRANSPORTS:
            assert await refused_direct(mesh, message, transport, url=second.base_url) == (
                "signature_invalid",
                "replayed",
            )
        second_tasks = await _tasks_at(mesh, second.base_url)
    assert second_tasks == set()


@contextlib.asynccontextmanager
async def _keys(mesh: RelayMesh) -> AsyncIterator[GatewayKeys]:
    keys = GatewayKeys(mesh.gateway_url)
    try:
        yield keys
    finally:
        await keys.aclose()


async def _tasks_at(mesh: RelayMesh, url: str) -> set[str]:
    client = await ClientFactory(ClientConfig(httpx_client=mesh.http)).create_from_url(url)
    try:
        return {task.id for task in (await client.list_tasks(ListTasksRequest(page_size=100))).tasks}
    finally:
        await client.close()
