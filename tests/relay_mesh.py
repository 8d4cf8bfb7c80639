"""The credit-risk mesh behind the gateway's A2A relay on real processes, for tests: tool servers, gateway,
registry and the three specialists started from `deploy/topology.yaml`, with orchestrators in process.

`relay_mesh` starts it at a port offset; `RelayMesh` builds orchestrators against it, reads its audit trails
and changes its policies (`policy_changed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from a2a.client import ClientConfig, ClientFactory
from a2a.types import ListTasksRequest, Message, SendMessageRequest
from a2a.utils.constants import TransportProtocol
from a2a.utils.errors import A2AError, InvalidRequestError
from sqlalchemy import select

from accord.a2a_errors import refusal_reason
from accord.agent.testing import serving
from accord.audit import AuditLog
from accord.gateway_client import GatewayBearer, GatewayClient
from accord.keys import KeyRing
from accord.mesh import MeshRunner
from accord.message_signing import sign
from accord.payloads import skill_request
from accord.storage import create_engine
from accord.testing.ports import free_port
from accord.topology import load_topology, repo_root
from gateway.oauth.grants import grants_table
from orchestrator.app import Orchestrator
from orchestrator.settings import OrchestratorSettings

WAIT_S = 90.0
AGENTS = ("sanctions-agent", "bureau-agent", "ledger-agent")
TOOLS = tuple(spec.name for spec in load_topology().of_kind("tools"))
ONLY = {*TOOLS, "gateway", "registry", *AGENTS}
# Below the ephemeral port range, and clear of the other test meshes.
OFFSET = 16000
APPLICANT = {
    "applicant_id": "APP-0001",
    "account_id": "ACC-100007",
    "name": "Harry Okafor",
    "birth_date": "1984-03-02",
    "country": "GB",
    "requested_amount": 5000,
}
STEP_AGENTS = {"sanctions": "sanctions-agent", "bureau": "bureau-agent", "ledger": "ledger-agent"}
STEP_TOOLS = {
    "sanctions-agent": ["sanctions.search"],
    "bureau-agent": ["bureau.get_credit_file"],
    "ledger-agent": ["ledger.aggregate_by_counterparty", "ledger.aggregate_by_period", "ledger.get_account"],
}
STEP_BINDINGS = {
    "sanctions": {"name": "Harry Okafor", "birth_date": "1984-03-02", "country": "GB"},
    "bureau": {"applicant_id": "APP-0001"},
    "ledger": {"account_id": "ACC-100007"},
}
DELEGATE = "a2a:delegate"


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = WAIT_S) -> None:
    """Poll until `check` holds, failing after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - polling a condition with no event to wait on
            await asyncio.sleep(0.05)


@dataclass
class RelayMesh:
    """Real processes on loopback, and what tests need to look at them."""

    runner: MeshRunner
    http: httpx.AsyncClient
    secrets: dict[str, str]

    @property
    def state_dir(self) -> Path:
        return self.runner.state_dir

    def url(self, name: str) -> str:
        return self.runner.url(name)

    @property
    def gateway_url(self) -> str:
        return self.url("gateway")

    @functools.cached_property
    def operator_auth(self) -> GatewayBearer:
        """The operator's auth towards the mesh's orchestrator (one token, reused across calls)."""
        return self.runner.operator_auth()

    @property
    def relay_grpc(self) -> str:
        spec = self.runner.topology.by_name("gateway")
        assert spec.grpc_port is not None
        return f"127.0.0.1:{spec.grpc_port + self.runner.port_offset}"

    def agent_grpc(self, name: str) -> str:
        service = self.runner.services[name]
        assert service.grpc_address is not None
        return service.grpc_address

    def gateway_ring(self) -> KeyRing:
        """The gateway's signing keys, read from the state dir as the gateway reads them."""
        return KeyRing.load_or_create(self.state_dir / "gateway-keys.json")

    @property
    def tools_policy(self) -> Path:
        return self.state_dir / "tools.yaml"

    @property
    def delegation_policy(self) -> Path:
        return self.state_dir / "delegation.yaml"

    async def records(self, service: str, action: str | None = None) -> list[dict[str, Any]]:
        """A service's audit records (its SQLite file in the state dir), optionally of one action."""
        engine = create_engine(f"sqlite+aiosqlite:///{self.state_dir / f'{service}.db'}")
        try:
            records = await AuditLog(engine, service).records()
        finally:
            await engine.dispose()
        return [r for r in records if action is None or r["action"] == action]

    async def grants(self, wf: str) -> list[dict[str, Any]]:
        engine = create_engine(f"sqlite+aiosqlite:///{self.state_dir / 'gateway.db'}")
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(select(grants_table).where(grants_table.c.wf == wf))
                return [dict(row._mapping) for row in rows]
        finally:
            await engine.dispose()

    async def token(
        self,
        client_id: str = "orchestrator",
        secret: str | None = None,
        scopes: tuple[str, ...] = (DELEGATE,),
    ) -> str:
        """A client-credentials token of the gateway, addressed to the gateway itself (the relay)."""
        async with GatewayClient(
            self.gateway_url, client_id, secret or self.secrets[f"{client_id}-client"]
        ) as client:
            return (await client.client_credentials_token(scopes, self.gateway_url)).token

    async def agent_tasks(self, name: str) -> set[str]:
        """The ids of every task the agent holds (A2A ListTasks, straight to the agent)."""
        config = ClientConfig(httpx_client=self.http)
        client = await ClientFactory(config).create_from_url(self.url(name))
        try:
            return {task.id for task in (await client.list_tasks(ListTasksRequest(page_size=100))).tasks}
        finally:
            await client.close()

    async def all_agent_tasks(self) -> dict[str, set[str]]:
        return {name: await self.agent_tasks(name) for name in AGENTS}

    async def tool_calls(self) -> int:
        return len(await self.records("gateway", "tools/call"))

    @contextlib.asynccontextmanager
    async def orchestrator(self, **overrides: Any) -> AsyncIterator[str]:
        """An orchestrator of this mesh on free ports in this process; `overrides` are its settings."""
        port = free_port()
        values: dict[str, Any] = {
            "port": port,
            "grpc_port": free_port(),
            "registry_url": self.url("registry"),
            "gateway_url": self.gateway_url,
            "client_id": "orchestrator",
            "client_secret": self.secrets["orchestrator-client"],
            "state_dir": self.state_dir / f"orchestrator-{port}",
            "step_timeout_s": 60,
            # A replica of the mesh's orchestrator API: its tokens name that resource.
            "api_resource": self.url("orchestrator"),
        }
        values.update(overrides)
        async with serving(Orchestrator(OrchestratorSettings(**values)).create_app(), "127.0.0.1", port):
            yield f"http://127.0.0.1:{port}"

    async def run(self, orchestrator_url: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.http.post(
            orchestrator_url + "/v1/workflows/credit-risk/runs",
            params={"wait": WAIT_S},
            json=data or APPLICANT,
            auth=self.runner.operator_auth(orchestrator_url),
        )
        assert response.status_code == 201, response.text
        run: dict[str, Any] = response.json()
        assert run["status"] != "running", "the run did not finish in time"
        return run


def write_yaml(path: Path, document: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump(document, sort_keys=False))
    temporary.replace(path)  # atomic, as a deployment tool would do it


@contextlib.asynccontextmanager
async def policy_changed(
    mesh: RelayMesh, path: Path, change: Callable[[dict[str, Any]], None]
) -> AsyncIterator[None]:
    """The policy file edited by `change` while the block runs (the gateway reloads it), then restored."""
    text = await asyncio.to_thread(path.read_text)
    original, edited = yaml.safe_load(text), yaml.safe_load(text)
    change(edited)
    await _install(mesh, path, edited)
    try:
        yield
    finally:
        await _install(mesh, path, original)


async def _install(mesh: RelayMesh, path: Path, document: dict[str, Any]) -> None:
    before = len(await mesh.records("gateway", "policy.reload"))
    write_yaml(path, document)

    async def reloaded() -> bool:
        return len(await mesh.records("gateway", "policy.reload")) > before

    await eventually(reloaded)


@contextlib.asynccontextmanager
async def relay_mesh(state_dir: Path, offset: int, only: set[str] = ONLY) -> AsyncIterator[RelayMesh]:
    """The mesh with copies of the tool and delegation policies in its state dir, reloaded quickly."""
    policies = repo_root() / "deploy" / "policies"
    shutil.copy(policies / "tools.yaml", state_dir / "tools.yaml")
    shutil.copy(policies / "delegation.yaml", state_dir / "delegation.yaml")
    env = {
        "gateway": {
            "ACCORD_GATEWAY_POLICY_FILE": str(state_dir / "tools.yaml"),
            "ACCORD_GATEWAY_DELEGATION_FILE": str(state_dir / "delegation.yaml"),
            "ACCORD_GATEWAY_POLICY_RELOAD_SECONDS": "0.1",
        },
        # Local mode: the registry fetches the agents' cards from loopback.
        "registry": {"ACCORD_REGISTRY_ALLOW_PRIVATE_TARGETS": "true"},
    }
    runner = MeshRunner(state_dir, port_offset=offset, only=only, extra_env=env)
    _ports_are_free(runner, only)
    await asyncio.to_thread(runner.start, 300)
    try:
        secrets = json.loads((state_dir / "secrets.json").read_text())
        async with httpx.AsyncClient(timeout=WAIT_S) as http:
            yield RelayMesh(runner, http, secrets)
    finally:
        await asyncio.to_thread(runner.stop)


def _ports_are_free(runner: MeshRunner, only: set[str]) -> None:
    """Fail fast when something already listens where the mesh will (a mesh left over from an aborted
    run would otherwise answer in its place)."""
    for spec in runner.topology.services:
        if spec.name not in only:
            continue
        for port in (spec.port, spec.grpc_port):
            if port is not None:
                with socket.socket() as probe:
                    taken = port + runner.port_offset
                    if probe.connect_ex(("127.0.0.1", taken)) == 0:
                        raise RuntimeError(f"port {taken} ({spec.name}) is already in use")


# --- messages straight to an agent, bypassing the relay

GRPC = TransportProtocol.GRPC
AGENT = "ledger-agent"
SKILL = "transaction-profile"
PROFILE = {"account_id": "ACC-100007"}


def request(data: dict[str, Any] | None = None, agent: str = AGENT, skill: str = SKILL) -> Message:
    return skill_request(skill, data or PROFILE, wf=f"wf-{uuid.uuid4().hex[:8]}", task="ledger")


def signed(
    mesh: RelayMesh,
    message: Message | None = None,
    *,
    ring: KeyRing | None = None,
    callee: str = AGENT,
    now: float | None = None,
) -> Message:
    """A message signed as the relay signs it (by default with the gateway's own key, for `callee`)."""
    return sign(
        message or request(),
        ring or mesh.gateway_ring(),
        issuer=mesh.gateway_url,
        caller="orchestrator",
        callee=callee,
        wf="wf-security",
        task="ledger",
        now=now,
    )


async def send_direct(
    mesh: RelayMesh, message: Message, transport: str, streaming: bool = False, url: str | None = None
) -> list[Any]:
    """SendMessage (or SendStreamingMessage) straight to the agent, bypassing the relay."""
    config = ClientConfig(
        streaming=streaming,
        supported_protocol_bindings=[transport],
        grpc_channel_factory=grpc.aio.insecure_channel,
        httpx_client=mesh.http,
    )
    client = await ClientFactory(config).create_from_url(url or mesh.url(AGENT))
    try:
        return [event async for event in client.send_message(SendMessageRequest(message=message))]
    finally:
        await client.close()


async def refused_direct(
    mesh: RelayMesh, message: Message, transport: str, streaming: bool = False, url: str | None = None
) -> tuple[str, str | None]:
    """The agent's refusal as its a2a-sdk client sees it: an `InvalidRequestError` carrying the reason
    (in `data` on JSON-RPC and HTTP+JSON; at the head of the message on gRPC)."""
    with pytest.raises(A2AError) as caught:
        await send_direct(mesh, message, transport, streaming, url)
    error = caught.value
    assert type(error) is InvalidRequestError, repr(error)
    found = refusal_reason(error)
    assert found is not None, repr(error)
    if transport != GRPC:
        assert error.data == {"reason": found[0], "cause": found[1]}
    return found
