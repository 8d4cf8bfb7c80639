"""The local span store: finished spans kept where `accord trace` can read them, with nothing else to run.

Each service writes its own SQLite file, `<state_dir>/spans-<service>.db` (one writer per file, so no
locking between processes), or one shared PostgreSQL table when `ACCORD_DATABASE_URL` names PostgreSQL.
`SpanReader` merges every service's spans of a trace. Writing happens on the batch span processor's
export thread, never on a service's event loop; span attributes are redacted before they are stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import asyncpg
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from accord.redaction import redact_value

TABLE = "trace_spans"
FILE_PREFIX = "spans-"
RUN_ID_ATTRIBUTE = "accord.run_id"
DEFAULT_RETENTION_S = 7 * 24 * 3600.0
_PRUNE_EVERY = 500  # exports between two deletions of expired spans

_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "service",
    "name",
    "kind",
    "start_ns",
    "end_ns",
    "status",
    "status_message",
    "run_id",
    "scope",
    "attributes",
    "events",
)
_SQLITE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT, service TEXT NOT NULL,
    name TEXT NOT NULL, kind TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    status TEXT NOT NULL, status_message TEXT, run_id TEXT, scope TEXT,
    attributes TEXT NOT NULL, events TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS {TABLE}_run ON {TABLE} (run_id);
CREATE INDEX IF NOT EXISTS {TABLE}_end ON {TABLE} (end_ns);
"""
_POSTGRES_SCHEMA = _SQLITE_SCHEMA.replace("INTEGER", "BIGINT")
_FIELDS = ", ".join(_COLUMNS)
# Statements are built from the constants above only, never from outside input.
_SQLITE_INSERT = f"INSERT OR IGNORE INTO {TABLE} ({_FIELDS}) VALUES ({', '.join('?' * len(_COLUMNS))})"  # noqa: S608
_POSTGRES_INSERT = (
    f"INSERT INTO {TABLE} ({_FIELDS}) "  # noqa: S608
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(_COLUMNS) + 1))}) ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True)
class StoredSpan:
    """One finished span as the store keeps it (ids in lowercase hex, times in ns since the epoch)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    service: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str = "unset"
    status_message: str | None = None
    run_id: str | None = None
    scope: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def row(self) -> tuple[Any, ...]:
        values = self.to_dict()
        values["attributes"] = json.dumps(self.attributes, default=str)
        values["events"] = json.dumps(self.events, default=str)
        return tuple(values[column] for column in _COLUMNS)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> StoredSpan:
        values = dict(zip(_COLUMNS, row, strict=True))
        values["attributes"] = json.loads(values["attributes"])
        values["events"] = json.loads(values["events"])
        return cls(**values)

    @classmethod
    def from_readable(cls, span: ReadableSpan, service: str) -> StoredSpan:
        """Convert an SDK span; attribute and event values are redacted on the way."""
        context = span.get_span_context()
        assert context is not None
        attributes = {key: _plain(key, value) for key, value in (span.attributes or {}).items()}
        run_id = attributes.get(RUN_ID_ATTRIBUTE)
        status = span.status.status_code
        return cls(
            trace_id=format(context.trace_id, "032x"),
            span_id=format(context.span_id, "016x"),
            parent_span_id=format(span.parent.span_id, "016x") if span.parent is not None else None,
            service=service,
            name=span.name,
            kind=_KIND_NAMES.get(span.kind, "internal"),
            start_ns=span.start_time or 0,
            end_ns=span.end_time or span.start_time or 0,
            status=_STATUS_NAMES.get(status, "unset"),
            status_message=span.status.description,
            run_id=run_id if isinstance(run_id, str) else None,
            scope=span.instrumentation_scope.name if span.instrumentation_scope else None,
            attributes=attributes,
            events=[
                {
                    "name": event.name,
                    "ts_ns": event.timestamp,
                    "attributes": {k: _plain(k, v) for k, v in (event.attributes or {}).items()},
                }
                for event in span.events
            ],
        )


_KIND_NAMES = {
    SpanKind.INTERNAL: "internal",
    SpanKind.SERVER: "server",
    SpanKind.CLIENT: "client",
    SpanKind.PRODUCER: "producer",
    SpanKind.CONSUMER: "consumer",
}
_STATUS_NAMES = {StatusCode.UNSET: "unset", StatusCode.OK: "ok", StatusCode.ERROR: "error"}


def _plain(key: str, value: Any) -> Any:
    return redact_value(key, list(value) if isinstance(value, tuple) else value)


def span_file(state_dir: Path, service: str) -> Path:
    return state_dir / f"{FILE_PREFIX}{service}.db"


def is_postgres(url: str | None) -> bool:
    return url is not None and url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def asyncpg_dsn(url: str) -> str:
    """asyncpg wants a plain libpq URL, without SQLAlchemy's `+driver` suffix."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.split("+", 1)[0] in ("postgresql", "postgres") else url


class SpanSink(Protocol):
    def write(self, spans: list[StoredSpan]) -> None: ...

    def prune(self, older_than_ns: int) -> None: ...

    def close(self) -> None: ...


class SqliteSpanSink:
    """One service's span file. Used from the exporter thread and, at flush or shutdown, the caller's."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.executescript(_SQLITE_SCHEMA)

    def write(self, spans: list[StoredSpan]) -> None:
        with self._lock:
            self._connection.execute("BEGIN")
            try:
                self._connection.executemany(_SQLITE_INSERT, [span.row() for span in spans])
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise

    def prune(self, older_than_ns: int) -> None:
        with self._lock:
            self._connection.execute(f"DELETE FROM {TABLE} WHERE end_ns < ?", (older_than_ns,))  # noqa: S608

    def close(self) -> None:
        with self._lock:
            self._connection.close()


class _LoopThread:
    """An event loop on its own daemon thread, so synchronous callers on any thread (including one that
    runs a service's loop) can wait for asyncpg work."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Any, timeout_s: float = 30.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout_s)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class PostgresSpanSink:
    """The shared span table of every service on one PostgreSQL database."""

    def __init__(self, url: str) -> None:
        self._dsn = asyncpg_dsn(url)
        self._runner = _LoopThread("span-store-postgres")
        self._connection: asyncpg.Connection | None = None
        self._lock = threading.Lock()

    async def _connect(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            connection = await asyncpg.connect(self._dsn)
            async with connection.transaction():
                # Replicas start together: serialize the DDL, which PostgreSQL does not make race-free.
                await connection.execute("SELECT pg_advisory_xact_lock($1)", _lock_key("accord.spans.schema"))
                await connection.execute(_POSTGRES_SCHEMA)
            self._connection = connection
        return self._connection

    async def _write(self, rows: list[tuple[Any, ...]]) -> None:
        connection = await self._connect()
        await connection.executemany(_POSTGRES_INSERT, rows)

    async def _prune(self, older_than_ns: int) -> None:
        connection = await self._connect()
        await connection.execute(f"DELETE FROM {TABLE} WHERE end_ns < $1", older_than_ns)  # noqa: S608

    def write(self, spans: list[StoredSpan]) -> None:
        with self._lock:
            self._runner.run(self._write([span.row() for span in spans]))

    def prune(self, older_than_ns: int) -> None:
        with self._lock:
            self._runner.run(self._prune(older_than_ns))

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._runner.run(self._connection.close())
                self._connection = None
            self._runner.stop()


def _lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def open_sink(service: str, state_dir: Path, database_url: str | None = None) -> SpanSink:
    if is_postgres(database_url):
        assert database_url is not None
        return PostgresSpanSink(database_url)
    return SqliteSpanSink(span_file(state_dir, service))


class SpanStoreExporter(SpanExporter):
    """Writes finished spans to a sink; expired spans are deleted now and then."""

    def __init__(self, sink: SpanSink, service: str, retention_s: float = DEFAULT_RETENTION_S) -> None:
        self._sink = sink
        self._service = service
        self._retention_ns = int(retention_s * 1e9)
        self._exports = 0
        self._closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._closed:
            return SpanExportResult.FAILURE
        try:
            self._sink.write([StoredSpan.from_readable(span, self._service) for span in spans])
            self._exports += 1
            if self._exports % _PRUNE_EVERY == 1:
                self._sink.prune(time.time_ns() - self._retention_ns)
        except Exception:  # a full disk or a lost database must never break the service
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if not self._closed:
            self._closed = True
            self._sink.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class SpanReader:
    """Reads every service's spans: all span files of a state dir, or the PostgreSQL table."""

    def __init__(self, state_dir: Path | None = None, database_url: str | None = None) -> None:
        self._state_dir = state_dir
        self._database_url = database_url if is_postgres(database_url) else None

    def files(self) -> list[Path]:
        if self._state_dir is None or not self._state_dir.is_dir():
            return []
        return sorted(self._state_dir.glob(f"{FILE_PREFIX}*.db"))

    async def trace(self, trace_id: str) -> list[StoredSpan]:
        """Every stored span of the trace, from all services, by start time."""
        spans = await self._select("trace_id", trace_id.lower())
        return sorted(spans, key=lambda s: (s.start_ns, -s.end_ns, s.service, s.span_id))

    async def trace_ids_for_run(self, run_id: str) -> list[str]:
        """The traces whose spans carry `accord.run_id = run_id`, earliest first."""
        spans = sorted(await self._select("run_id", run_id), key=lambda s: s.start_ns)
        return list(dict.fromkeys(span.trace_id for span in spans))

    async def _select(self, column: str, value: str) -> list[StoredSpan]:
        assert column in ("trace_id", "run_id")
        if self._database_url is not None:
            return await self._select_postgres(column, value)
        return await asyncio.to_thread(self._select_files, column, value)

    def _select_files(self, column: str, value: str) -> list[StoredSpan]:
        query = f"SELECT {_FIELDS} FROM {TABLE} WHERE {column} = ?"  # noqa: S608
        spans: list[StoredSpan] = []
        for path in self.files():
            connection = sqlite3.connect(path, timeout=30)
            try:
                spans.extend(StoredSpan.from_row(row) for row in connection.execute(query, (value,)))
            except sqlite3.DatabaseError:
                continue  # not a span file (or not yet initialized): nothing to read
            finally:
                connection.close()
        return spans

    async def _select_postgres(self, column: str, value: str) -> list[StoredSpan]:
        assert self._database_url is not None
        connection = await asyncpg.connect(asyncpg_dsn(self._database_url))
        try:
            exists = await connection.fetchval("SELECT to_regclass($1)", TABLE)
            if exists is None:
                return []
            query = f"SELECT {_FIELDS} FROM {TABLE} WHERE {column} = $1"  # noqa: S608
            rows = await connection.fetch(query, value)
        finally:
            await connection.close()
        return [StoredSpan.from_row(tuple(row)) for row in rows]
