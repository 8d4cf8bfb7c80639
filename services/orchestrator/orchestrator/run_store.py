"""Where runs live: SQLite by default, PostgreSQL when configured.

A run row holds everything the REST API shows: each step's record, the conflicts and how they were
settled, the decision rationale, the pending human review, the result. Columns added since the first
release are added to an existing table on startup, so an older state directory keeps working.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    inspect,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine

_metadata = MetaData()
runs_table = Table(
    "runs",
    _metadata,
    Column("id", String(36), primary_key=True),
    Column("workflow", String(64), nullable=False, index=True),
    Column("status", String(32), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("input", JSON, nullable=False),
    Column("steps", JSON, nullable=False),
    Column("result", JSON, nullable=True),
    Column("error", JSON, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("delegation_depth", Integer, nullable=True),
    Column("conflicts", JSON, nullable=True),
    Column("rationale", JSON, nullable=True),
    Column("review", JSON, nullable=True),
)
# Added after the first release: nullable, so existing rows stay valid.
_ADDED_COLUMNS = ("delegation_depth", "conflicts", "rationale", "review")


class RunStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def initialize(self) -> None:
        async with self._engine.begin() as conn:
            await conn.run_sync(_metadata.create_all)
            await conn.run_sync(_add_missing_columns)

    async def create(self, run: dict[str, Any]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(runs_table.insert().values(**run))

    async def update(self, run_id: str, **fields: Any) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(runs_table.update().where(runs_table.c.id == run_id).values(**fields))

    async def get(self, run_id: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(runs_table).where(runs_table.c.id == run_id))).first()
        return _run(row._mapping) if row else None

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        query = select(runs_table).order_by(runs_table.c.created_at.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [_run(row._mapping) for row in await conn.execute(query)]

    async def ping(self) -> bool:
        async with self._engine.connect() as conn:
            await conn.execute(select(1))
        return True


def _run(row: Any) -> dict[str, Any]:
    run = dict(row)
    run["delegation_depth"] = run.get("delegation_depth") or 0
    run["conflicts"] = run.get("conflicts") or []
    run["rationale"] = run.get("rationale") or []
    return run


def _add_missing_columns(conn: Connection) -> None:
    present = {column["name"] for column in inspect(conn).get_columns("runs")}
    for name in _ADDED_COLUMNS:
        if name not in present:
            column = runs_table.c[name]
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE runs ADD COLUMN {name} {kind}"))
