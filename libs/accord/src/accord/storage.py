"""Database engines: SQLite by default, PostgreSQL when `ACCORD_DATABASE_URL` says so."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Table, event, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use the asyncpg driver for them."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


def create_engine(url: str) -> AsyncEngine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers proceed while one writer appends; NORMAL sync is durable across process crashes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def add_missing_columns(conn: Connection, table: Table, columns: Mapping[str, str]) -> None:
    """Add the nullable `columns` ({name: SQL type}) a table gained after a database was created
    (`metadata.create_all` creates missing tables, never missing columns). Run with `conn.run_sync`."""
    # The engine may place unqualified tables in another schema (`schema_translate_map`); look there.
    schema = (conn.get_execution_options().get("schema_translate_map") or {}).get(None)
    present = {column["name"] for column in inspect(conn).get_columns(table.name, schema=schema)}
    qualified = f'"{schema}".{table.name}' if schema else table.name
    for name, sql_type in columns.items():
        if name not in present:
            conn.exec_driver_sql(f"ALTER TABLE {qualified} ADD COLUMN {name} {sql_type}")
