"""Durable runs around the engine: the checkpoint a run leaves, resuming it in another process without
re-running settled steps, re-attaching an in-flight step to its agent's task, and run leases between
replicas. Real SQLite and PostgreSQL; the agents are the engine tests' in-process stand-in (the same
behaviour through real processes, with `kill -9`, is in `tests/integration/test_durable_runs.py`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from accord.audit import AuditLog
from accord.span_store import asyncpg_dsn
from accord.storage import create_engine
from accord.testing.backing_services import require_postgres
from orchestrator.dispatch import StepOutcome
from orchestrator.run_store import LeaseLost, RunStore
from orchestrator.runs import RunService
from orchestrator.step_grants import RemoteTask, StepRef
from orchestrator.workflows import WorkflowSpec
from tests.unit.test_orchestrator_engine import StandInDispatcher, answer

WAIT_S = 5.0
LEASE_S = 30.0


@dataclass
class Backend:
    store: RunStore
    audit: AuditLog


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        url, admin, name = f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}", None, ""
    else:
        base = require_postgres()
        name = f"durable_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(asyncpg_dsn(base))
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = base.rsplit("/", 1)[0] + "/" + name
    engine = create_engine(url)
    store, audit = RunStore(engine), AuditLog(engine, "orchestrator")
    await store.initialize()
    await audit.initialize()
    try:
        yield Backend(store, audit)
    finally:
        await engine.dispose()
        if admin is not None:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.close()


def fan_in() -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "fan-in",
            "version": 1,
            "description": "two parallel steps and one that reads both",
            "input_schema": {"type": "object"},
            "steps": [
                {"id": "a", "skill": "work"},
                {"id": "b", "skill": "work"},
                {"id": "c", "skill": "sum", "input": {"a": "$steps.a.v", "b": "$steps.b.v"}},
            ],
            "synthesis": "collect",
        }
    )


@dataclass
class RecordingDispatcher(StandInDispatcher):
    """The stand-in agents, remembering each call's step reference and announcing each task accepted."""

    refs: list[StepRef] = field(default_factory=list)

    async def dispatch(
        self, skill: str, data: dict[str, Any], step: StepRef, timeout_s: float | None = None
    ) -> StepOutcome:
        self.refs.append(step)
        if step.on_accepted is not None:
            await step.on_accepted(RemoteTask(f"{skill}-agent", f"task-{step.step_id}", "working"))
        return await super().dispatch(skill, data, step, timeout_s)


def agents() -> RecordingDispatcher:
    return RecordingDispatcher({"work": answer({"v": 1}), "sum": answer({"total": 2})})


def service(backend: Backend, dispatcher: StandInDispatcher, owner: str) -> RunService:
    spec = fan_in()
    return RunService(
        {spec.name: spec}, dispatcher, backend.store, backend.audit, owner=owner, lease_s=LEASE_S
    )


async def left_running(backend: Backend, owner: str, lease_expires_at: float) -> str:
    """A run as a process killed mid-run leaves it: `a` settled, `b` accepted by its agent, `c` waiting."""
    run_id = str(uuid.uuid4())
    steps = [
        {"id": "a", "skill": "work", "status": "completed", "agent": "work-agent", "output": {"v": 1}},
        {
            "id": "b",
            "skill": "work",
            "status": "running",
            "started_at": time.time(),
            "agent": "work-agent",
            "task_id": "task-b-remote",
            "inflight": {
                "task": "b",
                "try": 1,
                "key": f"{run_id}:b:1",
                "agent": "work-agent",
                "task_id": "task-b-remote",
                "state": "working",
            },
        },
        {"id": "c", "skill": "sum", "status": "pending"},
    ]
    await backend.store.create(
        {
            "id": run_id,
            "workflow": "fan-in",
            "status": "running",
            "actor": "test",
            "input": {},
            "steps": steps,
            "created_at": time.time(),
            "delegation_depth": 0,
            "conflicts": [],
            "rationale": [],
            "owner": owner,
            "lease_expires_at": lease_expires_at,
        }
    )
    return run_id


async def settled(runs: RunService, run_id: str) -> dict[str, Any]:
    run = await runs.wait(run_id, WAIT_S)
    assert run["status"] != "running", run
    return run


# --- the checkpoint -------------------------------------------------------------------------------------


async def test_each_step_is_recorded_with_its_idempotency_key_and_agent_task_before_its_result(
    backend: Backend,
) -> None:
    seen: dict[str, Any] = {}
    release = asyncio.Event()

    async def held(_data: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {"v": 1}

    dispatcher = agents()
    dispatcher.handlers["work"] = held
    runs = service(backend, dispatcher, "replica-a")
    run_id = await runs.start(fan_in(), {}, "test")
    async with asyncio.timeout(WAIT_S):
        while not seen:
            run = await runs.get(run_id)
            inflight = {s["id"]: s.get("inflight") for s in run["steps"] if s["status"] == "running"}
            if set(inflight) == {"a", "b"} and all(i and i.get("task_id") for i in inflight.values()):
                seen = inflight
            await asyncio.sleep(0.02)
    release.set()
    run = await settled(runs, run_id)
    assert seen["a"] == {
        "task": "a",
        "try": 1,
        "key": f"{run_id}:a:1",
        "agent": "work-agent",
        "task_id": "task-a",
        "state": "working",
    }
    assert [ref.key for ref in dispatcher.refs] == [f"{run_id}:{s}:1" for s in ("a", "b", "c")]
    assert run["status"] == "completed"
    assert all(step["inflight"] is None for step in run["steps"]), "a settled step has nothing in flight"
    assert run["lease"]["owner"] == "replica-a"


# --- resuming -------------------------------------------------------------------------------------------


async def test_a_resumed_run_reattaches_its_in_flight_step_and_never_reruns_a_settled_one(
    backend: Backend,
) -> None:
    run_id = await left_running(backend, "replica-a", lease_expires_at=time.time() - 1)
    dispatcher = agents()
    runs = service(backend, dispatcher, "replica-b")
    assert await runs.take_over() == [run_id]
    run = await settled(runs, run_id)
    assert run["status"] == "completed", run
    assert [ref.step_id for ref in dispatcher.refs] == ["b", "c"], "a was settled: never sent again"
    resumed = dispatcher.refs[0]
    assert resumed.resume == RemoteTask("work-agent", "task-b-remote", "working")
    assert resumed.key == f"{run_id}:b:1", "the same idempotency key as the first delivery"
    assert dispatcher.refs[1].resume is None
    assert run["rationale"][0]["kind"] == "resume"
    assert run["lease"]["owner"] == "replica-b"
    assert run["result"]["outputs"]["a"] == {"v": 1}


async def test_a_restarted_replica_resumes_its_own_runs_at_once_and_others_only_once_their_lease_expires(
    backend: Backend,
) -> None:
    own = await left_running(backend, "replica-a", lease_expires_at=time.time() + LEASE_S)
    foreign = await left_running(backend, "replica-b", lease_expires_at=time.time() + LEASE_S)
    runs = service(backend, agents(), "replica-a")
    assert await runs.take_over() == [own]
    assert (await settled(runs, own))["status"] == "completed"
    assert (await runs.get(foreign))["status"] == "running", "replica-b's lease still holds"
    assert await runs.take_over() == []


# --- leases ---------------------------------------------------------------------------------------------


async def test_of_replicas_racing_for_an_expired_lease_exactly_one_claims_the_run(backend: Backend) -> None:
    run_id = await left_running(backend, "dead", lease_expires_at=time.time() - 1)
    now = time.time()
    claims = await asyncio.gather(
        *(backend.store.claim(run_id, f"replica-{i}", now, LEASE_S) for i in range(8))
    )
    assert sorted(claims) == [False] * 7 + [True]
    winner = f"replica-{claims.index(True)}"
    assert (await backend.store.get(run_id) or {})["lease"]["owner"] == winner
    assert not await backend.store.claim(run_id, "late", time.time(), LEASE_S), "the new lease holds"


async def test_a_replica_that_lost_its_lease_can_no_longer_write_the_run(backend: Backend) -> None:
    run_id = await left_running(backend, "replica-a", lease_expires_at=time.time() - 1)
    assert await backend.store.claim(run_id, "replica-b", time.time(), LEASE_S)
    with pytest.raises(LeaseLost):
        await backend.store.update(run_id, fence="replica-a", status="completed")
    assert await backend.store.renew([run_id], "replica-a", time.time() + LEASE_S) == {run_id}
    assert await backend.store.renew([run_id], "replica-b", time.time() + LEASE_S) == set()
    assert (await backend.store.get(run_id) or {})["status"] == "running"


async def test_a_replica_whose_run_was_taken_over_stops_it_without_writing_again(backend: Backend) -> None:
    release = asyncio.Event()

    async def held(_data: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {"v": 1}

    dispatcher = agents()
    dispatcher.handlers["work"] = held
    runs = service(backend, dispatcher, "replica-a")
    run_id = await runs.start(fan_in(), {}, "test")
    assert await backend.store.claim(run_id, "replica-b", time.time() + LEASE_S * 2, LEASE_S)
    await runs.renew_leases()
    release.set()
    run = await runs.wait(run_id, WAIT_S)  # returns once this replica's execution has stopped
    assert (run["status"], run["lease"]["owner"]) == ("running", "replica-b")
    assert [ref.step_id for ref in dispatcher.refs] == ["a", "b"], "c was never sent by the old owner"


class CountingStore(RunStore):
    """Counts the writes made after `mark`, and what each of them recorded as completed."""

    marked = False
    completed_per_write: list[int] = []

    async def update(self, run_id: str, fence: str | None = None, **fields: Any) -> None:
        if self.marked and "steps" in fields:
            done = sum(1 for step in fields["steps"] if step["status"] == "completed")
            self.completed_per_write.append(done)
        await super().update(run_id, fence, **fields)


async def test_a_fan_out_layer_that_completes_together_is_checkpointed_in_one_write(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}")
    store = CountingStore(engine)
    store.completed_per_write = []
    audit = AuditLog(engine, "orchestrator")
    await store.initialize()
    await audit.initialize()
    width = 50
    spec = WorkflowSpec.model_validate(
        {
            "name": "wide",
            "version": 1,
            "description": "d",
            "input_schema": {"type": "object"},
            "steps": [{"id": f"s{i}", "skill": "work"} for i in range(width)],
            "synthesis": "collect",
        }
    )
    release, all_in = asyncio.Event(), asyncio.Event()
    accepted = 0

    async def held(_data: dict[str, Any]) -> dict[str, Any]:
        nonlocal accepted
        accepted += 1
        if accepted == width:
            all_in.set()
        await release.wait()
        return {"v": 1}

    runs = RunService({"wide": spec}, RecordingDispatcher({"work": held}), store, audit, owner="replica-a")
    try:
        run_id = await runs.start(spec, {}, "test")
        async with asyncio.timeout(WAIT_S):
            await all_in.wait()
            await asyncio.sleep(0.3)  # every acceptance checkpointed
            store.marked = True
            release.set()
            run = await settled(runs, run_id)
    finally:
        await engine.dispose()
    assert run["status"] == "completed"
    assert store.completed_per_write[-1] == width
    assert len(store.completed_per_write) <= 2, store.completed_per_write


async def test_a_replica_that_stops_hands_its_running_runs_over_at_once(backend: Backend) -> None:
    both_sent, never = asyncio.Event(), asyncio.Event()

    async def held(_data: dict[str, Any]) -> dict[str, Any]:
        if len(stopping.refs) == 2:
            both_sent.set()
        await never.wait()
        return {"v": 1}

    stopping = agents()
    stopping.handlers["work"] = held
    first = service(backend, stopping, "replica-a")
    run_id = await first.start(fan_in(), {}, "test")
    async with asyncio.timeout(WAIT_S):
        await both_sent.wait()
    await first.aclose()
    second = service(backend, agents(), "replica-b")
    assert await second.take_over() == [run_id], "no wait for the lease to expire"
    run = await settled(second, run_id)
    assert (run["status"], run["lease"]["owner"]) == ("completed", "replica-b")
