"""Databases made before a store gained columns get them at startup (real SQLite, real PostgreSQL in a
schema of its own): the run store's `budget`, the grant store's later columns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, String, Table, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from accord.storage import add_missing_columns
from accord.testing.backing_services import require_postgres
from accord.testing.scratch_databases import postgres_schema_engine, sqlite_file_engine
from orchestrator.run_store import RunStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    scratch = (
        sqlite_file_engine(tmp_path / "old.db")
        if request.param == "sqlite"
        else postgres_schema_engine(require_postgres(), "columns")
    )
    async for made in scratch:
        yield made


async def columns(engine: AsyncEngine, table: str) -> set[str]:
    async with engine.connect() as conn:
        found = await conn.run_sync(lambda c: inspect(c).get_columns(table, schema=_schema(c)))
    return {column["name"] for column in found}


def _schema(conn: object) -> str | None:
    options = conn.get_execution_options()  # type: ignore[attr-defined]
    return (options.get("schema_translate_map") or {}).get(None)  # type: ignore[no-any-return]


async def test_a_runs_table_from_before_budgets_gains_the_column_and_keeps_its_rows(
    engine: AsyncEngine,
) -> None:
    old = MetaData()
    runs = Table("runs", old, Column("id", String(36), primary_key=True), Column("status", String(32)))
    async with engine.begin() as conn:
        await conn.run_sync(old.create_all)
        await conn.execute(runs.insert().values(id="r1", status="completed"))

    store = RunStore(engine)
    await store.initialize()
    await store.initialize()  # again: nothing left to add

    assert "budget" in await columns(engine, "runs")
    async with engine.connect() as conn:
        assert (await conn.execute(select(runs.c.status).where(runs.c.id == "r1"))).scalar() == "completed"


async def test_only_missing_columns_are_added(engine: AsyncEngine) -> None:
    metadata = MetaData()
    table = Table("things", metadata, Column("id", String(8), primary_key=True), Column("kept", String(8)))
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.run_sync(add_missing_columns, table, {"kept": "VARCHAR(8)", "added": "INTEGER"})
    assert await columns(engine, "things") == {"id", "kept", "added"}
