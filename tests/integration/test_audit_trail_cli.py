"""`accord audit verify` and `accord audit export` over a state dir with several services' audit logs."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from accord.audit import AuditEvent, AuditLog, record_hash
from accord.cli.audit import app
from accord.storage import create_engine

TRACE = "5" * 32


async def write_trail(state_dir: Path) -> None:
    """A run as the mesh records it: the orchestrator knows the run, the gateway only its trace."""
    engines = {
        name: create_engine(f"sqlite+aiosqlite:///{state_dir / f'{name}.db'}")
        for name in ("orchestrator", "gateway")
    }
    orchestrator, gateway = (
        AuditLog(engines["orchestrator"], "orchestrator"),
        AuditLog(engines["gateway"], "gateway"),
    )
    for log in (orchestrator, gateway):
        await log.initialize()
    await orchestrator.append(
        AuditEvent("rest:127.0.0.1", "run.start", "allowed", trace_id=TRACE, run_id="run-1")
    )
    await gateway.append(AuditEvent("sanctions-agent", "tools/call", "ok", trace_id=TRACE))
    await gateway.append(
        AuditEvent("bureau-agent", "tools/call", "denied", "insufficient_scope", trace_id=TRACE)
    )
    await gateway.append(AuditEvent("someone", "tools/call", "ok", trace_id="6" * 32))
    await orchestrator.append(
        AuditEvent("orchestrator", "run.complete", "completed", trace_id=TRACE, run_id="run-1")
    )
    for engine in engines.values():
        await engine.dispose()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    asyncio.run(write_trail(tmp_path))
    (tmp_path / "spans-gateway.db").write_bytes(b"")  # other files of the state dir are not audit logs
    return tmp_path


def tamper(path: Path, statement: str) -> None:
    connection = sqlite3.connect(path)
    connection.executescript(statement)
    connection.commit()
    connection.close()


def test_verify_passes_an_intact_trail_and_counts_every_chain(state_dir: Path) -> None:
    result = CliRunner().invoke(app, ["verify", "--state-dir", str(state_dir)])

    assert result.exit_code == 0, result.output
    assert "audit trail intact: 5 records in 2 chains" in result.output


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        ("UPDATE audit_records SET reason = NULL WHERE seq = 2", "gateway seq 2: altered"),
        ("DELETE FROM audit_records WHERE seq = 1", "gateway seq 1: missing"),
        ("DELETE FROM audit_records WHERE seq = 3", "gateway seq 3: missing"),
        (
            "UPDATE audit_records SET seq = 100 WHERE seq = 2;"
            "UPDATE audit_records SET seq = 2 WHERE seq = 3;"
            "UPDATE audit_records SET seq = 3 WHERE seq = 100",
            "gateway seq 2: reordered",
        ),
    ],
)
def test_verify_fails_naming_the_first_broken_record(state_dir: Path, statement: str, named: str) -> None:
    tamper(state_dir / "gateway.db", statement)

    result = CliRunner().invoke(app, ["verify", "--state-dir", str(state_dir)])

    assert result.exit_code == 1
    assert f"audit chain broken: {named}" in result.output
    assert "(in gateway.db)" in result.output


def test_verify_as_json_lists_each_chain_and_each_break(state_dir: Path) -> None:
    tamper(state_dir / "orchestrator.db", "UPDATE audit_records SET actor = 'someone else' WHERE seq = 1")

    result = CliRunner().invoke(app, ["verify", "--state-dir", str(state_dir), "--json"])

    document = json.loads(result.output.split("audit chain broken")[0])
    assert {(c["chain"], c["records"]) for c in document["chains"]} == {("gateway", 3), ("orchestrator", 2)}
    assert [(b["chain"], b["seq"]) for b in document["broken"]] == [("orchestrator", 1)]


def test_export_writes_one_run_from_every_service_in_order_as_verifiable_json_lines(state_dir: Path) -> None:
    result = CliRunner().invoke(app, ["export", "--run", "run-1", "--state-dir", str(state_dir)])

    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["service"], r["action"], r["outcome"], r["reason"]) for r in records] == [
        ("orchestrator", "run.start", "allowed", None),
        ("gateway", "tools/call", "ok", None),
        ("gateway", "tools/call", "denied", "insufficient_scope"),
        ("orchestrator", "run.complete", "completed", None),
    ]
    assert all(record_hash(r) == r["hash"] for r in records)
    assert {r["trace_id"] for r in records} == {TRACE}


def test_export_without_a_run_writes_every_record(state_dir: Path) -> None:
    result = CliRunner().invoke(app, ["export", "--state-dir", str(state_dir)])

    assert len(result.output.splitlines()) == 5
