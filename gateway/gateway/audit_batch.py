"""Group commit for the audit chain: concurrent appends share one database transaction.

Every `append` still returns only once its record is committed, so a call is never answered before its
audit record is durable (nothing is lost if the process dies afterwards). While one transaction is being
written, the records that arrive queue up and go in the next one, so under load the cost of a commit is
spread over many calls instead of serializing them one transaction each.

On SQLite (the default store) a batch is written by one dedicated thread with the standard `sqlite3`
module, in a single hop from the event loop: the async driver would hop threads for every statement of the
transaction, which made audit writing the largest cost of a tool call. The records, their chaining and
their hashes are exactly those of `AuditLog.append_many`; other databases use it unchanged.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from accord.audit import GENESIS, AuditEvent, AuditLog, audit_table, record_hash
from accord.telemetry import record_queue_wait

MAX_BATCH = 500
_COLUMNS = [column.name for column in audit_table.columns]
# Both statements are built from the table definition alone, never from outside input.
_PLACEHOLDERS = ", ".join("?" for _ in _COLUMNS)
_INSERT = f"INSERT INTO {audit_table.name} ({', '.join(_COLUMNS)}) VALUES ({_PLACEHOLDERS})"  # noqa: S608
_LAST = f"SELECT seq, hash FROM {audit_table.name} ORDER BY seq DESC LIMIT 1"  # noqa: S608


class _SqliteWriter:
    """One connection, used only by one thread: `write` runs there."""

    def __init__(self, path: str, service: str) -> None:
        self._path = path
        self._service = service
        self._connection: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            # As the gateway's engine configures its own connections (accord.storage).
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=30000")
            self._connection = connection
        return self._connection

    def write(self, events: list[AuditEvent]) -> list[dict[str, Any]]:
        connection = self._connect()
        connection.execute("BEGIN IMMEDIATE")  # take the write lock before reading the chain's head
        try:
            last = connection.execute(_LAST).fetchone()
            seq, previous = (int(last[0]), str(last[1])) if last else (0, GENESIS)
            records: list[dict[str, Any]] = []
            for event in events:
                seq += 1
                record: dict[str, Any] = {
                    "seq": seq,
                    "ts": time.time(),
                    "service": self._service,
                    "actor": event.actor,
                    "action": event.action,
                    "outcome": event.outcome,
                    "reason": event.reason,
                    "trace_id": event.trace_id,
                    "run_id": event.run_id,
                    "details": event.details,
                    "prev_hash": previous,
                }
                record["hash"] = previous = record_hash(record)
                records.append(record)
            connection.executemany(
                _INSERT,
                [tuple(json.dumps(r[c]) if c == "details" else r[c] for c in _COLUMNS) for r in records],
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return records

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class GroupCommitAuditLog(AuditLog):
    def __init__(self, engine: AsyncEngine, service: str) -> None:
        super().__init__(engine, service)
        self._queue: list[tuple[AuditEvent, asyncio.Future[tuple[dict[str, Any], float]]]] = []
        self._writer: asyncio.Task[None] | None = None
        url = engine.url
        database = url.database
        self._sqlite: _SqliteWriter | None = None
        self._thread: ThreadPoolExecutor | None = None
        if url.get_backend_name() == "sqlite" and database and database != ":memory:":
            self._sqlite = _SqliteWriter(database, service)
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-writer")

    @property
    def queued(self) -> int:
        """Records waiting for their group commit (a queue depth on `/metrics`)."""
        return len(self._queue)

    async def append(self, event: AuditEvent) -> dict[str, Any]:
        future: asyncio.Future[tuple[dict[str, Any], float]] = asyncio.get_running_loop().create_future()
        queued_at = time.perf_counter()
        self._queue.append((event, future))
        if self._writer is None or self._writer.done():
            # Its own task, so a caller that is cancelled cannot abort a commit other callers wait for.
            self._writer = asyncio.create_task(self._write_queued(), name="audit-group-commit")
        record, batch_started = await asyncio.shield(future)
        # The wait for the commit before this record's own: queueing, which `accord trace` shows apart
        # from work.
        record_queue_wait(max(0.0, batch_started - queued_at))
        return record

    async def _commit(self, events: list[AuditEvent]) -> list[dict[str, Any]]:
        if self._sqlite is None or self._thread is None:
            return await self.append_many(events)
        records = await asyncio.get_running_loop().run_in_executor(self._thread, self._sqlite.write, events)
        self._stored(events)
        return records

    async def _write_queued(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            started = time.perf_counter()
            try:
                records = await self._commit([event for event, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), record in zip(batch, records, strict=True):
                if not future.done():
                    future.set_result((record, started))

    async def drain(self) -> None:
        """Wait until every queued record is written (before the engine is closed), then release the
        writer thread."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
        if self._thread is not None and self._sqlite is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._sqlite.close)
