"""The audit chain per service, on SQLite (a file per service) and on one shared PostgreSQL database:
appends, the trail merged across services, and tampering (edit, delete, reorder) named by record."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from accord.audit import AuditEvent, AuditLog
from accord.audit_trail import AuditTrail
from accord.span_store import asyncpg_dsn
from accord.storage import create_engine
from accord.testing.backing_services import require_postgres


@dataclass
class Backend:
    """Where services keep their audit logs: a SQLite file each in a state dir, or one PostgreSQL."""

    state_dir: Path
    database_url: str | None = None
    engines: dict[str, AsyncEngine] = field(default_factory=dict)

    async def log(self, service: str) -> AuditLog:
        if service not in self.engines:
            url = self.database_url or f"sqlite+aiosqlite:///{self.state_dir / f'{service}.db'}"
            self.engines[service] = create_engine(url)
        audit = AuditLog(self.engines[service], service)
        await audit.initialize()
        return audit

    async def tamper(self, service: str, *statements: str) -> None:
        async with self.engines[service].begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))

    async def trail(self) -> AuditTrail:
        return await AuditTrail.load(self.state_dir, self.database_url)

    async def close(self) -> None:
        for engine in self.engines.values():
            await engine.dispose()


@asynccontextmanager
async def postgres_backend(tmp_path: Path) -> AsyncIterator[Backend]:
    """A database of the test's own, dropped afterwards."""
    base = require_postgres()
    name = f"audit_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_dsn(base))
    await admin.execute(f'CREATE DATABASE "{name}"')
    store = Backend(tmp_path, base.rsplit("/", 1)[0] + "/" + name)
    try:
        yield store
    finally:
        await store.close()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "postgres":
        async with postgres_backend(tmp_path) as store:
            yield store
        return
    store = Backend(tmp_path)
    yield store
    await store.close()


async def fill(backend: Backend, count: int = 5) -> dict[str, list[dict[str, Any]]]:
    """Two services writing interleaved records, as a run through the mesh does."""
    gateway, orchestrator = await backend.log("gateway"), await backend.log("orchestrator")
    written: dict[str, list[dict[str, Any]]] = {"gateway": [], "orchestrator": []}
    for i in range(count):
        written["orchestrator"].append(
            await orchestrator.append(
                AuditEvent("rest:127.0.0.1", "run.step", "allowed", run_id=f"run-{i % 2}")
            )
        )
        written["gateway"] += await gateway.append_many(
            [AuditEvent("sanctions-agent", "tools/call", "ok", trace_id=f"{i % 2:032x}", details={"n": i})]
        )
    return written


async def test_each_service_numbers_its_own_chain_from_one_and_all_chains_verify(backend: Backend) -> None:
    written = await fill(backend)

    trail = await backend.trail()

    assert [r["seq"] for r in written["gateway"]] == [1, 2, 3, 4, 5]
    assert [r["seq"] for r in written["orchestrator"]] == [1, 2, 3, 4, 5]
    assert {c.name for c in trail.chains} == {"gateway", "orchestrator"}
    assert trail.verify() == []
    assert len(trail.records()) == 10
    assert await (await backend.log("gateway")).verify() is None


async def test_an_edited_record_is_named_by_service_and_seq(backend: Backend) -> None:
    await fill(backend)
    await backend.tamper(
        "gateway", "UPDATE audit_records SET outcome = 'denied' WHERE service = 'gateway' AND seq = 3"
    )

    [broken] = (await backend.trail()).verify()

    assert (broken.chain, broken.seq) == ("gateway", 3)
    assert broken.problem.startswith("altered")
    assert "gateway seq 3" in broken.describe()
    assert await (await backend.log("gateway")).verify() == 3


async def test_a_deleted_record_is_named_by_its_seq(backend: Backend) -> None:
    await fill(backend)
    await backend.tamper(
        "orchestrator", "DELETE FROM audit_records WHERE service = 'orchestrator' AND seq = 2"
    )

    [broken] = (await backend.trail()).verify()

    assert (broken.chain, broken.seq) == ("orchestrator", 2)
    assert broken.problem.startswith("missing")


async def test_deleting_the_newest_records_is_detected_through_the_chain_head(backend: Backend) -> None:
    await fill(backend)
    await backend.tamper("gateway", "DELETE FROM audit_records WHERE service = 'gateway' AND seq >= 4")

    [broken] = (await backend.trail()).verify()

    assert (broken.chain, broken.seq) == ("gateway", 4)
    assert "head is seq 5" in broken.problem


async def test_reordered_records_are_named_and_where_they_came_from(backend: Backend) -> None:
    await fill(backend)
    await backend.tamper(
        "gateway",
        "UPDATE audit_records SET seq = 100 WHERE service = 'gateway' AND seq = 2",
        "UPDATE audit_records SET seq = 2 WHERE service = 'gateway' AND seq = 3",
        "UPDATE audit_records SET seq = 3 WHERE service = 'gateway' AND seq = 100",
    )

    [broken] = (await backend.trail()).verify()

    assert (broken.chain, broken.seq) == ("gateway", 2)
    assert broken.problem == "reordered: the record was written as seq 3"


async def test_a_run_trail_merges_every_service_in_time_order_including_records_of_its_traces(
    backend: Backend,
) -> None:
    orchestrator, gateway = await backend.log("orchestrator"), await backend.log("gateway")
    trace_id = uuid.uuid4().hex
    await orchestrator.append(
        AuditEvent("rest:client", "run.start", "allowed", trace_id=trace_id, run_id="r1")
    )
    await gateway.append(AuditEvent("sanctions-agent", "tools/call", "ok", trace_id=trace_id))
    await gateway.append(
        AuditEvent("bureau-agent", "tools/call", "denied", "insufficient_scope", trace_id=trace_id)
    )
    await gateway.append(AuditEvent("other", "tools/call", "ok", trace_id=uuid.uuid4().hex))
    await orchestrator.append(AuditEvent("orchestrator", "run.complete", "completed", run_id="r1"))

    trail = await backend.trail()
    records = trail.run_trail("r1")

    assert [(r["service"], r["action"], r["outcome"]) for r in records] == [
        ("orchestrator", "run.start", "allowed"),
        ("gateway", "tools/call", "ok"),
        ("gateway", "tools/call", "denied"),
        ("orchestrator", "run.complete", "completed"),
    ]
    assert records[2]["reason"] == "insufficient_scope"
    assert trail.trace_ids_for_run("r1") == [trace_id]


async def test_records_take_the_current_trace_id_when_the_event_names_none(backend: Backend) -> None:
    audit = await backend.log("registry")
    with TracerProvider().get_tracer("t").start_as_current_span("request") as span:
        record = await audit.append(AuditEvent("admin", "agent.register", "allowed"))
    explicit = await audit.append(AuditEvent("admin", "agent.delete", "allowed", trace_id="f" * 32))

    assert record["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert explicit["trace_id"] == "f" * 32
    stored = await audit.records()
    assert [r["trace_id"] for r in stored] == [record["trace_id"], "f" * 32]
