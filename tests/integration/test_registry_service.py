"""`python -m registry` as a real process: REST through the shared client and raw HTTP, gRPC through a real
grpc.aio channel, against real signed A2A cards served on loopback.

The harness here (a registry process on a state dir, a card server whose agents are signed by that state
dir's local publisher) is shared by the other `test_registry_*` and `tests/security/test_card_*` files.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import uvicorn
from a2a.helpers import new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from accord.a2a_server import A2AServer
from accord.audit import AuditLog, verify_chain
from accord.card_signing import CardSigner
from accord.cards import SkillSchemas, build_card, card_from_dict
from accord.errors import AccordError
from accord.proto.registry.v1 import registry_pb2, registry_pb2_grpc
from accord.registry_client import RegisteredAgent, RegistryClient
from accord.storage import create_engine

START_TIMEOUT_S = 30
OPEN_SCHEMA = {"type": "object"}
DEFAULT = "publisher"  # `serve_agent(signer=DEFAULT)`: signed by the card server's publisher


class Done(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task
        if task is None:
            assert context.message is not None
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.add_artifact([new_text_part("done")], name="result")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await TaskUpdater(event_queue, context.task_id or "", context.context_id or "").cancel()


def card_source(name: str, skills: Mapping[str, list[str]], version: str = "1.0.0") -> dict[str, Any]:
    return {
        "name": name,
        "description": f"{name} for tests",
        "version": version,
        "capabilities": {},
        "defaultInputModes": ["application/json"],
        "defaultOutputModes": ["application/json"],
        "skills": [
            {"id": sid, "name": sid, "description": f"does {sid}", "tags": tags}
            for sid, tags in skills.items()
        ],
    }


@dataclass
class CardServer:
    """One uvicorn server: real A2A agents under path prefixes, and raw JSON documents at chosen paths.

    `hits` records every path requested outside the agents' mounts, so a test can prove a URL was never
    fetched.
    """

    app: Starlette
    base_url: str
    signer: CardSigner | None
    documents: dict[str, Any] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def serve_agent(
        self, name: str, skills: dict[str, list[str]], signer: CardSigner | str | None = DEFAULT
    ) -> str:
        """Mount a real A2A agent serving a card for `name`; returns its card URL."""
        return self.mount_agent(name, skills, signer)[1]

    def mount_agent(
        self,
        name: str,
        skills: dict[str, list[str]],
        signer: CardSigner | str | None = DEFAULT,
        version: str = "1.0.0",
    ) -> tuple[A2AServer, str]:
        """Mount a real A2A agent (signed by this server's publisher unless `signer` says otherwise)."""
        prefix = f"{name}-{uuid.uuid4().hex[:6]}"
        schemas = {sid: SkillSchemas(OPEN_SCHEMA, OPEN_SCHEMA) for sid in skills}
        card = build_card(card_source(name, skills, version), f"{self.base_url}/{prefix}", None, schemas)
        chosen = self.signer if signer == DEFAULT else signer
        assert chosen is None or isinstance(chosen, CardSigner)
        server = A2AServer(card, Done(), signer=chosen)
        self.app.router.routes.append(Mount(f"/{prefix}", routes=server.routes()))
        return server, f"{self.base_url}/{prefix}/.well-known/agent-card.json"

    def serve_json(self, document: Any, name: str | None = None) -> str:
        """Serve `document` at `/docs/<name>`; replace it later through `documents`. Returns its URL."""
        path = f"/docs/{name or uuid.uuid4().hex[:10] + '.json'}"
        self.documents[path] = document
        return self.base_url + path

    async def document(self, request: Request) -> Response:
        self.hits.append(request.url.path)
        document = self.documents.get(request.url.path)
        if document is None:
            return Response(status_code=404)
        return JSONResponse(document)


@asynccontextmanager
async def card_server_on(signer: CardSigner | None) -> AsyncIterator[CardServer]:
    """A card server on a free loopback port; its agents are signed by `signer`."""
    app = Starlette(
        routes=[
            Route("/bad/text", lambda _r: PlainTextResponse("not a card")),
            Route("/bad/missing-fields", lambda _r: JSONResponse({"name": "incomplete"})),
        ]
    )
    async with running(app) as base_url:
        server = CardServer(app, base_url, signer)
        app.router.routes.append(Route("/docs/{rest:path}", server.document))
        app.router.routes.append(Route("/.well-known/{rest:path}", server.document))
        yield server


@dataclass(frozen=True)
class Registry:
    base_url: str
    grpc_target: str
    state: Path

    async def audit(self) -> list[dict[str, Any]]:
        """The registry's audit trail, read from its SQLite file, checked to be an intact chain."""
        engine = create_engine(f"sqlite+aiosqlite:///{self.state / 'registry.db'}")
        try:
            records: list[dict[str, Any]] = await AuditLog(engine, "registry").records()
        finally:
            await engine.dispose()
        assert verify_chain(records) is None
        return records

    async def agents(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            body: list[dict[str, Any]] = (await http.get("/v1/agents")).json()["agents"]
        return body


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with bound_socket() as sock:
        return int(sock.getsockname()[1])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[str]:
    sock = bound_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off", timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        sock.close()


@contextmanager
def registry_process(state: Path, **env_overrides: str) -> Iterator[Registry]:
    """`python -m registry` on free ports with `state` as its state dir (trust: `<state>/trust`)."""
    port, grpc_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("ACCORD_")}
    env |= {
        "ACCORD_HOST": "127.0.0.1",
        "ACCORD_PORT": str(port),
        "ACCORD_GRPC_PORT": str(grpc_port),
        "ACCORD_STATE_DIR": str(state),
        "ACCORD_CARD_FETCH_TIMEOUT_S": "2",
        # The card servers of these tests listen on loopback, which the SSRF checks refuse unless allowed.
        "ACCORD_REGISTRY_ALLOW_PRIVATE_TARGETS": "true",
        **env_overrides,
    }
    log_path = state / "registry.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "registry"], env=env, cwd=state, stdout=log, stderr=subprocess.STDOUT
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, process, log_path)
        yield Registry(base_url, f"127.0.0.1:{grpc_port}", state)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        finally:
            log.close()
        assert code == 0, log_path.read_text()[-4000:]


def wait_ready(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll /readyz until the service says ready, the process dies, or the deadline passes."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"registry exited with {process.returncode}: {log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    pytest.fail(f"registry not ready within {START_TIMEOUT_S}s: {log.read_text()[-4000:]}")


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    """Poll `check` until it holds; fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.05)


async def grpc_refusal(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str | None]:
    """The status code and `accord-reason` of a call that must fail."""
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await asyncio.wait_for(call, timeout=10)
    reasons = [value for key, value in failed.value.trailing_metadata() or () if key == "accord-reason"]
    return failed.value.code(), reasons[0] if reasons else None


@pytest.fixture(scope="module")
def registry_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="module")
async def card_server(registry_state: Path) -> AsyncIterator[CardServer]:
    # The local publisher of the registry's state dir: its JWKS lands in the registry's trust dir.
    async with card_server_on(CardSigner.local(registry_state)) as server:
        yield server


@pytest.fixture(scope="module")
def registry(registry_state: Path) -> Iterator[Registry]:
    with registry_process(registry_state) as running_registry:
        yield running_registry


@pytest.fixture
async def client(registry: Registry) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(registry.base_url) as client:
        yield client


@pytest.fixture
async def stub(registry: Registry) -> AsyncIterator[registry_pb2_grpc.RegistryServiceStub]:
    async with grpc.aio.insecure_channel(registry.grpc_target) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        yield registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]


async def test_rest_registration_answers_201_when_new_and_200_when_refreshed(
    registry: Registry, card_server: CardServer
) -> None:
    name = unique("sanctions-agent")
    url = card_server.serve_agent(name, {"sanctions-screening": ["compliance"]})
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        created = await http.post("/v1/agents", json={"card_url": url})
        refreshed = await http.post("/v1/agents", json={"card_url": url})
        fetched = await http.get(f"/v1/agents/{name}")

    assert created.status_code == 201
    assert refreshed.status_code == 200
    body = created.json()
    assert (body["name"], body["card_url"], body["status"]) == (name, url, "active")
    assert body["skills"] == ["sanctions-screening"]
    assert body["tags"] == ["compliance"]
    assert body["card"]["name"] == name
    assert card_from_dict(body["card"]).skills[0].id == "sanctions-screening"
    assert fetched.json() == refreshed.json()


async def test_the_shared_client_registers_discovers_gets_lists_and_removes(
    client: RegistryClient, card_server: CardServer
) -> None:
    skill, tag = unique("credit-file"), unique("credit")
    name = unique("bureau-agent")
    url = card_server.serve_agent(name, {skill: [tag]})

    registered = await client.register(url)
    assert isinstance(registered, RegisteredAgent)
    assert (registered.name, registered.card_url, registered.status) == (name, url, "active")
    assert registered.card.name == name
    assert registered.skills == (skill,)
    assert registered.tags == (tag,)
    assert [a.name for a in await client.discover(skill=skill)] == [name]
    assert [a.name for a in await client.discover(tag=tag)] == [name]
    assert [a.name for a in await client.discover(skill=skill, tag=tag)] == [name]
    assert await client.discover(skill=skill, tag=unique("other")) == []
    assert (await client.get(name)).card == registered.card
    assert name in [a.name for a in await client.list()]

    await client.remove(name)

    assert await client.discover(skill=skill) == []
    with pytest.raises(AccordError) as missing:
        await client.get(name)
    assert missing.value.reason == "not_found"


async def test_rest_refusals_carry_status_and_reason_and_change_nothing(
    registry: Registry, client: RegistryClient, card_server: CardServer
) -> None:
    name = unique("ledger-agent")
    url = card_server.serve_agent(name, {"transaction-profile": []})
    impostor = card_server.serve_agent(name, {"transaction-profile": []})
    await client.register(url)
    before = await client.list()
    closed_port = free_port()
    cases = [
        ({"card_url": impostor}, 409, "conflict"),
        ({"card_url": f"{card_server.base_url}/bad/text"}, 422, "card_invalid"),
        ({"card_url": f"{card_server.base_url}/bad/missing-fields"}, 422, "card_invalid"),
        ({"card_url": f"http://127.0.0.1:{closed_port}/card.json"}, 502, "agent_unavailable"),
        ({"card_url": "file:///etc/passwd"}, 422, "invalid_input"),
        ({}, 422, "invalid_input"),
    ]
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        for body, status, reason in cases:
            answer = await http.post("/v1/agents", json=body)
            assert (answer.status_code, answer.json()["error"]["reason"]) == (status, reason), body
        malformed = await http.post("/v1/agents", content=b"{", headers={"content-type": "application/json"})
        unknown = await http.get(f"/v1/agents/{unique('nobody')}")
        unknown_delete = await http.delete(f"/v1/agents/{unique('nobody')}")

    assert (malformed.status_code, malformed.json()["error"]["reason"]) == (400, "malformed_json")
    assert (unknown.status_code, unknown.json()["error"]["reason"]) == (404, "not_found")
    assert (unknown_delete.status_code, unknown_delete.json()["error"]["reason"]) == (404, "not_found")
    assert await client.list() == before
    with pytest.raises(AccordError) as conflict:
        await client.register(impostor)
    assert conflict.value.reason == "conflict"


async def test_grpc_registers_gets_lists_discovers_and_removes(
    stub: registry_pb2_grpc.RegistryServiceStub, card_server: CardServer
) -> None:
    skill, tag = unique("sanctions-screening"), unique("screening")
    name = unique("sanctions-agent")
    url = card_server.serve_agent(name, {skill: [tag, "compliance"]})

    agent = await stub.RegisterAgent(registry_pb2.RegisterAgentRequest(card_url=url), timeout=10)

    assert (agent.name, agent.card_url, agent.status) == (name, url, "active")
    assert list(agent.skills) == [skill]
    assert list(agent.tags) == [tag, "compliance"]
    assert json.loads(agent.card_json)["name"] == name
    assert agent.registered_at.seconds > 0
    assert agent.registered_at == agent.updated_at
    assert await stub.GetAgent(registry_pb2.GetAgentRequest(name=name), timeout=10) == agent
    listed = await stub.ListAgents(registry_pb2.ListAgentsRequest(), timeout=10)
    assert name in [a.name for a in listed.agents]
    found = await stub.DiscoverAgents(registry_pb2.DiscoverAgentsRequest(skill=skill, tag=tag), timeout=10)
    assert [a.name for a in found.agents] == [name]
    by_tag = await stub.DiscoverAgents(registry_pb2.DiscoverAgentsRequest(tag=tag), timeout=10)
    assert [a.name for a in by_tag.agents] == [name]

    await stub.RemoveAgent(registry_pb2.RemoveAgentRequest(name=name), timeout=10)

    gone = await stub.DiscoverAgents(registry_pb2.DiscoverAgentsRequest(skill=skill), timeout=10)
    assert list(gone.agents) == []


async def test_grpc_refusals_map_to_the_error_tables_status_and_reason(
    stub: registry_pb2_grpc.RegistryServiceStub, card_server: CardServer
) -> None:
    name = unique("bureau-agent")
    url = card_server.serve_agent(name, {"credit-file": []})
    impostor = card_server.serve_agent(name, {"credit-file": []})
    await stub.RegisterAgent(registry_pb2.RegisterAgentRequest(card_url=url), timeout=10)
    register = registry_pb2.RegisterAgentRequest
    closed_port = free_port()

    assert await grpc_refusal(stub.GetAgent(registry_pb2.GetAgentRequest(name=unique("nobody")))) == (
        grpc.StatusCode.NOT_FOUND,
        "not_found",
    )
    assert await grpc_refusal(stub.RemoveAgent(registry_pb2.RemoveAgentRequest(name=unique("nobody")))) == (
        grpc.StatusCode.NOT_FOUND,
        "not_found",
    )
    assert await grpc_refusal(stub.RegisterAgent(register(card_url=impostor))) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "conflict",
    )
    assert await grpc_refusal(stub.RegisterAgent(register(card_url=f"{card_server.base_url}/bad/text"))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "card_invalid",
    )
    assert await grpc_refusal(stub.RegisterAgent(register(card_url=f"http://127.0.0.1:{closed_port}/c"))) == (
        grpc.StatusCode.UNAVAILABLE,
        "agent_unavailable",
    )
    assert await grpc_refusal(stub.RegisterAgent(register())) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_input",
    )
    kept = await stub.GetAgent(registry_pb2.GetAgentRequest(name=name), timeout=10)
    assert kept.card_url == url


async def test_rest_and_grpc_serve_one_catalog(
    client: RegistryClient, stub: registry_pb2_grpc.RegistryServiceStub, card_server: CardServer
) -> None:
    name = unique("ledger-agent")
    url = card_server.serve_agent(name, {"transaction-profile": ["ledger"]})

    await stub.RegisterAgent(registry_pb2.RegisterAgentRequest(card_url=url), timeout=10)
    via_rest = await client.get(name)
    await client.remove(name)

    assert via_rest.card_url == url
    assert await grpc_refusal(stub.GetAgent(registry_pb2.GetAgentRequest(name=name))) == (
        grpc.StatusCode.NOT_FOUND,
        "not_found",
    )


async def test_the_service_reports_health_readiness_and_metrics(registry: Registry) -> None:
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        health, ready, metrics = await asyncio.gather(
            http.get("/healthz"), http.get("/readyz"), http.get("/metrics")
        )

    assert health.json() == {"status": "ok", "service": "registry"}
    assert ready.json() == {"status": "ready", "service": "registry"}
    assert "accord_http_requests_total" in metrics.text
