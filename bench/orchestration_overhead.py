"""What the orchestrator costs a fan-out: a workflow of N parallel steps vs a bare `asyncio.gather` of the
same N A2A calls, in the same run, for N = 5, 50 and 200.

Each of the N agents is an agent-SDK specialist with a skill of its own (`work-<i>`) doing a fixed amount
of simulated work (`ACCORD_BENCH_WORK_MS`, default 250 ms) and reporting how long that took it. The
registry and the gateway run as processes (`accord.mesh`, only those two); the agents run in one child
process on loopback; the orchestrator side runs here, assembled by `orchestrator.app.Orchestrator`: the
run service, the engine, the dispatcher (discovery by card through the registry, the relay, reply
signature checks, contract validation) and the run store (SQLite). Every call, orchestrated or bare, goes
through the gateway's A2A relay, which authenticates it, checks delegation, signs it for the agent, and
signs the reply; the agents verify every message.

Overhead = wall time of the run - the slowest agent's own work time. The bare gather sends the same
relayed messages with the same token to the same agents (resolved beforehand) and reads the replies
without checking them; the orchestrated run adds discovery, reply verification, contract validation, the
run record, the rationale and synthesis. Each figure is the median of `ACCORD_BENCH_REPEATS` runs (default
5) after a warm-up, the two paths alternating. Targets: orchestration overhead <= 10 ms at 5, <= 60 ms at
50; 200 agents within 1.5x the slowest agent's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from a2a.client import ClientCallContext
from a2a.types import AgentCard, SendMessageRequest
from pydantic import BaseModel, Field, SecretStr

from accord.agent import Agent, ToolBox
from accord.agent.settings import AgentSettings
from accord.agent.testing import serving
from accord.cards import build_card
from accord.mesh import MeshRunner
from accord.payloads import artifact_data, skill_request, task_result
from accord.registry_client import RegisteredAgent, RegistryClient
from accord.testing.ports import free_port
from accord.topology import load_topology
from bench._process_cpu import CpuMeter

FANOUTS = tuple(int(n) for n in os.environ.get("ACCORD_BENCH_FANOUTS", "5,50,200").split(","))
WORK_MS = float(os.environ.get("ACCORD_BENCH_WORK_MS", "250"))
REPEATS = int(os.environ.get("ACCORD_BENCH_REPEATS", "5"))
PORT_OFFSET = int(os.environ.get("ACCORD_BENCH_PORT_OFFSET", "13000"))
TARGETS_MS = {5: 10.0, 50: 60.0}
TARGET_RATIO_200 = 1.5
HOST = "127.0.0.1"
STEP_TIMEOUT_S = 60.0


# --- the agents (child process) -------------------------------------------------------------------------


class WorkInput(BaseModel):
    item: int = Field(ge=0)


class WorkOutput(BaseModel):
    item: int
    worked_ms: float = Field(ge=0, description="The agent's own time on the work")
    confidence: float = Field(ge=0, le=1)


class BenchAgent(Agent):
    """An SDK agent whose card source is built here rather than read from `agent-cards/`."""

    def build_card(self, settings: AgentSettings) -> AgentCard:
        skills = [
            {"id": skill, "name": skill, "description": "fixed simulated work", "tags": ["bench"]}
            for skill in self.skills
        ]
        source = {
            "name": self.name,
            "description": "benchmark agent",
            "version": "1.0.0",
            "capabilities": {"streaming": True},
            "defaultInputModes": ["application/json"],
            "defaultOutputModes": ["application/json"],
            "skills": skills,
        }
        return build_card(source, settings.base_url, None, self.skill_schemas())


def agent_name(index: int) -> str:
    return f"bench-agent-{index}"


def bench_agent(index: int, work_s: float) -> BenchAgent:
    agent = BenchAgent(agent_name(index))

    @agent.skill(f"work-{index}")
    async def work(request: WorkInput, _tools: ToolBox) -> WorkOutput:
        started = time.perf_counter()
        await asyncio.sleep(work_s)
        return WorkOutput(item=request.item, worked_ms=(time.perf_counter() - started) * 1000, confidence=1.0)

    return agent


async def serve_agents(
    count: int, work_ms: float, gateway_url: str, registry_url: str, state_dir: Path
) -> None:
    """`count` agents, registered; prints one JSON line when all are, then runs until stdin closes."""
    os.environ["ACCORD_STATE_DIR"] = str(state_dir)  # cards are signed as the mesh's local publisher
    async with contextlib.AsyncExitStack() as stack:
        card_urls = []
        for index in range(count):
            settings = AgentSettings(
                host=HOST,
                port=free_port(HOST),
                grpc_port=free_port(HOST),
                gateway_url=gateway_url,
                client_id=agent_name(index),
                # Never used: the steps call no tool, so no grant is ever exchanged.
                client_secret=SecretStr(secrets.token_urlsafe(16)),
                state_dir=state_dir / "bench-agents",
            )
            app = bench_agent(index, work_ms / 1000).create_app(settings)
            await stack.enter_async_context(serving(app, HOST, settings.port))
            card_urls.append(settings.card_url)
        # One at a time: registration is not what is measured.
        async with RegistryClient(registry_url) as client:
            for card_url in card_urls:
                await client.register(card_url)
        print(json.dumps({"agents": count, "pid": os.getpid()}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# --- the measurement (this process) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    wall_ms: float
    slowest_agent_ms: float
    # Orchestrated runs: the longest relayed call as the dispatcher timed it (relay + agent), so that
    # wall - slowest_call is what the orchestrator itself added (engine, discovery, checks, record).
    slowest_call_ms: float = 0.0
    # CPU ms per step each process spent on the run (gateway, agents, this process), where it can be read.
    cpu_ms_per_step: dict[str, float] = field(default_factory=dict)

    @property
    def overhead_ms(self) -> float:
        return self.wall_ms - self.slowest_agent_ms

    @property
    def ratio(self) -> float:
        return self.wall_ms / self.slowest_agent_ms


@contextlib.contextmanager
def mesh(root: Path, count: int) -> Iterator[MeshRunner]:
    """The registry, the gateway and its tool servers as processes; the relay may deliver to the bench
    agents."""
    policy = root / "delegation.yaml"
    agents = {agent_name(i): ["*"] for i in range(count)}
    policy.write_text(yaml.safe_dump({"version": 1, "callers": {"orchestrator": {"agents": agents}}}))
    runner = MeshRunner(
        root / "mesh",
        port_offset=PORT_OFFSET,
        # The tool servers idle: the gateway is ready only once every upstream it federates is.
        only={"registry", "gateway", *(s.name for s in load_topology().services if s.kind == "tools")},
        extra_env={
            "gateway": {"ACCORD_GATEWAY_DELEGATION_FILE": str(policy)},
            "registry": {"ACCORD_REGISTRY_ALLOW_PRIVATE_TARGETS": "true"},
        },
    )
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


@contextlib.contextmanager
def agents_process(count: int, runner: MeshRunner) -> Iterator[dict[str, Any]]:
    command = [
        sys.executable,
        "-m",
        "bench.orchestration_overhead",
        str(count),
        str(WORK_MS),
        runner.url("gateway"),
        runner.url("registry"),
        str(runner.state_dir),
    ]
    process = subprocess.Popen(  # noqa: S603
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the agents process exited with {process.wait(10)}")
        yield json.loads(line)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def fan_out(count: int) -> Any:
    from orchestrator.workflows import WorkflowSpec

    return WorkflowSpec.model_validate(
        {
            "name": f"fan-out-{count}",
            "version": 1,
            "description": f"{count} agents in parallel",
            "input_schema": {"type": "object"},
            "steps": [
                {"id": f"s{i}", "skill": f"work-{i}", "input": {"item": i}, "timeout_s": STEP_TIMEOUT_S}
                for i in range(count)
            ],
            "synthesis": "collect",
        }
    )


class Sides:
    """The orchestrator, assembled as the service assembles it, and the bare calls beside it."""

    def __init__(self, runner: MeshRunner, state_dir: Path) -> None:
        from orchestrator.app import Orchestrator
        from orchestrator.settings import OrchestratorSettings

        secret = json.loads((runner.state_dir / "secrets.json").read_text())["orchestrator-client"]
        (state_dir / "workflows").mkdir(parents=True)
        settings = OrchestratorSettings(
            host=HOST,
            port=free_port(HOST),
            grpc_port=free_port(HOST),
            registry_url=runner.url("registry"),
            gateway_url=runner.url("gateway"),
            client_id="orchestrator",
            client_secret=SecretStr(secret),
            state_dir=state_dir,
            workflows_dir=state_dir / "workflows",
            step_timeout_s=STEP_TIMEOUT_S,
        )
        self.orchestrator = Orchestrator(settings)
        self.relay = self.orchestrator._relay_link()  # the bare calls' own link: same token, same relay
        self.agents: dict[int, RegisteredAgent] = {}

    async def start(self, count: int) -> None:
        await self.orchestrator.store.initialize()
        await self.orchestrator.audit.initialize()
        for index in range(count):
            [agent] = await self.orchestrator.registry.discover(skill=f"work-{index}")
            self.agents[index] = agent

    async def orchestrated(self, count: int) -> Sample:
        from orchestrator.runs import RunService

        spec = fan_out(count)
        o = self.orchestrator
        runs = RunService({spec.name: spec}, o.dispatcher, o.store, o.audit)
        started = time.perf_counter()
        run = await runs.run(spec, {}, "bench")
        wall_ms = (time.perf_counter() - started) * 1000
        failed = [s for s in run["steps"] if s["status"] != "completed"][:3]
        if run["status"] != "completed" or failed:
            raise RuntimeError(f"fan-out of {count} did not complete: {failed}")
        worked = max(s["output"]["worked_ms"] for s in run["steps"])
        return Sample(wall_ms, worked, max(s["latency_ms"] for s in run["steps"]))

    async def bare_call(self, index: int, run_id: str, bearer: str) -> float:
        assert self.relay is not None
        client = await self.relay.client_for(self.agents[index])
        message = skill_request(
            f"work-{index}",
            {"item": index},
            wf=run_id,
            task=f"s{index}",
            deadline=time.time() + STEP_TIMEOUT_S,
        )
        context = ClientCallContext(service_parameters={"authorization": f"Bearer {bearer}"})
        # Streamed as the orchestrator's steps are (the agents' cards say they can): the result arrives as
        # the task's artifact, or in the task itself.
        async for event in client.send_message(SendMessageRequest(message=message), context=context):
            kind = event.WhichOneof("payload")
            output = task_result(event.task) if kind == "task" else None
            if kind == "artifact_update":
                output = artifact_data(event.artifact_update.artifact)
            if output is not None:
                return float(output["worked_ms"])
        raise RuntimeError(f"agent {index} answered without a result")

    async def bare(self, count: int) -> Sample:
        assert self.relay is not None
        started = time.perf_counter()
        bearer = (await self.relay.token()).token
        run_id = str(uuid.uuid4())
        worked = await asyncio.gather(*(self.bare_call(index, run_id, bearer) for index in range(count)))
        return Sample((time.perf_counter() - started) * 1000, max(worked))

    async def aclose(self) -> None:
        if self.relay is not None:
            await self.relay.aclose()
        o = self.orchestrator
        await o.dispatcher.aclose()
        await o.registry.aclose()
        if o.gateway_keys is not None:
            await o.gateway_keys.aclose()
        await o.engine.dispose()


@contextlib.asynccontextmanager
async def sides(runner: MeshRunner, count: int, state_dir: Path) -> AsyncIterator[Sides]:
    both = Sides(runner, state_dir)
    try:
        await both.start(count)
        yield both
    finally:
        await both.aclose()


async def metered(meter: CpuMeter, count: int, side: Awaitable[Sample]) -> Sample:
    meter.start()
    sample = await side
    return replace(sample, cpu_ms_per_step=meter.per(count))


def mean_cpu(side: str, samples: list[Sample]) -> dict[str, float]:
    """`<side>_cpu_<process>`: the CPU ms per step of each process over all the runs (the kernel counts
    CPU time in 10 ms ticks, too coarse for one run of a few steps)."""
    return {
        f"{side}_cpu_{name}": statistics.fmean(s.cpu_ms_per_step[name] for s in samples)
        for name in samples[0].cpu_ms_per_step
    }


async def measure(
    runner: MeshRunner, state_dir: Path, agents_pid: int, echo: Callable[[str], None]
) -> dict[int, dict[str, float]]:
    figures: dict[int, dict[str, float]] = {}
    meter = CpuMeter(
        {"gateway": runner.services["gateway"].process.pid, "agents": agents_pid, "orchestrator": os.getpid()}
    )
    async with sides(runner, max(FANOUTS), state_dir) as both:
        for count in FANOUTS:
            await both.orchestrated(count)  # warm: connections, clients, tokens, SQLite pages
            await both.bare(count)
            runs: list[Sample] = []
            gathers: list[Sample] = []
            for repeat in range(REPEATS):
                if repeat % 2 == 0:
                    runs.append(await metered(meter, count, both.orchestrated(count)))
                    gathers.append(await metered(meter, count, both.bare(count)))
                else:
                    gathers.append(await metered(meter, count, both.bare(count)))
                    runs.append(await metered(meter, count, both.orchestrated(count)))
            figures[count] = {
                "orchestrated_wall_ms": statistics.median(s.wall_ms for s in runs),
                "orchestrated_overhead_ms": statistics.median(s.overhead_ms for s in runs),
                "gather_wall_ms": statistics.median(s.wall_ms for s in gathers),
                "gather_overhead_ms": statistics.median(s.overhead_ms for s in gathers),
                "slowest_agent_ms": statistics.median(s.slowest_agent_ms for s in runs),
                "orchestrated_ratio": statistics.median(s.ratio for s in runs),
                "orchestrator_own_ms": statistics.median(s.wall_ms - s.slowest_call_ms for s in runs),
                **mean_cpu("orchestrated", runs),
                **mean_cpu("gather", gathers),
            }
            echo(report_line(count, figures[count]))
    return figures


def report_line(count: int, f: dict[str, float]) -> str:
    line = (
        f"fan-out {count:>3}: orchestrated wall {f['orchestrated_wall_ms']:7.1f} ms, overhead "
        f"{f['orchestrated_overhead_ms']:6.1f} ms | bare gather wall {f['gather_wall_ms']:7.1f} ms, "
        f"overhead {f['gather_overhead_ms']:6.1f} ms | orchestration adds "
        f"{f['orchestrated_overhead_ms'] - f['gather_overhead_ms']:6.1f} ms | orchestrator's own "
        f"(wall - slowest relayed call) {f['orchestrator_own_ms']:6.1f} ms | slowest agent "
        f"{f['slowest_agent_ms']:.1f} ms"
    )
    for side in ("orchestrated", "gather"):
        cpu = {k.removeprefix(f"{side}_cpu_"): v for k, v in f.items() if k.startswith(f"{side}_cpu_")}
        line += f" | {side} CPU ms/step: " + ", ".join(f"{name} {ms:.1f}" for name, ms in cpu.items())
    if count in TARGETS_MS:
        ok = f["orchestrated_overhead_ms"] <= TARGETS_MS[count]
        line += f" | target <= {TARGETS_MS[count]:.0f} ms: {'met' if ok else 'MISSED'}"
    if count == 200:
        ok = f["orchestrated_ratio"] <= TARGET_RATIO_200
        verdict = "met" if ok else "MISSED"
        line += f" | {f['orchestrated_ratio']:.2f}x slowest (target <= {TARGET_RATIO_200}x): {verdict}"
    return line


def run(echo: Callable[[str], None]) -> None:
    echo(f"{REPEATS} runs per figure (median), {WORK_MS:.0f} ms of work per agent, fan-outs {FANOUTS}")
    with tempfile.TemporaryDirectory(prefix="accord-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        with mesh(root, max(FANOUTS)) as runner, agents_process(max(FANOUTS), runner) as ready:
            took = time.perf_counter() - started
            echo(f"registry, gateway and {ready['agents']} agents ready in {took:.1f} s")
            asyncio.run(measure(runner, root / "orchestrator", ready["pid"], echo))


if __name__ == "__main__":
    count, work_ms, gateway_url, registry_url, state_dir = sys.argv[1:6]
    asyncio.run(serve_agents(int(count), float(work_ms), gateway_url, registry_url, Path(state_dir)))
