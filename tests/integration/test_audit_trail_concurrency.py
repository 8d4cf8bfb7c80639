"""Replicas of one service appending to the same chain at the same time, from separate processes: the
chain stays one intact sequence, on PostgreSQL and on a shared SQLite file."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from accord.audit import AuditEvent, AuditLog
from accord.audit_trail import AuditTrail
from accord.span_store import asyncpg_dsn
from accord.storage import create_engine
from accord.testing.backing_services import require_postgres
from accord.topology import repo_root

APPENDS = 40  # per process; every fifth append is a batch of two


def append_from_process() -> None:
    """Child process: initialize, say ready, wait for `go` on stdin, then append as fast as possible."""
    url, replica = os.environ["AUDIT_URL"], os.environ["REPLICA"]

    async def run() -> None:
        engine = create_engine(url)
        audit = AuditLog(engine, "gateway")
        await audit.initialize()
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        for i in range(APPENDS):
            event = AuditEvent(f"replica-{replica}", "tools/call", "ok", details={"i": i})
            if i % 5 == 0:
                await audit.append_many([event, AuditEvent(f"replica-{replica}", "tools/call", "denied")])
            else:
                await audit.append(event)
        await engine.dispose()

    asyncio.run(run())


def run_replicas(url: str, count: int = 2) -> None:
    code = "from tests.integration.test_audit_trail_concurrency import append_from_process as f; f()"
    processes = [
        subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", code],
            cwd=repo_root(),
            env={**os.environ, "AUDIT_URL": url, "REPLICA": str(n)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(count)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == b"ready", (
                process.stderr.read() if process.stderr else ""
            )
        for process in processes:  # both are waiting: start them together
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            process.stdin.flush()
        for process in processes:
            _, errors = process.communicate(timeout=120)
            assert process.returncode == 0, errors.decode()[-3000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


async def check_chain(trail: AuditTrail, replicas: int = 2) -> None:
    [chain] = [c for c in trail.chains if c.name == "gateway"]
    per_replica = APPENDS + APPENDS // 5
    assert [r["seq"] for r in chain.records] == list(range(1, replicas * per_replica + 1))
    assert trail.verify() == []
    for n in range(replicas):
        assert sum(1 for r in chain.records if r["actor"] == f"replica-{n}") == per_replica


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    base = require_postgres()
    name = f"audit_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_dsn(base))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@pytest.mark.postgres
async def test_two_processes_appending_to_one_chain_on_postgresql_keep_it_intact(postgres_url: str) -> None:
    await asyncio.to_thread(run_replicas, postgres_url)

    await check_chain(await AuditTrail.load(database_url=postgres_url))


async def test_two_processes_appending_to_one_chain_in_a_sqlite_file_keep_it_intact(tmp_path: Path) -> None:
    await asyncio.to_thread(run_replicas, f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")

    await check_chain(await AuditTrail.load(tmp_path))
