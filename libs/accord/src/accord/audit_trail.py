"""The whole mesh's audit trail: every service's chain, verified, and merged into one trail per run.

Records are read where services write them: every SQLite file of a state dir that holds an
`audit_records` table (each service's own `<service>.db`), or the one PostgreSQL database they share.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from accord.audit import GENESIS, audit_table, heads_table, record_hash
from accord.span_store import FILE_PREFIX, asyncpg_dsn, is_postgres

_COLUMNS = [column.name for column in audit_table.columns]
_SELECT_RECORDS = f"SELECT {', '.join(_COLUMNS)} FROM {audit_table.name}"  # noqa: S608
_SELECT_HEADS = f"SELECT chain, seq, hash FROM {heads_table.name}"  # noqa: S608


@dataclass(frozen=True)
class ChainBreak:
    """The first record of a chain that does not verify."""

    source: str
    chain: str
    seq: int
    problem: str

    def describe(self) -> str:
        return f"{self.chain} seq {self.seq}: {self.problem} (in {self.source})"


@dataclass
class Chain:
    """One service's records from one source, in seq order, with its remembered head if any."""

    source: str
    name: str
    records: list[dict[str, Any]] = field(default_factory=list)
    head: tuple[int, str] | None = None

    def check(self) -> ChainBreak | None:
        problem = diagnose(self.records, self.head)
        return ChainBreak(self.source, self.name, *problem) if problem is not None else None


def diagnose(records: list[dict[str, Any]], head: tuple[int, str] | None = None) -> tuple[int, str] | None:
    """(seq, what is wrong) for the first record that breaks the chain, or None when it is intact."""
    previous = GENESIS
    for expected, record in enumerate(records, start=1):
        seq = int(record["seq"])
        if seq > expected:
            return expected, "missing: the record was deleted" if seq == expected + 1 else "missing"
        if seq < expected:
            return seq, "duplicated or out of sequence"
        if record_hash(record) != record["hash"]:
            return seq, _altered(record, len(records))
        if record["prev_hash"] != previous:
            return seq, "does not follow its predecessor: records were reordered or replaced"
        previous = record["hash"]
    if head is not None:
        head_seq, head_hash = head
        if head_seq > len(records):
            return len(records) + 1, f"missing: the chain ends early (its head is seq {head_seq})"
        if head_seq > 0 and records[head_seq - 1]["hash"] != head_hash:
            return head_seq, "does not match the chain's remembered head: replaced"
    return None


def _altered(record: dict[str, Any], count: int) -> str:
    # A record whose content hashes right under another seq was moved there: say so, it is the likely story.
    for seq in range(1, count + 2):
        if seq != record["seq"] and record_hash({**record, "seq": seq}) == record["hash"]:
            return f"reordered: the record was written as seq {seq}"
    return "altered: its content does not match its hash"


def order_key(record: dict[str, Any]) -> tuple[float, str, int]:
    """The trail's order: time, then service and seq (which keep each chain's own order)."""
    return (float(record["ts"]), str(record["service"]), int(record["seq"]))


@dataclass
class AuditTrail:
    chains: list[Chain]

    @classmethod
    async def load(cls, state_dir: Path | None = None, database_url: str | None = None) -> AuditTrail:
        """Every chain of the state dir's SQLite files, or of the PostgreSQL database when given one."""
        if is_postgres(database_url):
            assert database_url is not None
            return cls(await _load_postgres(database_url))
        if state_dir is None:
            return cls([])
        return cls(await asyncio.to_thread(_load_files, state_dir))

    def verify(self) -> list[ChainBreak]:
        """Every broken chain's first broken record (empty when all chains verify)."""
        return [broken for chain in self.chains if (broken := chain.check()) is not None]

    def records(self) -> list[dict[str, Any]]:
        return sorted((r for chain in self.chains for r in chain.records), key=order_key)

    def trace_ids_for_run(self, run_id: str) -> list[str]:
        """The traces of a run's records, earliest first."""
        found = [r["trace_id"] for r in self.records() if r["run_id"] == run_id and r["trace_id"]]
        return list(dict.fromkeys(found))

    def run_trail(self, run_id: str, trace_ids: Iterable[str] = ()) -> list[dict[str, Any]]:
        """One ordered trail of a run from every service: records naming the run, and records of its
        traces (services below the orchestrator know the trace, not the run)."""
        traces = set(trace_ids) | set(self.trace_ids_for_run(run_id))
        return [r for r in self.records() if r["run_id"] == run_id or r["trace_id"] in traces]

    def trace_trail(self, trace_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["trace_id"] == trace_id]


def _load_files(state_dir: Path) -> list[Chain]:
    chains: list[Chain] = []
    for path in sorted(state_dir.glob("*.db")):
        if path.name.startswith(FILE_PREFIX):
            continue
        connection = sqlite3.connect(path, timeout=30)
        try:
            rows = _read_sqlite(connection)
            heads = _read_sqlite_heads(connection)
        finally:
            connection.close()
        if rows is not None:
            chains.extend(_chains(path.name, rows, heads))
    return chains


def _read_sqlite(connection: sqlite3.Connection) -> list[tuple[Any, ...]] | None:
    try:
        return connection.execute(_SELECT_RECORDS).fetchall()
    except sqlite3.DatabaseError:
        return None  # a service database without an audit trail, or not a database at all


def _read_sqlite_heads(connection: sqlite3.Connection) -> dict[str, tuple[int, str]]:
    try:
        return {str(c): (int(s), str(h)) for c, s, h in connection.execute(_SELECT_HEADS)}
    except sqlite3.DatabaseError:
        return {}


async def _load_postgres(url: str) -> list[Chain]:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        if await connection.fetchval("SELECT to_regclass($1)", audit_table.name) is None:
            return []
        rows = [tuple(row) for row in await connection.fetch(_SELECT_RECORDS)]
        heads: dict[str, tuple[int, str]] = {}
        if await connection.fetchval("SELECT to_regclass($1)", heads_table.name) is not None:
            heads = {row[0]: (int(row[1]), str(row[2])) for row in await connection.fetch(_SELECT_HEADS)}
    finally:
        await connection.close()
    return _chains("postgresql", rows, heads)


def _chains(source: str, rows: list[tuple[Any, ...]], heads: dict[str, tuple[int, str]]) -> list[Chain]:
    by_name: dict[str, Chain] = {}
    for row in rows:
        record = dict(zip(_COLUMNS, row, strict=True))
        if isinstance(record["details"], str):
            record["details"] = json.loads(record["details"])
        chain = by_name.setdefault(record["service"], Chain(source, record["service"]))
        chain.records.append(record)
    for name, head in heads.items():
        by_name.setdefault(name, Chain(source, name)).head = head
    for chain in by_name.values():
        chain.records.sort(key=lambda r: int(r["seq"]))
    return sorted(by_name.values(), key=lambda c: (c.source, c.name))
