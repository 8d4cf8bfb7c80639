"""What checkpointing costs a run: the same fan-out (5 and 100 steps) with step-boundary checkpoints on
and off, in one run, on SQLite and on PostgreSQL.

The orchestrator's own run service, engine and run store run here; the agents are an in-process stand-in
that behaves as the real dispatcher does towards the engine (the agent accepts the task, which the
engine checkpoints with its task id, then works `ACCORD_BENCH_WORK_MS`, default 300 ms, and answers), so
what differs between the two sides is only the checkpoint writes.

"On" is the shipped behaviour: every acceptance and completion is checkpointed, coalesced into at most one
write in flight (`orchestrator.runs._Recorder`). "Off" drops those intermediate writes (the run is still
created and its final state written), which is what a run without durability would do; it exists only
here, to measure against. Added time = median run time on - median run time off, each the median of
`ACCORD_BENCH_REPEATS` runs (default 9) after a warm-up, the two sides alternating. Targets: <= 5 ms at 5
steps, <= 50 ms at 100 on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from accord.audit import AuditLog
from accord.storage import create_engine
from accord.testing.backing_services import POSTGRES_URL
from accord.testing.scratch_databases import postgres_schema_engine
from orchestrator import runs as run_service
from orchestrator.dispatch import StepOutcome
from orchestrator.run_store import RunStore
from orchestrator.runs import RunService
from orchestrator.step_grants import RemoteTask, StepRef
from orchestrator.workflows import WorkflowSpec

FANOUTS = tuple(int(n) for n in os.environ.get("ACCORD_BENCH_CHECKPOINT_FANOUTS", "5,100").split(","))
WORK_MS = float(os.environ.get("ACCORD_BENCH_WORK_MS", "300"))
REPEATS = int(os.environ.get("ACCORD_BENCH_REPEATS", "9"))
TARGETS_MS = {5: 5.0, 100: 50.0}


class CountingStore(RunStore):
    """The run store, counting its writes (so each side's figure says what it wrote)."""

    updates = 0

    async def update(self, run_id: str, fence: str | None = None, **fields: Any) -> None:
        self.updates += 1
        await super().update(run_id, fence, **fields)


class AcceptingAgents:
    """Each step's agent accepts the task (the engine checkpoints its id), works, and answers."""

    async def dispatch(
        self, skill: str, data: dict[str, Any], step: StepRef, timeout_s: float | None = None
    ) -> StepOutcome:
        task_id = str(uuid.uuid4())
        if step.on_accepted is not None:
            await step.on_accepted(RemoteTask(f"{skill}-agent", task_id, "TASK_STATE_WORKING"))
        await asyncio.sleep(WORK_MS / 1000)
        attempts: list[dict[str, Any]] = [{"agent": f"{skill}-agent", "outcome": "answered"}]
        return StepOutcome(
            f"{skill}-agent", {"item": data.get("item"), "confidence": 1.0}, WORK_MS, task_id, attempts
        )


def fan_out(width: int) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": f"fan-out-{width}",
            "version": 1,
            "description": f"{width} parallel steps",
            "input_schema": {"type": "object"},
            "steps": [{"id": f"s{i}", "skill": "work", "input": {"item": i}} for i in range(width)],
            "synthesis": "collect",
        }
    )


@contextlib.contextmanager
def checkpoints(enabled: bool) -> Iterator[None]:
    """Intermediate checkpoint writes on (as shipped) or off (the baseline only this benchmark uses)."""
    if enabled:
        yield
        return
    original = run_service._Recorder.changed
    run_service._Recorder.changed = lambda self, execution: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        run_service._Recorder.changed = original  # type: ignore[method-assign]


async def time_run(
    runs: RunService, store: CountingStore, spec: WorkflowSpec, enabled: bool
) -> tuple[float, int]:
    """The run's wall time and how many updates it wrote."""
    before = store.updates
    with checkpoints(enabled):
        started = time.perf_counter()
        run = await runs.run(spec, {}, "bench")
        took = time.perf_counter() - started
    assert run["status"] == "completed", run["status"]
    return took, store.updates - before


async def measure(runs: RunService, store: CountingStore, width: int) -> dict[str, float]:
    spec = fan_out(width)
    runs.workflows[spec.name] = spec
    for enabled in (True, False):  # warm-up: table pages, statement caches, connections
        await time_run(runs, store, spec, enabled)
    on: list[tuple[float, int]] = []
    off: list[tuple[float, int]] = []
    for _ in range(REPEATS):
        on.append(await time_run(runs, store, spec, True))
        off.append(await time_run(runs, store, spec, False))
    median_on, median_off = (statistics.median(t for t, _ in side) for side in (on, off))
    return {
        "on_ms": median_on * 1000,
        "off_ms": median_off * 1000,
        "added_ms": (median_on - median_off) * 1000,
        "writes_on": statistics.median(w for _, w in on),
        "writes_off": statistics.median(w for _, w in off),
    }


@contextlib.asynccontextmanager
async def run_service_on(database: str) -> AsyncIterator[tuple[RunService, CountingStore] | None]:
    """A run service on a fresh SQLite file or PostgreSQL schema; None when PostgreSQL is not reachable."""
    if database == "sqlite":
        with tempfile.TemporaryDirectory(prefix="accord-bench-") as folder:
            engine = create_engine(f"sqlite+aiosqlite:///{Path(folder) / 'runs.db'}")
            try:
                yield await _service(engine)
            finally:
                await engine.dispose()
        return
    try:
        schemas = postgres_schema_engine(POSTGRES_URL, "bench_checkpoints")
        engine = await anext(schemas)
    except OSError:
        yield None
        return
    try:
        yield await _service(engine)
    finally:
        await schemas.aclose()


async def _service(engine: Any) -> tuple[RunService, CountingStore]:
    store, audit = CountingStore(engine), AuditLog(engine, "orchestrator")
    await store.initialize()
    await audit.initialize()
    return RunService({}, AcceptingAgents(), store, audit), store


async def _run(echo: Callable[[str], None]) -> None:
    echo(f"work per agent {WORK_MS:g} ms, median of {REPEATS} runs per side")
    echo(f"{'store':<11}{'steps':>6}{'on':>11}{'off':>11}{'added':>11}{'writes on/off':>15}  target")
    for database in ("sqlite", "postgresql"):
        async with run_service_on(database) as service:
            if service is None:
                echo(f"{database:<11} not reachable at {POSTGRES_URL}: skipped")
                continue
            runs, store = service
            for width in FANOUTS:
                figures = await measure(runs, store, width)
                target = TARGETS_MS.get(width) if database == "sqlite" else None
                verdict = (
                    ""
                    if target is None
                    else f"<= {target:g} ms: {'met' if figures['added_ms'] <= target else 'MISSED'}"
                )
                echo(
                    f"{database:<11}{width:>6}{figures['on_ms']:>9.1f}ms{figures['off_ms']:>9.1f}ms"
                    f"{figures['added_ms']:>9.1f}ms"
                    f"{figures['writes_on']:>9g} / {figures['writes_off']:<3g}  {verdict}"
                )


def run(echo: Callable[[str], None]) -> None:
    asyncio.run(_run(echo))
