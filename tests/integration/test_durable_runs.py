"""Durable runs through real processes: the orchestrator is killed with SIGKILL at chosen points of a run
(`ACCORD_FAULT_KILL_AT`, test-only), restarted, and the run ends as an undisturbed run does, with no step
run twice by its agent. Then two orchestrator replicas on one PostgreSQL database: one is killed mid-run,
the other takes its runs over once their leases expire and finishes them.

Then budgets: a fan-out of 1,000 steps under a budget of 50 agent tasks reaches the agent at most 50 times;
model tokens and their cost, reported by the agent with each answer, priced by the orchestrator, shared
out among the steps still to be sent and stopping the run once spent; a delegation depth beyond the run's
budget is refused. And approval gates on PostgreSQL: two in parallel branches survive a kill -9 while
they wait, one is decided by a person, the other expires to the outcome the workflow names.

A mesh of its own, only what the runs need: registry, gateway (federating no tool server) and
orchestrator as processes. The test agent is built with the agent SDK in this process, registers in the
real registry and accepts only messages the real gateway relay signed; it counts how often each step's
skill actually ran (its own `executions` counter and a per-run witness), so a re-run cannot hide.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
import yaml
from a2a.types import AgentCard
from pydantic import BaseModel

from accord.agent import ToolBox
from accord.agent.executor import SkillExecutor
from accord.agent.settings import AgentSettings
from accord.agent.testing import RunningAgent, running_agent
from accord.mesh import MeshRunner
from accord.span_store import SpanReader, StoredSpan, asyncpg_dsn
from accord.telemetry import COST_USD
from accord.testing.backing_services import require_postgres
from accord.testing.link_faults import cut_connections_to, require_link_cutting
from accord.testing.ports import free_port
from accord.trace_analysis import SpanTree, summarize
from tests.integration.test_workflow_guards import ScratchAgent

WAIT_S = 45.0
PORT_OFFSET = 15000  # ports 23700-23818: below the ephemeral range, where no client port lands
MESH_START_S = 240.0
SERVICES = {"registry", "gateway", "orchestrator"}
FAULT = "ACCORD_FAULT_KILL_AT"
# Long enough that a step is still running at its agent when the orchestrator dies after accepting it.
STEP_DELAY_MS = 600
LEASE_S = 2.0
RELAY_MODE = ("ACCORD_RELAY_TRANSPORT", "ACCORD_RELAY_STREAMING")

WORKFLOW: dict[str, Any] = {
    "name": "durable-fan-in",
    "version": 1,
    "description": "Two parallel steps and one that reads both.",
    "input_schema": {"type": "object", "required": ["tag", "delay_ms"]},
    "steps": [
        {
            "id": "a",
            "skill": "durable-work",
            "input": {"label": "a", "tag": "$input.tag", "delay_ms": "$input.delay_ms"},
        },
        {
            "id": "b",
            "skill": "durable-work",
            "input": {"label": "b", "tag": "$input.tag", "delay_ms": "$input.delay_ms"},
        },
        {
            "id": "c",
            "skill": "durable-sum",
            "input": {"tag": "$input.tag", "a": "$steps.a.value", "b": "$steps.b.value"},
        },
    ],
    "synthesis": "collect",
}


WIDE = 1000
WIDE_WORKFLOW: dict[str, Any] = {
    "name": "durable-wide",
    "version": 1,
    "description": f"{WIDE} parallel steps, with a budget of its own a request may tighten.",
    "input_schema": {"type": "object", "required": ["tag"]},
    "steps": [
        {"id": f"w{i}", "skill": "durable-work", "input": {"label": f"w{i}", "tag": "$input.tag"}}
        for i in range(WIDE)
    ],
    "budget": {"tasks": 200, "wall_s": 120},
    "synthesis": "collect",
}


# Long enough to outlast a kill and restart of the orchestrator on a busy machine.
GATE_EXPIRY_S = 8.0
GATED_WORKFLOW: dict[str, Any] = {
    **WORKFLOW,
    "name": "durable-gated",
    "description": "The fan-in with a person's approval after each parallel step.",
    "approvals": [
        {"id": "check-a", "after": "a"},
        {"id": "check-b", "after": "b", "expires_after_s": GATE_EXPIRY_S, "on_expiry": "approve"},
    ],
}

MODEL_STEPS = ("m1", "m2", "m3")
MODEL_WORKFLOW: dict[str, Any] = {
    "name": "durable-model",
    "version": 1,
    "description": "Three parallel steps that use a model, under a budget of tokens.",
    "input_schema": {"type": "object", "required": ["tag", "tokens"]},
    "steps": [
        {
            "id": step,
            "skill": "model-work",
            "input": {"label": step, "tag": "$input.tag", "tokens": "$input.tokens"},
        }
        for step in MODEL_STEPS
    ],
    "budget": {"tokens": 3000},
    "synthesis": "collect",
}
# The shipped price catalog (deploy/policies/model-prices.yaml), USD per million tokens.
SMALL_CHAT = {"input": 0.15, "output": 0.60}


# --- the test agent -------------------------------------------------------------------------------


class Work(BaseModel):
    label: str
    tag: str
    delay_ms: int = 0


class Worked(BaseModel):
    label: str
    value: int
    confidence: float = 1.0


class ModelWork(BaseModel):
    label: str
    tag: str
    tokens: int


class Sum(BaseModel):
    tag: str
    a: int
    b: int


class Summed(BaseModel):
    total: int
    confidence: float = 1.0


@dataclass
class Witness:
    """How often each (run tag, step) ran at the agent, and which have started."""

    ran: Counter[tuple[str, str]] = field(default_factory=Counter)
    started: dict[str, asyncio.Event] = field(default_factory=dict)
    # The (run tag, step) whose running skill was cancelled by an A2A CancelTask.
    cancelled: set[tuple[str, str]] = field(default_factory=set)
    # The token allowance each (run tag, step) was given.
    allowances: dict[tuple[str, str], int | None] = field(default_factory=dict)

    def began(self, tag: str) -> asyncio.Event:
        return self.started.setdefault(tag, asyncio.Event())


class StreamingScratchAgent(ScratchAgent):
    """A test agent whose card says it streams, so a streaming relay client streams to it."""

    def build_card(self, settings: AgentSettings) -> AgentCard:
        card = super().build_card(settings)
        card.capabilities.streaming = True
        return card


def durable_agent(witness: Witness) -> ScratchAgent:
    agent = StreamingScratchAgent("durable-agent")

    @agent.skill("durable-work")
    async def work(request: Work, _tools: ToolBox) -> Worked:
        witness.ran[(request.tag, request.label)] += 1
        if {label for tag, label in witness.ran if tag == request.tag} >= {"a", "b"}:
            witness.began(request.tag).set()
        try:
            await asyncio.sleep(request.delay_ms / 1000)
        except asyncio.CancelledError:
            witness.cancelled.add((request.tag, request.label))
            raise
        return Worked(label=request.label, value=7 * (ord(request.label) - ord("a") + 1))

    @agent.skill("model-work")
    async def model_work(request: ModelWork, tools: ToolBox) -> Worked:
        """Stands for a skill that calls a language model: it reports the tokens the call took (prompt
        `tokens`, half as many out), as a skill reports what its model's response says it used."""
        witness.ran[(request.tag, request.label)] += 1
        witness.allowances[(request.tag, request.label)] = tools.tokens_left
        tools.report_usage("small-chat", request.tokens, request.tokens // 2)
        return Worked(label=request.label, value=request.tokens)

    @agent.skill("durable-sum")
    async def total(request: Sum, _tools: ToolBox) -> Summed:
        witness.ran[(request.tag, "c")] += 1
        return Summed(total=request.a + request.b)

    return agent


# --- the mesh -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def durable_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshRunner]:
    root = tmp_path_factory.mktemp("durable-runs")
    (root / "workflows").mkdir()
    (root / "workflows" / "durable-fan-in.yaml").write_text(yaml.safe_dump(WORKFLOW))
    (root / "workflows" / "durable-wide.yaml").write_text(yaml.safe_dump(WIDE_WORKFLOW))
    (root / "workflows" / "durable-model.yaml").write_text(yaml.safe_dump(MODEL_WORKFLOW))
    (root / "workflows" / "durable-gated.yaml").write_text(yaml.safe_dump(GATED_WORKFLOW))
    delegation = {"version": 1, "callers": {"orchestrator": {"agents": {"durable-agent": ["*"]}}}}
    (root / "delegation.yaml").write_text(yaml.safe_dump(delegation))
    runner = MeshRunner(
        root / "state",
        port_offset=PORT_OFFSET,
        only=SERVICES,
        extra_env={
            "orchestrator": {"ACCORD_WORKFLOWS_DIR": str(root / "workflows")},
            "gateway": {
                "ACCORD_GATEWAY_DELEGATION_FILE": str(root / "delegation.yaml"),
                "ACCORD_GATEWAY_UPSTREAMS": "{}",
                "ACCORD_GATEWAY_UPSTREAM_SECRETS": "{}",
            },
            "registry": {"ACCORD_REGISTRY_ALLOW_PRIVATE_TARGETS": "true"},
        },
    )
    runner.start(timeout_s=MESH_START_S)
    try:
        yield runner
    finally:
        runner.stop()


@dataclass
class Durable:
    mesh: MeshRunner
    witness: Witness
    agent: RunningAgent

    @property
    def executor(self) -> SkillExecutor:
        executor: SkillExecutor = self.agent.app.state.skill_executor
        return executor


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def durable(durable_mesh: MeshRunner) -> AsyncIterator[Durable]:
    witness = Witness()
    with pytest.MonkeyPatch.context() as env:
        # The test agent signs its card as the mesh's local publisher, which its registry trusts.
        env.setenv("ACCORD_STATE_DIR", str(durable_mesh.state_dir))
        async with running_agent(
            durable_agent(witness),
            durable_mesh.url("gateway"),
            registry_url=durable_mesh.url("registry"),
            state_dir=durable_mesh.state_dir / "test-agents",
        ) as agent:
            async with asyncio.timeout(WAIT_S):
                await agent.app.state.registration.wait()
            yield Durable(durable_mesh, witness, agent)


async def restart(mesh: MeshRunner, name: str, **env: str) -> None:
    """(Re)start one service of the mesh with `env` on top of its usual environment."""
    extra = mesh.extra_env.setdefault(name, {})
    for key in (FAULT, "ACCORD_DATABASE_URL", "ACCORD_RUN_LEASE_S", *RELAY_MODE):
        extra.pop(key, None)
    extra.update(env)
    if name in mesh.services:
        mesh.kill(name)
    await asyncio.to_thread(mesh.start, MESH_START_S)


async def died(mesh: MeshRunner, name: str) -> int | None:
    """Wait for the service to exit by itself (it is not started again with the fault); its exit code."""
    process = mesh.services[name].process
    code = await asyncio.to_thread(process.wait, WAIT_S)
    mesh.kill(name)
    mesh.extra_env[name].pop(FAULT, None)
    return code


def operator_http(mesh: MeshRunner, timeout_s: float, url: str | None = None) -> httpx.AsyncClient:
    """A client of the mesh's orchestrator API (at `url`: another replica of it), as its operator."""
    auth = mesh.operator_auth(*([url] if url else []))
    return httpx.AsyncClient(base_url=url or mesh.url("orchestrator"), auth=auth, timeout=timeout_s)


async def start_run(mesh: MeshRunner, body: dict[str, Any]) -> str | None:
    """Start a run without waiting; None when the orchestrator died before it answered."""
    try:
        async with operator_http(mesh, WAIT_S) as http:
            response = await http.post(f"/v1/workflows/{WORKFLOW['name']}/runs", json=body)
    except httpx.HTTPError:
        return None
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    return run_id


async def run_tagged(mesh: MeshRunner, tag: str, replica: str | None = None) -> dict[str, Any]:
    """The run started with `tag`, once it is no longer running."""
    async with operator_http(mesh, WAIT_S + 10, replica) as http:
        runs = (await http.get("/v1/runs", params={"limit": 100})).json()["runs"]
        [run_id] = [run["id"] for run in runs if run["input"]["tag"] == tag]
        run: dict[str, Any] = (await http.get(f"/v1/runs/{run_id}", params={"wait": WAIT_S})).json()
    return run


def final_state(run: dict[str, Any]) -> dict[str, Any]:
    """What an undisturbed run and a resumed one must agree on."""
    return {
        "status": run["status"],
        "steps": [(s["id"], s["status"], s["agent"], s["output"]) for s in run["steps"]],
        "result": run["result"],
    }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def undisturbed(durable: Durable) -> dict[str, Any]:
    tag = "undisturbed"
    await start_run(durable.mesh, {"tag": tag, "delay_ms": STEP_DELAY_MS})
    run = await run_tagged(durable.mesh, tag)
    assert run["status"] == "completed", run
    assert run["result"]["outputs"]["c"] == {"total": 21, "confidence": 1.0}
    return final_state(run)


# --- kill -9 and restart --------------------------------------------------------------------------


# Each point once, over the relay transports and modes between them (a streamed send shows the agent's
# task in its first event; a unary one returns it at once and is followed by task reads).
KILLS = [
    ("before_dispatch", "JSONRPC", "false"),
    ("after_accepted", "JSONRPC", "false"),
    ("after_accepted", "GRPC", "true"),
    ("mid_stream", "HTTP+JSON", "true"),
    ("after_completed", "HTTP+JSON", "false"),
    ("during_checkpoint_write", "GRPC", "false"),
    ("during_synthesis", "JSONRPC", "true"),
]


@pytest.mark.parametrize(("point", "transport", "streaming"), KILLS)
async def test_a_run_killed_at_any_point_resumes_to_the_same_end_and_no_step_runs_twice(
    durable: Durable, undisturbed: dict[str, Any], point: str, transport: str, streaming: str
) -> None:
    mesh, tag = durable.mesh, f"killed-{point}-{transport}-{streaming}"
    mode = dict(zip(RELAY_MODE, (transport, streaming), strict=True))
    await restart(mesh, "orchestrator", **{FAULT: point}, **mode)
    await start_run(mesh, {"tag": tag, "delay_ms": STEP_DELAY_MS})
    assert await died(mesh, "orchestrator") == -signal.SIGKILL
    ran_before_restart = {label for (t, label) in durable.witness.ran if t == tag}
    await restart(mesh, "orchestrator", **mode)
    run = await run_tagged(mesh, tag)
    assert final_state(run) == undisturbed, run
    assert {label: n for (t, label), n in durable.witness.ran.items() if t == tag} == {"a": 1, "b": 1, "c": 1}
    assert any(note["kind"] == "resume" for note in run["rationale"])
    if point == "before_dispatch":
        assert ran_before_restart == set()
    if point in ("after_accepted", "after_completed"):
        # The steps the agent had when the orchestrator died were followed by their task id, not re-sent.
        reattached = [a for s in run["steps"] for a in s["attempts"] if a.get("reattached")]
        assert reattached, run["steps"]
        assert {a["agent"] for a in reattached} == {"durable-agent"}


async def test_a_step_whose_task_the_restarted_relay_forgot_is_sent_again_and_attaches_at_the_agent(
    durable: Durable, undisturbed: dict[str, Any]
) -> None:
    mesh, tag = durable.mesh, "relay-forgot"
    attached = durable.executor.attached["durable-work"]
    await restart(mesh, "orchestrator", **{FAULT: "after_accepted"})
    await start_run(mesh, {"tag": tag, "delay_ms": STEP_DELAY_MS})
    assert await died(mesh, "orchestrator") == -signal.SIGKILL
    mesh.kill("gateway")  # the relay's register of tasks goes with it
    await restart(mesh, "orchestrator")  # and the gateway, first
    run = await run_tagged(mesh, tag)
    assert final_state(run) == undisturbed, run
    assert {label: n for (t, label), n in durable.witness.ran.items() if t == tag} == {"a": 1, "b": 1, "c": 1}
    # Sent again in a new signed envelope with the same idempotency key: the agent answered from the
    # first delivery (the relay's replay protection let the new envelope through, and only it).
    assert durable.executor.attached["durable-work"] > attached
    resent = [a for s in run["steps"] for a in s["attempts"] if a.get("reattached") is False]
    assert resent, [(s["id"], s["attempts"]) for s in run["steps"]]


# --- a link cut mid-stream ------------------------------------------------------------------------

# Long enough that the link is cut while both parallel steps are still running at the agent.
CUT_DELAY_MS = 2500


def port_of(url: str) -> int:
    port = httpx.URL(url).port
    assert port is not None, url
    return port


@pytest.mark.parametrize(
    ("link", "transport"),
    [
        ("orchestrator-relay", "JSONRPC"),
        ("orchestrator-relay", "HTTP+JSON"),
        ("relay-agent", "JSONRPC"),
        ("relay-agent", "GRPC"),
    ],
)
async def test_a_stream_cut_after_the_agent_accepted_is_followed_by_id_and_no_step_runs_twice(
    durable: Durable, undisturbed: dict[str, Any], link: str, transport: str
) -> None:
    """The connections carrying the steps' streams are reset by the kernel (`ss -K`) while the agent works
    on both parallel steps: each step's task is followed by its id, through the relay, to the answer it
    was going to give anyway, and nothing is sent again or sent elsewhere."""
    require_link_cutting()
    mesh, tag = durable.mesh, f"cut-{link}-{transport}"
    await restart(mesh, "orchestrator", **dict(zip(RELAY_MODE, (transport, "true"), strict=True)))
    await start_run(mesh, {"tag": tag, "delay_ms": CUT_DELAY_MS})
    async with asyncio.timeout(WAIT_S):
        await durable.witness.began(tag).wait()
    await asyncio.sleep(0.3)  # the accepted tasks' first events are through to the orchestrator
    if link == "orchestrator-relay":
        port = port_of(mesh.url("gateway"))
    else:
        settings = durable.agent.settings
        port = settings.grpc_port if transport == "GRPC" else settings.port
    assert cut_connections_to(port) >= 1
    assert not durable.witness.ran[(tag, "c")], "the link was cut after the steps had ended"

    run = await run_tagged(mesh, tag)
    assert final_state(run) == undisturbed, [(s["id"], s.get("error"), s["attempts"]) for s in run["steps"]]
    assert {label: n for (t, label), n in durable.witness.ran.items() if t == tag} == {"a": 1, "b": 1, "c": 1}
    assert not {label for t, label in durable.witness.cancelled if t == tag}
    for step in (s for s in run["steps"] if s["id"] in ("a", "b")):
        assert [a["outcome"] for a in step["attempts"]] == ["answered"], step["attempts"]
        assert step["attempts"][0].get("stream_lost") is True, step["attempts"]


# --- two replicas on PostgreSQL -------------------------------------------------------------------


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    base = require_postgres()
    name = f"durable_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_dsn(base))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.asynccontextmanager
async def second_orchestrator(mesh: MeshRunner, **env: str) -> AsyncIterator[str]:
    """Another orchestrator process beside the mesh's, on ports of its own; its URL."""
    spec = mesh.topology.by_name("orchestrator")
    secrets = mesh._secrets()
    port = free_port()
    environment = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "ACCORD_STATE_DIR": str(mesh.state_dir),
        **mesh.topology.resolve_env(spec, mesh.host, mesh.port_offset, secrets),
        **mesh.extra_env.get("orchestrator", {}),
        "ACCORD_PORT": str(port),
        "ACCORD_GRPC_PORT": str(free_port()),
        # Replicas serve one API, whatever their own address: tokens name that one resource.
        "ACCORD_API_RESOURCE": mesh.url("orchestrator"),
        **env,
    }
    url = f"http://{mesh.host}:{port}"
    process = await asyncio.to_thread(
        _spawn, spec.module, environment, mesh.state_dir / "logs" / "orchestrator-2.log"
    )
    try:
        async with httpx.AsyncClient(timeout=1.0) as http, asyncio.timeout(MESH_START_S):
            while True:
                assert process.poll() is None, "the second orchestrator exited"
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url + "/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait, 5)


def _spawn(module: str, environment: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", module],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


@pytest.mark.postgres
async def test_when_one_of_two_replicas_dies_mid_run_the_other_finishes_its_runs_within_the_lease(
    durable: Durable, undisturbed: dict[str, Any]
) -> None:
    mesh = durable.mesh
    async with postgres_database() as database:
        shared = {"ACCORD_DATABASE_URL": database, "ACCORD_RUN_LEASE_S": str(LEASE_S)}
        await restart(mesh, "orchestrator", **shared)
        try:
            async with second_orchestrator(mesh, **shared) as survivor:
                tags = [f"replica-{i}" for i in range(3)]
                for tag in tags:
                    await start_run(mesh, {"tag": tag, "delay_ms": STEP_DELAY_MS * 2})
                async with asyncio.timeout(WAIT_S):
                    for tag in tags:
                        await durable.witness.began(tag).wait()
                mesh.kill("orchestrator")  # SIGKILL, with every run's first layer in flight
                killed_at = time.monotonic()
                runs = [await run_tagged(mesh, tag, survivor) for tag in tags]
                took = time.monotonic() - killed_at
        finally:
            await restart(mesh, "orchestrator")
    for run in runs:
        assert final_state(run) == undisturbed, run
        assert run["lease"]["owner"] == f"{socket.gethostname()} {survivor}"
    assert took < LEASE_S + 5, f"taken over and finished {took:.1f}s after the kill"
    for tag in tags:
        assert {label: n for (t, label), n in durable.witness.ran.items() if t == tag} == {
            "a": 1,
            "b": 1,
            "c": 1,
        }


async def run_when(
    mesh: MeshRunner, run_id: str, done: Callable[[dict[str, Any]], bool], within_s: float
) -> dict[str, Any]:
    """The run once `done` holds for it (polled through the API)."""
    deadline = time.monotonic() + within_s
    async with operator_http(mesh, WAIT_S) as http:
        while True:
            run: dict[str, Any] = (await http.get(f"/v1/runs/{run_id}")).json()
            if done(run):
                return run
            assert time.monotonic() < deadline, run
            await asyncio.sleep(0.2)


@pytest.mark.postgres
async def test_parallel_approval_gates_survive_a_kill_and_resolve_on_their_own_by_person_and_by_expiry(
    durable: Durable,
) -> None:
    mesh, tag = durable.mesh, f"gated-{uuid.uuid4().hex[:8]}"
    async with postgres_database() as database:
        shared = {"ACCORD_DATABASE_URL": database, "ACCORD_RUN_LEASE_S": str(LEASE_S)}
        await restart(mesh, "orchestrator", **shared)
        try:
            async with operator_http(mesh, WAIT_S) as http:
                started = await http.post(
                    f"/v1/workflows/{GATED_WORKFLOW['name']}/runs", json={"tag": tag, "delay_ms": 0}
                )
            run_id = started.json()["id"]
            both_open = await run_when(mesh, run_id, lambda r: len(r.get("approvals") or {}) == 2, WAIT_S)
            opened_at = time.monotonic()
            assert both_open["status"] == "waiting_approval"
            assert {gate["status"] for gate in both_open["approvals"].values()} == {"pending"}

            mesh.kill("orchestrator")  # SIGKILL while both gates wait
            await restart(mesh, "orchestrator", **shared)
            after = await run_when(mesh, run_id, lambda r: r["status"] != "running", WAIT_S)
            assert after["approvals"]["check-a"]["status"] == "pending"
            if time.monotonic() - opened_at < GATE_EXPIRY_S - 1:
                assert after["approvals"]["check-b"]["status"] == "pending"
            assert (tag, "c") not in durable.witness.ran, "c waits for both gates"

            async with operator_http(mesh, WAIT_S) as http:
                decided = await http.post(
                    f"/v1/runs/{run_id}/approvals/check-a",
                    json={"decision": "approve", "reason": "a checked by hand"},
                )
            assert decided.status_code in (200, 202), decided.text
            final = await run_when(mesh, run_id, lambda r: r["status"] == "completed", GATE_EXPIRY_S + WAIT_S)
        finally:
            await restart(mesh, "orchestrator")

    gates = final["approvals"]
    assert (gates["check-a"]["status"], gates["check-a"]["decided_by"]) == ("approved", "rest:operator")
    assert gates["check-a"]["reason"] == "a checked by hand"
    assert (gates["check-b"]["status"], gates["check-b"]["decided_by"]) == ("approved", "expiry")
    assert final["result"]["outputs"]["c"] == {"total": 21, "confidence": 1.0}
    assert {label: n for (t, label), n in durable.witness.ran.items() if t == tag} == {"a": 1, "b": 1, "c": 1}


async def test_a_fan_out_of_a_thousand_under_a_budget_of_fifty_reaches_the_agent_at_most_fifty_times(
    durable: Durable,
) -> None:
    tag = f"wide-{uuid.uuid4().hex[:8]}"
    async with operator_http(durable.mesh, WAIT_S + 10) as http:
        response = await http.post(
            f"/v1/workflows/{WIDE_WORKFLOW['name']}/runs",
            params={"wait": WAIT_S},
            json={"tag": tag},
            headers={"Accord-Budget": "tasks=50"},  # tighter than the workflow's 200
        )
        loosen = await http.post(
            f"/v1/workflows/{WIDE_WORKFLOW['name']}/runs",
            params={"wait": WAIT_S},
            json={"tag": f"{tag}-bad"},
            headers={"Accord-Budget": "tasks=lots"},
        )
    run = response.json()
    assert response.status_code == 201, run
    ran = sum(n for (t, _label), n in durable.witness.ran.items() if t == tag)
    assert ran <= 50
    assert (run["status"], run["error"]["limit"]) == ("budget_exceeded", "tasks")
    assert run["budget"]["limits"] == {"tasks": 50, "wall_s": 120}
    assert run["budget"]["spent"]["tasks"] <= 50
    assert ran <= run["budget"]["spent"]["tasks"]
    assert sum(1 for step in run["steps"] if step["status"] == "skipped") >= WIDE - 50
    assert (loosen.status_code, loosen.json()["error"]["reason"]) == (422, "invalid_input")
    assert not any(t == f"{tag}-bad" for t, _label in durable.witness.ran)


async def test_when_a_runs_wall_time_is_spent_its_agents_are_told_to_stop_the_steps_under_way(
    durable: Durable,
) -> None:
    tag = f"stopped-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    async with operator_http(durable.mesh, WAIT_S + 10) as http:
        response = await http.post(
            f"/v1/workflows/{WORKFLOW['name']}/runs",
            params={"wait": WAIT_S},
            json={"tag": tag, "delay_ms": 20_000},
            headers={"Accord-Budget": "wall_s=1.5"},
        )
    run = response.json()
    assert (response.status_code, run["status"], run["error"]["limit"]) == (201, "budget_exceeded", "wall_s")
    assert time.monotonic() - started < 10, "the run did not wait for its slow steps"
    # Both running skills were cancelled at the agent (A2A CancelTask through the relay), not left to run.
    deadline = time.monotonic() + 10
    while durable.witness.cancelled & {(tag, "a"), (tag, "b")} != {(tag, "a"), (tag, "b")}:
        assert time.monotonic() < deadline, durable.witness.cancelled
        await asyncio.sleep(0.1)
    assert (tag, "c") not in durable.witness.ran


# --- model tokens and cost ------------------------------------------------------------------------


async def run_model_work(
    durable: Durable, tokens: int, budget: str | None = None
) -> tuple[str, dict[str, Any]]:
    tag = f"model-{uuid.uuid4().hex[:8]}"
    async with operator_http(durable.mesh, WAIT_S + 10) as http:
        response = await http.post(
            f"/v1/workflows/{MODEL_WORKFLOW['name']}/runs",
            params={"wait": WAIT_S},
            json={"tag": tag, "tokens": tokens},
            headers={"Accord-Budget": budget} if budget else {},
        )
    assert response.status_code == 201, response.text
    return tag, response.json()


async def priced_spans(mesh: MeshRunner, run_id: str) -> list[StoredSpan]:
    """The run's spans, once the orchestrator's priced `invoke_agent` spans and its run span are flushed."""
    reader = SpanReader(mesh.state_dir)
    deadline = time.monotonic() + WAIT_S
    while True:
        spans = [s for trace in await reader.trace_ids_for_run(run_id) for s in await reader.trace(trace)]
        priced = [s for s in spans if s.name.startswith("invoke_agent") and COST_USD in s.attributes]
        ran = [s for s in spans if s.name == f"run {MODEL_WORKFLOW['name']}"]
        if (len(priced) >= len(MODEL_STEPS) and ran) or time.monotonic() > deadline:
            return spans
        await asyncio.sleep(0.2)


def small_chat_cost(input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * SMALL_CHAT["input"] + output_tokens * SMALL_CHAT["output"]) / 1_000_000


async def test_model_tokens_are_shared_out_reported_priced_and_recorded_per_step_and_run(
    durable: Durable,
) -> None:
    tag, run = await run_model_work(durable, 400)

    assert run["status"] == "completed", run
    # 3,000 tokens among three steps still to be sent: an even share each, none of it spent yet.
    assert sorted(durable.witness.allowances[(tag, step)] or 0 for step in MODEL_STEPS) == [1000] * 3
    for step in run["steps"]:
        assert step["usage"] == {
            "models": {"small-chat": {"input_tokens": 400, "output_tokens": 200}},
            "input_tokens": 400,
            "output_tokens": 200,
            "cost": pytest.approx(small_chat_cost(400, 200)),
        }
    spent = run["budget"]["spent"]
    assert (spent["input_tokens"], spent["output_tokens"], spent["tokens"]) == (1200, 600, 1800)
    assert spent["cost"] == pytest.approx(small_chat_cost(1200, 600))
    assert run["budget"]["exceeded"] is None
    # Priced on the orchestrator's span of each agent call, so `accord trace` and `accord runs` add it up;
    # the run's span says how much of its tightest limit it used.
    spans = await priced_spans(durable.mesh, run["id"])
    costs = [float(s.attributes[COST_USD]) for s in spans if COST_USD in s.attributes]
    assert costs == pytest.approx([small_chat_cost(400, 200)] * 3)
    summary = summarize(SpanTree(spans))
    assert summary["totals"]["cost_usd"] == pytest.approx(small_chat_cost(1200, 600))
    assert (summary["totals"]["input_tokens"], summary["totals"]["output_tokens"]) == (1200, 600)
    assert summary["totals"]["budget"] == {"used": 1800.0, "allowed": 3000.0, "unit": "tokens"}


async def test_a_step_that_needs_more_than_its_share_of_tokens_stops_the_run_with_what_was_spent(
    durable: Durable,
) -> None:
    _tag, run = await run_model_work(durable, 800)  # 1,200 tokens a step, against shares of 1,000

    assert (run["status"], run["error"]["reason"], run["error"]["limit"]) == (
        "budget_exceeded",
        "budget_exceeded",
        "tokens",
    )
    assert run["budget"]["exceeded"] == "tokens"
    failed = [step for step in run["steps"] if step["status"] == "failed"]
    assert failed
    assert all(step["error"]["reason"] == "budget_exceeded" for step in failed)
    # What the agent spent before it was stopped is counted, priced and kept with the run.
    reported = [step["usage"] for step in run["steps"] if step["usage"]]
    assert reported
    assert all(u["input_tokens"] == 800 and u["output_tokens"] == 400 for u in reported)
    spent = run["budget"]["spent"]
    assert spent["tokens"] == 1200 * len(reported)
    assert spent["cost"] == pytest.approx(small_chat_cost(800 * len(reported), 400 * len(reported)))


async def test_a_cost_budget_from_the_request_stops_the_run_once_its_dollars_are_spent(
    durable: Durable,
) -> None:
    # Each step costs $0.00018: the third answer takes the run past $0.0005.
    tag, run = await run_model_work(durable, 400, budget="cost=0.0005")

    assert (run["status"], run["error"]["limit"]) == ("budget_exceeded", "cost")
    assert run["budget"]["limits"] == {"tokens": 3000, "cost": 0.0005}
    assert run["budget"]["spent"]["cost"] == pytest.approx(small_chat_cost(1200, 600))
    assert sum(n for (t, _label), n in durable.witness.ran.items() if t == tag) == 3


async def test_a_request_deeper_than_its_budget_allows_is_refused_before_anything_runs(
    durable: Durable,
) -> None:
    tag = f"deep-{uuid.uuid4().hex[:8]}"
    body = {"tag": tag, "tokens": 1}
    async with operator_http(durable.mesh, WAIT_S) as http:
        runs_before = len((await http.get("/v1/runs", params={"limit": 500})).json()["runs"])
        allowed = await http.post(
            f"/v1/workflows/{MODEL_WORKFLOW['name']}/runs",
            params={"wait": WAIT_S},
            json=body,
            headers={"Accord-Budget": "depth=0"},  # a caller's own request is depth 0
        )
        assert allowed.status_code == 201, allowed.text
        assert allowed.json()["budget"]["limits"]["depth"] == 0
        runs_after = len((await http.get("/v1/runs", params={"limit": 500})).json()["runs"])
    assert runs_after == runs_before + 1
