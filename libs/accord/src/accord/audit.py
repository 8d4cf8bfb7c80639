"""Append-only, hash-chained audit records.

Each record's hash covers its canonical content and the previous record's hash, so editing, deleting or
reordering any record breaks the chain from that point on.

There is one chain per service, named by the `service` column (part of every record's hash): records
are numbered `seq` = 1, 2, ... within their chain, so several services, and several replicas of one
service, can share one database. Appends to a chain are serialized across processes: on PostgreSQL by a
transaction-scoped advisory lock on the chain's name, on SQLite by the database write lock, taken before
the chain's head is read. `audit_chain_heads` remembers each chain's last (seq, hash) as written by
`append_many`, so deleting the newest records is detected too (`accord.audit_trail`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from sqlalchemy import (
    JSON,
    Column,
    Float,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

GENESIS = "0" * 64

_metadata = MetaData()
audit_table = Table(
    "audit_records",
    _metadata,
    Column("seq", Integer, nullable=False, autoincrement=False),
    Column("ts", Float, nullable=False),
    Column("service", String(64), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(128), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("trace_id", String(32), nullable=True, index=True),
    Column("run_id", String(64), nullable=True, index=True),
    Column("details", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    PrimaryKeyConstraint("service", "seq", name="audit_records_chain_seq"),
)
heads_table = Table(
    "audit_chain_heads",
    _metadata,
    Column("chain", String(64), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)


_SCHEMA_ATTEMPTS = 20


@dataclass(frozen=True)
class AuditEvent:
    """What happened; `details` must never hold raw tokens or secrets.

    `trace_id` defaults to the trace current when the event is appended."""

    actor: str
    action: str
    outcome: str
    reason: str | None = None
    trace_id: str | None = None
    run_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def record_hash(record: dict[str, Any]) -> str:
    content = {k: v for k, v in record.items() if k != "hash"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def chain_lock_key(chain: str) -> int:
    """The PostgreSQL advisory lock key of a chain: a stable signed 64-bit number from its name."""
    return int.from_bytes(hashlib.sha256(f"accord.audit:{chain}".encode()).digest()[:8], "big", signed=True)


def _current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def chain_records(
    service: str, last_seq: int, last_hash: str, events: list[AuditEvent]
) -> list[dict[str, Any]]:
    """The records that extend a chain whose head is (`last_seq`, `last_hash`) with `events`, in order."""
    seq, previous = last_seq, last_hash
    trace_id = _current_trace_id()
    records: list[dict[str, Any]] = []
    for event in events:
        seq += 1
        record: dict[str, Any] = {
            "seq": seq,
            "ts": time.time(),
            "service": service,
            "actor": event.actor,
            "action": event.action,
            "outcome": event.outcome,
            "reason": event.reason,
            "trace_id": event.trace_id or trace_id,
            "run_id": event.run_id,
            "details": event.details,
            "prev_hash": previous,
        }
        record["hash"] = previous = record_hash(record)
        records.append(record)
    return records


class AuditLog:
    """One service's chain. Appends are serialized in-process and, through the database, across
    processes sharing it; the chain is checked with `verify` (or `accord audit verify`)."""

    def __init__(self, engine: AsyncEngine, service: str) -> None:
        self._engine = engine
        self._service = service
        self._lock = asyncio.Lock()
        self._observers: list[Callable[[AuditEvent], None]] = []

    def observe(self, observer: Callable[[AuditEvent], None]) -> None:
        """Call `observer` with every event once it is stored (metrics count decisions this way)."""
        self._observers.append(observer)

    def _stored(self, events: list[AuditEvent]) -> None:
        for event in events:
            for observer in self._observers:
                observer(event)

    @property
    def chain(self) -> str:
        return self._service

    async def initialize(self) -> None:
        for attempt in range(1, _SCHEMA_ATTEMPTS + 1):
            try:
                await self._create_schema()
                return
            except OperationalError:
                # Processes creating one SQLite file's tables at once: SQLite refuses a writer whose read
                # lock cannot be upgraded, without waiting out the busy timeout, and a CREATE TABLE that
                # lost the race finds the table there. A new attempt sees the schema as it now is.
                if attempt == _SCHEMA_ATTEMPTS:
                    raise
                await asyncio.sleep(0.05 * attempt)

    async def _create_schema(self) -> None:
        async with self._engine.begin() as conn:
            postgres = conn.dialect.name == "postgresql"
            if postgres:
                # Services starting together would race on CREATE TABLE, which PostgreSQL does not guard.
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": chain_lock_key("")})
            await conn.run_sync(_metadata.create_all)

    async def append(self, event: AuditEvent) -> dict[str, Any]:
        [record] = await self.append_many([event])
        return record

    async def append_many(self, events: list[AuditEvent]) -> list[dict[str, Any]]:
        """Chain and store several records in one transaction (all or none), in the order given."""
        if not events:
            return []
        async with self._lock, self._engine.begin() as conn:
            await self._lock_chain(conn)
            last = (
                await conn.execute(
                    select(audit_table.c.seq, audit_table.c.hash)
                    .where(audit_table.c.service == self._service)
                    .order_by(audit_table.c.seq.desc())
                    .limit(1)
                )
            ).first()
            seq, previous = (last.seq, last.hash) if last else (0, GENESIS)
            records = chain_records(self._service, seq, previous, events)
            await conn.execute(audit_table.insert(), records)
            await self._store_head(conn, records[-1])
        self._stored(events)
        return records

    async def _lock_chain(self, conn: AsyncConnection) -> None:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": chain_lock_key(self._service)}
            )
        else:
            # A write as the transaction's first statement takes SQLite's write lock (even when it changes
            # no row), so no other process can append between our read of the head and our insert.
            await conn.execute(
                update(heads_table).where(heads_table.c.chain == self._service).values(seq=heads_table.c.seq)
            )

    async def _store_head(self, conn: AsyncConnection, record: dict[str, Any]) -> None:
        insert = postgres_insert if conn.dialect.name == "postgresql" else sqlite_insert
        values = {"chain": self._service, "seq": record["seq"], "hash": record["hash"]}
        statement = insert(heads_table).values(**values)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[heads_table.c.chain], set_={"seq": values["seq"], "hash": values["hash"]}
            )
        )

    async def records(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """This chain's records in order (those of one run when `run_id` is given)."""
        query = select(audit_table).where(audit_table.c.service == self._service).order_by(audit_table.c.seq)
        if run_id is not None:
            query = query.where(audit_table.c.run_id == run_id)
        async with self._engine.connect() as conn:
            return [dict(row._mapping) for row in (await conn.execute(query))]

    async def verify(self) -> int | None:
        """The seq of this chain's first broken record (a missing newest record counts), or None."""
        async with self._engine.connect() as conn:
            head = (
                await conn.execute(
                    select(heads_table.c.seq, heads_table.c.hash).where(heads_table.c.chain == self._service)
                )
            ).first()
        records = await self.records()
        broken = verify_chain(records)
        if broken is not None or head is None:
            return broken
        return verify_head(records, head.seq, head.hash)


def verify_chain(records: list[dict[str, Any]]) -> int | None:
    """The seq of the first record that breaks the chain, or None when the chain is intact.

    `records` are one chain's records in seq order. A missing record is named by its seq."""
    previous = GENESIS
    expected_seq = 1
    for record in records:
        if record["seq"] != expected_seq:
            return expected_seq if record["seq"] > expected_seq else int(record["seq"])
        if record["prev_hash"] != previous or record_hash(record) != record["hash"]:
            return int(record["seq"])
        previous = record["hash"]
        expected_seq += 1
    return None


def verify_head(records: list[dict[str, Any]], head_seq: int, head_hash: str) -> int | None:
    """Check an intact chain against its remembered head: the newest records cannot be removed unseen.
    (Writers that do not keep the head leave it behind the chain, so a head is a lower bound.)"""
    last_seq = int(records[-1]["seq"]) if records else 0
    if head_seq > last_seq:
        return last_seq + 1
    if head_seq > 0 and records[head_seq - 1]["hash"] != head_hash:
        return head_seq
    return None
