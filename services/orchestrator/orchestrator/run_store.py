"""Where runs live: SQLite by default, PostgreSQL when configured.

A run row holds everything the REST API shows: each step's record (including, for a step in flight, the
agent's A2A task id and the idempotency key it was sent with), the conflicts and how they were settled,
the decision rationale, the pending human review, the result. It is also the run's checkpoint: a
restarted orchestrator resumes a `running` run from it.

A running run is owned by one orchestrator replica through a lease (`owner`, `lease_expires_at`): the
owner renews it while the run executes; any replica may claim a run whose lease has expired, with a
conditional UPDATE, so exactly one claim wins. Every write an execution makes is fenced by ownership
(`update(..., fence=owner)`): a replica that lost its run's lease learns it on its next write
(`LeaseLost`) and stops, rather than dispatching beside the new owner.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, Float, Integer, MetaData, String, Table, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from accord.storage import add_missing_columns
from orchestrator import faults

RUNNING = "running"

_metadata = MetaData()
runs_table = Table(
    "runs",
    _metadata,
    Column("id", String(36), primary_key=True),
    Column("workflow", String(64), nullable=False, index=True),
    Column("status", String(32), nullable=False, index=True),
    Column("actor", String(256), nullable=False),
    Column("input", JSON, nullable=False),
    Column("steps", JSON, nullable=False),
    Column("result", JSON, nullable=True),
    Column("error", JSON, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("delegation_depth", Integer, nullable=False, default=0),
    Column("conflicts", JSON, nullable=False, default=list),
    Column("rationale", JSON, nullable=False, default=list),
    Column("review", JSON, nullable=True),
    # The run's budget: its limits, what it has spent, which limit stopped it (`orchestrator.budgets`).
    Column("budget", JSON, nullable=True),
    # Its approval gates by id: pending, approved, rejected (who, when, why).
    Column("approvals", JSON, nullable=True),
    # The replica executing a running run, and until when its claim holds unless renewed.
    Column("owner", String(256), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
)
_LEASE_COLUMNS = ("owner", "lease_expires_at")
# Columns added after databases existed: created on them at startup.
_ADDED_COLUMNS = {"budget": "JSON", "approvals": "JSON"}


class LeaseLost(Exception):
    """This replica no longer owns the run (another claimed it after the lease expired)."""


class RunStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def initialize(self) -> None:
        async with self._engine.begin() as conn:
            await conn.run_sync(_metadata.create_all)
            await conn.run_sync(add_missing_columns, runs_table, _ADDED_COLUMNS)

    async def create(self, run: dict[str, Any]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(runs_table.insert().values(**run))

    async def update(self, run_id: str, fence: str | None = None, **fields: Any) -> None:
        """Write `fields`; with `fence`, only while that replica still owns the run (else `LeaseLost`)."""
        condition = runs_table.c.id == run_id
        if fence is not None:
            condition = and_(condition, runs_table.c.owner == fence)
        async with self._engine.begin() as conn:
            result = await conn.execute(runs_table.update().where(condition).values(**fields))
            faults.reached("during_checkpoint_write")  # written, not yet committed
        if fence is not None and result.rowcount == 0:
            raise LeaseLost(run_id)

    async def get(self, run_id: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(runs_table).where(runs_table.c.id == run_id))).first()
        return _run(row._mapping) if row else None

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        query = select(runs_table).order_by(runs_table.c.created_at.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [_run(row._mapping) for row in await conn.execute(query)]

    async def claimable(self, owner: str, now: float, limit: int = 100) -> list[str]:
        """Ids of running runs this replica may take: its own (a restart) and those whose lease expired."""
        query = (
            select(runs_table.c.id)
            .where(runs_table.c.status == RUNNING, _claimable(owner, now))
            .order_by(runs_table.c.created_at)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [row.id for row in await conn.execute(query)]

    async def with_status(self, status: str, limit: int = 500) -> list[dict[str, Any]]:
        """Runs in `status`, oldest first."""
        query = select(runs_table).where(runs_table.c.status == status).order_by(runs_table.c.created_at)
        async with self._engine.connect() as conn:
            return [_run(row._mapping) for row in await conn.execute(query.limit(limit))]

    async def claim(self, run_id: str, owner: str, now: float, lease_s: float) -> bool:
        """Take a running run whose lease expired (or that is already this replica's); True if taken.

        One conditional UPDATE: of replicas racing for the same run, exactly one matches the row."""
        claim = (
            update(runs_table)
            .where(runs_table.c.id == run_id, runs_table.c.status == RUNNING, _claimable(owner, now))
            .values(owner=owner, lease_expires_at=now + lease_s)
        )
        async with self._engine.begin() as conn:
            return bool((await conn.execute(claim)).rowcount == 1)

    async def renew(self, run_ids: list[str], owner: str, until: float) -> set[str]:
        """Extend this replica's leases; returns the ids it no longer owns."""
        if not run_ids:
            return set()
        renewal = (
            update(runs_table)
            .where(runs_table.c.id.in_(run_ids), runs_table.c.owner == owner)
            .values(lease_expires_at=until)
        )
        owned = select(runs_table.c.id).where(runs_table.c.id.in_(run_ids), runs_table.c.owner == owner)
        async with self._engine.begin() as conn:
            await conn.execute(renewal)
            still = {row.id for row in await conn.execute(owned)}
        return set(run_ids) - still

    async def release(self, run_ids: list[str], owner: str) -> None:
        """End this replica's leases on these runs (it is stopping): anyone may claim them now."""
        if not run_ids:
            return
        release = (
            update(runs_table)
            .where(runs_table.c.id.in_(run_ids), runs_table.c.owner == owner)
            .values(lease_expires_at=0.0)
        )
        async with self._engine.begin() as conn:
            await conn.execute(release)

    async def ping(self) -> bool:
        async with self._engine.connect() as conn:
            await conn.execute(select(1))
        return True


def _claimable(owner: str, now: float) -> Any:
    return or_(
        runs_table.c.owner == owner,
        runs_table.c.owner.is_(None),
        runs_table.c.lease_expires_at.is_(None),
        runs_table.c.lease_expires_at < now,
    )


def _run(row: Any) -> dict[str, Any]:
    run = {key: value for key, value in dict(row).items() if key not in _LEASE_COLUMNS}
    run["lease"] = {"owner": row["owner"], "expires_at": row["lease_expires_at"]}
    return run
