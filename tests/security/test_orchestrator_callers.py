"""The orchestrator authenticates every caller, on its REST API and on each A2A transport.

Against the session mesh (real processes): each refusal has its status and reason code (and, over HTTP, the
Bearer challenge pointing at the RFC 9728 metadata), is in the orchestrator's audit trail with the
caller's trace id, and starts nothing. An outside client an operator registers with `accord clients add`
then runs a workflow with a stock a2a-sdk client, which learns from the card what to send; the tasks it
creates are its own.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import jwt
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import GetTaskRequest, SendMessageRequest, TaskState, a2a_pb2, a2a_pb2_grpc
from a2a.utils.errors import TaskNotFoundError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from accord.a2a_credentials import gateway_auth
from accord.agent.testing import serving
from accord.audit import AuditLog
from accord.caller_auth import RELAYED_SCOPE, relay_audience
from accord.cards import JSONRPC_PATH, REST_PATH
from accord.cli.main import app as cli
from accord.gateway_client import GatewayBearer
from accord.keys import KeyRing
from accord.mesh import MeshRunner
from accord.payloads import skill_request
from accord.storage import create_engine
from accord.testing.ports import free_port
from accord.tokens import issue_access_token
from tests.service_metrics import metric

APPLICANT = {
    "applicant_id": "APP-SEC-1",
    "account_id": "ACC-100001",
    "name": "Ada Caller",
    "requested_amount": 5000,
}


def traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def gateway_ring(mesh: MeshRunner) -> KeyRing:
    return KeyRing.load_or_create(mesh.state_dir / "gateway-keys.json")


def forged(mesh: MeshRunner, **overrides: Any) -> str:
    """A token as the gateway would issue it, with `overrides` (ring, audience, scopes, lifetime, now)."""
    ring = overrides.pop("ring", None) or gateway_ring(mesh)
    values: dict[str, Any] = {
        "issuer": mesh.url("gateway"),
        "subject": "operator",
        "client_id": "operator",
        "audience": mesh.url("orchestrator"),
        "scopes": ["runs:start", "runs:read"],
        "lifetime_s": 300,
    }
    values.update(overrides)
    return issue_access_token(ring, **values)


def alg_none(mesh: MeshRunner) -> str:
    claims = jwt.decode(forged(mesh), options={"verify_signature": False})
    return jwt.encode(claims, key="", algorithm="none", headers={"typ": "at+jwt", "kid": "x"})


async def other_resource_token(mesh: MeshRunner, http: httpx.AsyncClient) -> str:
    """The operator's own, genuine token, but for the gateway's MCP endpoint (another resource)."""
    bearer = GatewayBearer(
        mesh.url("gateway"), "operator", mesh._secrets()["operator-client"], mesh.url("gateway") + "/mcp"
    )
    return await bearer.token(http)


@dataclass(frozen=True)
class Case:
    name: str
    token: Callable[[MeshRunner, httpx.AsyncClient], Awaitable[str | None]]
    status: int
    reason: str
    cause: str | None = None


async def _none(_mesh: MeshRunner, _http: httpx.AsyncClient) -> str | None:
    return None


def _sync(make: Callable[[MeshRunner], str]) -> Callable[[MeshRunner, httpx.AsyncClient], Awaitable[str]]:
    async def token(mesh: MeshRunner, _http: httpx.AsyncClient) -> str:
        return make(mesh)

    return token


def expired(mesh: MeshRunner) -> str:
    return forged(mesh, lifetime_s=60, now=time.time() - 600)


def unknown_key(mesh: MeshRunner) -> str:
    return forged(mesh, ring=KeyRing.generate())


CASES = [
    Case("no token", _none, 401, "unauthenticated"),
    Case("expired", _sync(expired), 401, "invalid_token", "expired"),
    Case("unknown key", _sync(unknown_key), 401, "invalid_token", "unknown_key"),
    Case("alg none", _sync(alg_none), 401, "invalid_token", "alg_not_allowed"),
    Case("another resource", other_resource_token, 401, "invalid_token", "wrong_audience"),
    Case("read-only scope", _sync(lambda m: forged(m, scopes=["runs:read"])), 403, "insufficient_scope"),
]  # fmt: skip


async def run_ids(mesh: MeshRunner) -> set[str]:
    async with httpx.AsyncClient(timeout=10, auth=mesh.operator_auth()) as http:
        response = await http.get(mesh.url("orchestrator") + "/v1/runs", params={"limit": 500})
    assert response.status_code == 200, response.text
    return {run["id"] for run in response.json()["runs"]}


async def audit_records(mesh: MeshRunner, action: str) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite+aiosqlite:///{mesh.state_dir / 'orchestrator.db'}")
    try:
        records = await AuditLog(engine, "orchestrator").records()
    finally:
        await engine.dispose()
    return [record for record in records if record["action"] == action]


async def denial_for(mesh: MeshRunner, trace_id: str) -> dict[str, Any]:
    found = [r for r in await audit_records(mesh, "api.authenticate") if r["trace_id"] == trace_id]
    assert len(found) == 1, found
    return found[0]


def message_body() -> dict[str, Any]:
    return {
        "message": {
            "messageId": uuid.uuid4().hex,
            "role": "ROLE_USER",
            "parts": [{"data": APPLICANT, "mediaType": "application/json"}],
            "metadata": {"accord.skill": "credit-risk"},
        }
    }


async def call_http(
    mesh: MeshRunner, http: httpx.AsyncClient, surface: str, headers: dict[str, str]
) -> httpx.Response:
    base = mesh.url("orchestrator")
    headers = {**headers, "A2A-Version": "1.0"}
    if surface == "rest-api":
        return await http.post(base + "/v1/workflows/credit-risk/runs", json=APPLICANT, headers=headers)
    if surface == "jsonrpc":
        body = {"jsonrpc": "2.0", "id": 7, "method": "SendMessage", "params": message_body()}
        return await http.post(base + JSONRPC_PATH, json=body, headers=headers)
    return await http.post(base + REST_PATH + "/message:send", json=message_body(), headers=headers)


def reason_of(surface: str, body: dict[str, Any]) -> tuple[str, str | None]:
    if surface == "rest-api":
        return body["error"]["reason"], body["error"].get("cause")
    details = body["error"]["data"] if surface == "jsonrpc" else body["error"]["details"]
    metadata = details[0]["metadata"]
    return metadata["reason"], metadata.get("cause")


@pytest.mark.parametrize("surface", ["rest-api", "jsonrpc", "http+json"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
async def test_a_refused_caller_gets_its_reason_is_audited_and_starts_nothing(
    mesh: MeshRunner, surface: str, case: Case
) -> None:
    before = await run_ids(mesh)
    trace_id, parent = traceparent()
    decision = {"action": "api.authenticate", "outcome": "denied", "reason": case.reason}
    async with httpx.AsyncClient(timeout=30) as http:
        denials = await metric(http, mesh.url("orchestrator"), "accord_decisions_total", **decision)
        token = await case.token(mesh, http)
        headers = {"traceparent": parent, **({"Authorization": f"Bearer {token}"} if token else {})}
        response = await call_http(mesh, http, surface, headers)
        counted = await metric(http, mesh.url("orchestrator"), "accord_decisions_total", **decision)
    assert counted == denials + 1  # on /metrics too, by reason

    assert response.status_code == case.status, response.text
    assert reason_of(surface, response.json()) == (case.reason, case.cause)
    challenge = response.headers["www-authenticate"]
    expected = "invalid_token" if case.status == 401 else "insufficient_scope"
    assert challenge.startswith(f'Bearer error="{expected}"'), challenge
    assert f'resource_metadata="{mesh.url("orchestrator")}/.well-known/oauth-protected-resource"' in challenge
    if case.status == 403:
        assert 'scope="runs:start"' in challenge
    record = await denial_for(mesh, trace_id)
    assert (record["outcome"], record["reason"]) == ("denied", case.reason)
    assert record["details"].get("cause") == case.cause
    assert await run_ids(mesh) == before
    assert token is None or token not in json.dumps(record)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
async def test_grpc_refuses_the_same_callers_with_the_matching_status(mesh: MeshRunner, case: Case) -> None:
    before = await run_ids(mesh)
    trace_id, parent = traceparent()
    async with httpx.AsyncClient(timeout=30) as http:
        token = await case.token(mesh, http)
    address = mesh.services["orchestrator"].grpc_address
    assert address is not None
    metadata = [("traceparent", parent), *([("authorization", f"Bearer {token}")] if token else [])]
    request = a2a_pb2.SendMessageRequest()
    request.message.CopyFrom(skill_request("credit-risk", APPLICANT))
    async with grpc.aio.insecure_channel(address) as channel:
        stub = a2a_pb2_grpc.A2AServiceStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SendMessage(request, metadata=metadata, timeout=30)
    code = grpc.StatusCode.UNAUTHENTICATED if case.status == 401 else grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.code() == code
    assert (refused.value.details() or "").startswith(case.reason)
    record = await denial_for(mesh, trace_id)
    assert (record["reason"], record["details"]["transport"]) == (case.reason, "grpc")
    assert await run_ids(mesh) == before


async def test_the_relays_token_opens_the_a2a_surface_only(mesh: MeshRunner) -> None:
    relayed = forged(
        mesh, audience=relay_audience("orchestrator"), scopes=[RELAYED_SCOPE], subject="orchestrator"
    )
    trace_id, parent = traceparent()
    async with httpx.AsyncClient(timeout=10) as http:
        response = await call_http(
            mesh, http, "rest-api", {"Authorization": f"Bearer {relayed}", "traceparent": parent}
        )
    assert response.status_code == 403
    assert response.json()["error"]["reason"] == "insufficient_scope"
    assert (await denial_for(mesh, trace_id))["reason"] == "insufficient_scope"


async def test_card_and_metadata_say_how_to_authenticate_and_stay_public(mesh: MeshRunner) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        card = await A2ACardResolver(http, mesh.url("orchestrator")).get_agent_card()
        metadata = (await http.get(mesh.url("orchestrator") + "/.well-known/oauth-protected-resource")).json()
    scheme = card.security_schemes["accord-oauth"].oauth2_security_scheme
    assert scheme.flows.client_credentials.token_url == mesh.url("gateway") + "/oauth/token"
    assert set(scheme.flows.client_credentials.scopes) == {"runs:start", "runs:read", "runs:review"}
    assert scheme.oauth2_metadata_url == mesh.url("gateway") + "/.well-known/oauth-authorization-server"
    requirements = [{k: list(v.list) for k, v in r.schemes.items()} for r in card.security_requirements]
    assert requirements == [{"accord-oauth": ["runs:start"]}]
    assert metadata["resource"] == mesh.url("orchestrator")
    assert metadata["authorization_servers"] == [mesh.url("gateway")]
    assert metadata["scopes_supported"] == ["runs:read", "runs:review", "runs:start"]


async def test_an_outside_client_added_by_the_operator_runs_a_workflow_and_its_tasks_stay_its_own(
    mesh: MeshRunner,
) -> None:
    partner = f"partner-{uuid.uuid4().hex[:6]}"
    added = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["clients", "add", partner, "--scope", "runs:start", "--gateway-url", mesh.url("gateway"),
         "--state-dir", str(mesh.state_dir)],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    secret = re.search(r"^client_secret: (\S+)$", added.output, re.M)
    assert secret is not None
    bearer = GatewayBearer(mesh.url("gateway"), partner, secret.group(1), mesh.url("orchestrator"))

    async with httpx.AsyncClient(timeout=60) as http:
        card = await A2ACardResolver(http, mesh.url("orchestrator")).get_agent_card()
        config = ClientConfig(streaming=False, httpx_client=http)
        client = ClientFactory(config).create(card, [gateway_auth(bearer, http)])
        request = SendMessageRequest(message=skill_request("credit-risk", APPLICANT))
        [event] = [event async for event in client.send_message(request)]
        task = event.task
        # Done, or (a refer decision) asking its caller for an approval: either way, the run ran.
        assert task.status.state in (TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_INPUT_REQUIRED)
        await client.close()

        # The operator may start and read runs, but another caller's A2A task is not its to see.
        operator = ClientFactory(config).create(card, [gateway_auth(mesh.operator_auth(), http)])
        with pytest.raises(TaskNotFoundError):
            await operator.get_task(GetTaskRequest(id=task.id))
        await operator.close()

        # Its token carries `runs:start` only: reading runs over REST is refused.
        runs = await http.get(mesh.url("orchestrator") + "/v1/runs", auth=bearer)
    assert runs.status_code == 403
    assert runs.json()["error"]["reason"] == "insufficient_scope"
    starts = [r for r in await audit_records(mesh, "run.start") if r["actor"] == f"a2a:{partner}"]
    assert [r["outcome"] for r in starts] == ["allowed"]


async def test_the_operator_token_goes_to_the_orchestrator_and_nowhere_else(mesh: MeshRunner) -> None:
    """`GatewayBearer` attaches the token only to requests for its resource: a client that also talks to
    other services (here an agent's metrics) never hands the orchestrator's token to them."""
    seen: list[str | None] = []

    async def record(request: Request) -> JSONResponse:
        seen.append(request.headers.get("authorization"))
        return JSONResponse({})

    port = free_port()
    async with (
        serving(Starlette(routes=[Route("/anything", record)]), "127.0.0.1", port),
        httpx.AsyncClient(timeout=10, auth=mesh.operator_auth()) as http,
    ):
        own = await http.get(mesh.url("orchestrator") + "/v1/runs", params={"limit": 1})
        await http.get(f"http://127.0.0.1:{port}/anything")
    assert own.status_code == 200
    assert seen == [None]
