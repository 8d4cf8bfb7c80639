"""Throwaway databases for store tests: a fresh PostgreSQL schema, or a SQLite file, disposed afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from accord.storage import create_engine


async def postgres_schema_engine(url: str, prefix: str) -> AsyncGenerator[AsyncEngine, None]:
    """An engine on `url` whose unqualified tables land in a new schema `<prefix>_<random>`, dropped after."""
    base = create_engine(url)
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    async with base.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        # Unqualified tables land in the test's own schema, so tests never see each other's rows.
        yield base.execution_options(schema_translate_map={None: schema})
    finally:
        async with base.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await base.dispose()


async def sqlite_file_engine(path: Path) -> AsyncGenerator[AsyncEngine, None]:
    """An engine on the SQLite file `path`, disposed after."""
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        yield engine
    finally:
        await engine.dispose()
