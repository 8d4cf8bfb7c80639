"""Credit-risk end to end through the gateway's A2A relay, on JSON-RPC, HTTP+JSON and gRPC, unary and
streaming, against real processes (tool servers, gateway, registry, the three specialists) and an
orchestrator per case in this process.

Also here: each step runs under its own task grant (issued by the relay, bound to the run, the step and its
inputs, revoked when the step ends), and the relay's refusals (tool policy, delegation policy, an unknown
or unreachable gateway) fail steps without any agent being called. `RelayMesh` is the harness the other
relay test modules share.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from a2a.client import ClientConfig, ClientFactory
from a2a.types import ListTasksRequest
from a2a.utils.constants import TransportProtocol
from sqlalchemy import select

from accord.agent.testing import serving
from accord.audit import AuditLog
from accord.gateway_client import GatewayClient, tool_scope
from accord.keys import KeyRing
from accord.mesh import MeshRunner
from accord.storage import create_engine
from accord.testing.ports import free_port
from accord.topology import load_topology, repo_root
from gateway.oauth.grants import grants_table
from orchestrator.app import Orchestrator
from orchestrator.settings import OrchestratorSettings

# Starting a dozen processes on a busy machine can take minutes; the module's first test pays for it.
pytestmark = pytest.mark.timeout(600)
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
        }
        values.update(overrides)
        async with serving(Orchestrator(OrchestratorSettings(**values)).create_app(), "127.0.0.1", port):
            yield f"http://127.0.0.1:{port}"

    async def run(self, orchestrator_url: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.http.post(
            orchestrator_url + "/v1/workflows/credit-risk/runs",
            params={"wait": WAIT_S},
            json=data or APPLICANT,
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


# --- this module -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RelayMesh]:
    async with relay_mesh(tmp_path_factory.mktemp("relay-mesh"), OFFSET) as running:
        yield running


MODES = [
    pytest.param(TransportProtocol.JSONRPC, False, id="jsonrpc-unary"),
    pytest.param(TransportProtocol.JSONRPC, True, id="jsonrpc-streaming"),
    pytest.param(TransportProtocol.HTTP_JSON, False, id="http-json-unary"),
    pytest.param(TransportProtocol.HTTP_JSON, True, id="http-json-streaming"),
    pytest.param(TransportProtocol.GRPC, False, id="grpc-unary"),
    pytest.param(TransportProtocol.GRPC, True, id="grpc-streaming"),
]
RELAYED_ON = {
    TransportProtocol.JSONRPC: "jsonrpc",
    TransportProtocol.HTTP_JSON: "rest",
    TransportProtocol.GRPC: "grpc",
}


@pytest.mark.parametrize(("transport", "streaming"), MODES)
async def test_credit_risk_runs_end_to_end_through_the_relay_on_each_transport_and_mode(
    mesh: RelayMesh, transport: str, streaming: bool
) -> None:
    async with mesh.orchestrator(relay_transport=transport, relay_streaming=streaming) as orchestrator:
        run = await mesh.run(orchestrator)
    assert run["status"] == "completed", run
    assert run["result"]["decision"] in ("approve", "decline", "refer")
    steps = {step["id"]: step for step in run["steps"]}
    assert {step_id: step["agent"] for step_id, step in steps.items()} == STEP_AGENTS
    assert all(step["status"] == "completed" for step in steps.values())

    # The relay admitted one message per step, for this run, on the mode asked for.
    method = "SendStreamingMessage" if streaming else "SendMessage"
    admitted = [r for r in await mesh.records("gateway", "a2a.relay") if r["run_id"] == run["id"]]
    assert sorted((r["outcome"], r["details"]["agent"], r["details"]["method"]) for r in admitted) == sorted(
        ("allowed", agent, method) for agent in AGENTS
    )
    # Each agent received the relay's signed message on the same transport, from the orchestrator.
    for step_id, agent in STEP_AGENTS.items():
        received = [r for r in await mesh.records(agent, "a2a.message") if r["run_id"] == run["id"]]
        assert [(r["outcome"], r["actor"], r["details"]["task"]) for r in received] == [
            ("allowed", "orchestrator", step_id)
        ]
        assert received[0]["details"]["transport"] == RELAYED_ON[transport]
        assert received[0]["details"]["issuer"] == mesh.gateway_url


async def test_each_step_runs_under_its_own_grant_bound_to_its_inputs_and_revoked_when_it_ends(
    mesh: RelayMesh,
) -> None:
    async with mesh.orchestrator() as orchestrator:
        run = await mesh.run(orchestrator)
    assert run["status"] == "completed", run
    stored = {grant["task"]: grant for grant in await mesh.grants(run["id"])}
    assert set(stored) == set(STEP_AGENTS)
    for step in run["steps"]:
        agent = STEP_AGENTS[step["id"]]
        record = step["grant"]
        assert record["scopes"] == sorted(tool_scope(tool) for tool in STEP_TOOLS[agent])
        assert (record["dropped_scopes"], record["revoked"]) == ([], True)
        grant = stored[step["id"]]
        assert grant["grant_id"] == record["grant_id"]
        assert (grant["agent"], grant["delegated_by"], grant["revoked"]) == (agent, "orchestrator", True)
        assert grant["bindings"] == STEP_BINDINGS[step["id"]]
    # Every tool call of the run carried a token exchanged from the grant of its own step.
    calls = [r for r in await mesh.records("gateway", "tools/call") if r["run_id"] == run["id"]]
    assert len(calls) == 5
    for call in calls:
        assert call["outcome"] == "ok"
        assert call["details"]["grant_id"] == stored[call["details"]["task"]]["grant_id"]


async def test_the_run_record_never_holds_a_grant_a_token_or_a_signature(mesh: RelayMesh) -> None:
    async with mesh.orchestrator(relay_streaming=True) as orchestrator:
        run = await mesh.run(orchestrator)
        fetched = (await mesh.http.get(f"{orchestrator}/v1/runs/{run['id']}")).text
    assert run["status"] == "completed", run
    assert "eyJ" not in fetched


async def test_a_step_the_tool_policy_allows_no_tool_for_fails_and_its_agent_is_never_called(
    mesh: RelayMesh,
) -> None:
    def without_bureau(policy: dict[str, Any]) -> None:
        del policy["clients"]["bureau-agent"]

    async with policy_changed(mesh, mesh.tools_policy, without_bureau):
        tasks_before = await mesh.all_agent_tasks()
        async with mesh.orchestrator() as orchestrator:
            run = await mesh.run(orchestrator)
        tasks_after = await mesh.all_agent_tasks()
    steps = {step["id"]: step for step in run["steps"]}
    assert steps["bureau"]["status"] == "failed"
    assert steps["bureau"]["error"]["reason"] == "policy_denied"
    assert steps["bureau"]["grant"] is None
    assert {steps["sanctions"]["status"], steps["ledger"]["status"]} == {"completed"}
    assert tasks_after["bureau-agent"] == tasks_before["bureau-agent"], "the bureau agent got no task"
    for agent in ("sanctions-agent", "ledger-agent"):
        assert len(tasks_after[agent] - tasks_before[agent]) == 1
    denied = [r for r in await mesh.records("gateway", "a2a.relay") if r["run_id"] == run["id"]]
    assert [(r["outcome"], r["reason"]) for r in denied if r["details"]["agent"] == "bureau-agent"] == [
        ("denied", "policy_denied")
    ]


async def test_an_agent_the_delegation_policy_no_longer_names_is_refused_and_never_called(
    mesh: RelayMesh,
) -> None:
    def without_ledger(policy: dict[str, Any]) -> None:
        del policy["callers"]["orchestrator"]["agents"]["ledger-agent"]

    async with policy_changed(mesh, mesh.delegation_policy, without_ledger):
        tasks_before = await mesh.agent_tasks("ledger-agent")
        async with mesh.orchestrator() as orchestrator:
            run = await mesh.run(orchestrator)
        tasks_after = await mesh.agent_tasks("ledger-agent")
    steps = {step["id"]: step for step in run["steps"]}
    assert (steps["ledger"]["status"], steps["ledger"]["error"]["reason"]) == ("failed", "policy_denied")
    assert tasks_after == tasks_before
    # Restored: the next run delegates to the ledger agent again.
    async with mesh.orchestrator() as orchestrator:
        assert (await mesh.run(orchestrator))["status"] == "completed"


async def test_an_unreachable_gateway_fails_every_step_without_calling_any_agent(mesh: RelayMesh) -> None:
    tasks_before = await mesh.all_agent_tasks()
    closed = f"http://127.0.0.1:{free_port()}"
    async with mesh.orchestrator(gateway_url=closed) as orchestrator:
        run = await mesh.run(orchestrator)
    assert {step["error"]["reason"] for step in run["steps"]} == {"upstream_unavailable"}
    assert await mesh.all_agent_tasks() == tasks_before


async def test_an_orchestrator_the_gateway_does_not_recognise_calls_no_agent(mesh: RelayMesh) -> None:
    tasks_before = await mesh.all_agent_tasks()
    async with mesh.orchestrator(client_secret="not-the-orchestrator-secret-0123") as orchestrator:
        run = await mesh.run(orchestrator)
    assert {step["error"]["reason"] for step in run["steps"]} == {"unauthenticated"}
    assert await mesh.all_agent_tasks() == tasks_before
