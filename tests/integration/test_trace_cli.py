"""`accord trace` and `accord runs` over a state dir like the mesh leaves it: span files per service, the
orchestrator's run store and audit trail."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from typer.testing import CliRunner

from accord.audit import AuditEvent, AuditLog
from accord.cli.runs import runs
from accord.cli.trace import trace
from accord.span_store import SqliteSpanSink, StoredSpan, span_file
from accord.storage import create_engine
from accord.testing.ports import free_port

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
RUN_ID = "7d9a3f0e-2c41-4b8e-9f57-0c1e2d3a4b5c"
T0 = 1_700_000_000_000_000_000
MS = 1_000_000

cli = typer.Typer()
cli.command(name="trace")(trace)
cli.command(name="runs")(runs)


def span(
    service: str, span_id: str, parent: str | None, name: str, start_ms: int, end_ms: int, **attributes: Any
) -> StoredSpan:
    kind = attributes.pop("kind", "internal")
    return StoredSpan(
        trace_id=TRACE_ID,
        span_id=span_id.ljust(16, "0"),
        parent_span_id=parent.ljust(16, "0") if parent else None,
        service=service,
        name=name,
        kind=kind,
        start_ns=T0 + start_ms * MS,
        end_ns=T0 + end_ms * MS,
        status=attributes.pop("status", "unset"),
        run_id=attributes.get("accord.run_id"),
        attributes=attributes,
    )


def synthetic_run() -> list[StoredSpan]:
    """A credit-risk-like run: two agents in parallel, one tool call through the gateway; bureau slowest."""
    run = {"accord.run_id": RUN_ID, "accord.workflow": "credit-risk"}
    return [
        span("orchestrator", "a1", None, "POST /v1/workflows/{name}/runs", 0, 400, kind="server", **run),
        span(
            "orchestrator",
            "b1",
            "a1",
            "invoke_agent sanctions-agent",
            10,
            150,
            kind="client",
            **{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "sanctions-agent", **run},
        ),
        span("orchestrator", "c1", "b1", "POST", 12, 148, kind="client", **{"url.path": "/a2a/jsonrpc"}),
        span("sanctions-agent", "d1", "c1", "POST /a2a/jsonrpc", 15, 145, kind="server"),
        span(
            "sanctions-agent",
            "e1",
            "d1",
            "execute_tool sanctions.search",
            20,
            120,
            **{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "sanctions.search"},
        ),
        span(
            "gateway",
            "f1",
            "e1",
            "tools/call sanctions.search",
            25,
            115,
            kind="server",
            **{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "sanctions.search"},
        ),
        span(
            "sanctions-tools",
            "a2",
            "f1",
            "tools/call search",
            40,
            100,
            kind="server",
            **{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"},
        ),
        span(
            "orchestrator",
            "b2",
            "a1",
            "invoke_agent bureau-agent",
            10,
            390,
            kind="client",
            **{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "bureau-agent", **run},
        ),
        span(
            "bureau-agent",
            "c2",
            "b2",
            "POST /a2a/jsonrpc",
            20,
            380,
            kind="server",
            **{
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.output_tokens": 20,
                "accord.usage.cost_usd": 0.01,
            },
        ),
        span(
            "bureau-agent", "d2", "c2", "validate", 30, 40, status="error", **{"error.type": "invalid_input"}
        ),
    ]


def write_spans(state_dir: Path, spans: list[StoredSpan]) -> None:
    for service in {s.service for s in spans}:
        sink = SqliteSpanSink(span_file(state_dir, service))
        sink.write([s for s in spans if s.service == service])
        sink.close()


def write_runs(state_dir: Path, runs: list[dict[str, Any]]) -> None:
    connection = sqlite3.connect(state_dir / "orchestrator.db")
    connection.execute(
        "CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, workflow TEXT, status TEXT, actor TEXT, "
        "input TEXT, steps TEXT, result TEXT, error TEXT, created_at REAL, finished_at REAL, trace_id TEXT, "
        "budget TEXT)"
    )
    for run in runs:
        connection.execute(
            "INSERT INTO runs VALUES (?, ?, ?, 'rest:127.0.0.1', '{}', '[]', ?, NULL, ?, ?, ?, ?)",
            (
                run["id"],
                run.get("workflow", "credit-risk"),
                run.get("status", "completed"),
                json.dumps(run.get("result")),
                run["created_at"],
                run.get("finished_at"),
                run.get("trace_id"),
                json.dumps(run.get("budget")),
            ),
        )
    connection.commit()
    connection.close()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    write_spans(tmp_path, synthetic_run())
    return tmp_path


def invoke(*args: str) -> Any:
    # A closed port: the CLI falls back from the orchestrator's REST API to its store.
    closed = f"http://127.0.0.1:{free_port()}"
    return CliRunner().invoke(cli, [*args, "--orchestrator-url", closed])


ROW = re.compile(r"^([* ]) +([\d.]+)ms +([\d.]+)ms  (.{16}) (.{46}) \|(.*)\|( !)?$")


def waterfall_rows(output: str) -> list[dict[str, Any]]:
    rows = []
    for line in output.splitlines():
        match = ROW.match(line)
        if match:
            marker, offset, duration, service, label, bar, error = match.groups()
            rows.append(
                {
                    "critical": marker == "*",
                    "offset_ms": float(offset),
                    "duration_ms": float(duration),
                    "service": service.strip(),
                    "depth": (len(label) - len(label.lstrip())) // 2,
                    "label": label.strip(),
                    "bar": bar,
                    "error": error is not None,
                }
            )
    return rows


def test_the_waterfall_has_one_line_per_span_nested_with_the_slowest_path_marked(state_dir: Path) -> None:
    result = invoke("trace", TRACE_ID, "--state-dir", str(state_dir))

    assert result.exit_code == 0, result.output
    rows = waterfall_rows(result.output)
    assert result.output.splitlines()[0] == f"trace {TRACE_ID}"
    assert [(r["depth"], r["service"], r["label"]) for r in rows] == [
        (0, "orchestrator", "POST /v1/workflows/{name}/runs"),
        (1, "orchestrator", "invoke_agent bureau-agent"),
        (2, "bureau-agent", "POST /a2a/jsonrpc"),
        (3, "bureau-agent", "validate"),
        (1, "orchestrator", "invoke_agent sanctions-agent"),
        (2, "orchestrator", "POST /a2a/jsonrpc"),  # a client span: its method and path
        (3, "sanctions-agent", "POST /a2a/jsonrpc"),
        (4, "sanctions-agent", "execute_tool sanctions.search"),
        (5, "gateway", "tools/call sanctions.search"),
        (6, "sanctions-tools", "tools/call search"),
    ]
    assert [r["label"] for r in rows if r["critical"]] == [
        "POST /v1/workflows/{name}/runs",
        "invoke_agent bureau-agent",
        "POST /a2a/jsonrpc",
        "validate",
    ]
    assert [r["label"] for r in rows if r["error"]] == ["validate"]
    axis = result.output.splitlines()[2]
    assert axis.split()[-5:] == ["0ms", "100ms", "200ms", "300ms", "400ms"]


def test_the_numbers_on_each_line_are_the_spans_offsets_and_durations(state_dir: Path) -> None:
    result = invoke("trace", TRACE_ID, "--state-dir", str(state_dir))

    listed = waterfall_rows(result.output)
    assert sorted((r["service"], r["offset_ms"], r["duration_ms"]) for r in listed) == sorted(
        (s.service, (s.start_ns - T0) / MS, s.duration_ms) for s in synthetic_run()
    )
    rows = {(r["service"], r["label"]): r for r in listed}
    sanctions = rows[("orchestrator", "invoke_agent sanctions-agent")]
    bar = sanctions["bar"]
    width = len(bar)
    assert bar.index("▒") == int(10 / 400 * width)
    assert len(bar.strip()) == round(140 / 400 * width)
    assert rows[("orchestrator", "POST /v1/workflows/{name}/runs")]["bar"] == "█" * width


def test_the_summary_accounts_each_agent_and_tool_inside_and_around(state_dir: Path) -> None:
    result = invoke("trace", TRACE_ID, "--state-dir", str(state_dir), "--json")

    document = json.loads(result.output)
    summary = document["summary"]
    assert document["duration_ms"] == 400.0
    assert summary["run_ids"] == [RUN_ID]
    assert summary["agents"]["bureau-agent"]["total_ms"] == 380.0
    assert summary["agents"]["bureau-agent"]["work_ms"] == 360.0
    assert summary["agents"]["bureau-agent"]["around_ms"] == 20.0
    assert summary["agents"]["bureau-agent"]["cost_usd"] == 0.01
    # One tool call, though three services saw it: counted once, as the agent saw it.
    assert list(summary["tools"]) == ["sanctions.search"]
    tool = summary["tools"]["sanctions.search"]
    assert {k: tool[k] for k in ("calls", "total_ms", "work_ms", "around_ms")} == {
        "calls": 1,
        "total_ms": 100.0,
        "work_ms": 60.0,  # inside the tool server
        "around_ms": 40.0,  # the gateway and the hops
    }
    totals = summary["totals"]
    assert (totals["spans"], totals["errors"], totals["input_tokens"], totals["cost_usd"]) == (
        10,
        1,
        100,
        0.01,
    )
    assert [s["depth"] for s in document["spans"]] == [0, 1, 2, 3, 1, 2, 3, 4, 5, 6]
    assert [s["span_id"][:2] for s in document["spans"] if s["critical"]] == ["a1", "b2", "c2", "d2"]
    assert [span_id[:2] for span_id in document["critical_path"]] == ["a1", "b2", "c2", "d2"]


def test_a_run_id_finds_its_trace_through_the_run_record(state_dir: Path) -> None:
    write_runs(state_dir, [{"id": RUN_ID, "created_at": time.time(), "trace_id": TRACE_ID}])

    result = invoke("trace", RUN_ID, "--state-dir", str(state_dir))

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"trace {TRACE_ID}  run {RUN_ID}"


def test_a_run_id_finds_its_trace_through_the_audit_trail_when_the_run_record_has_none(
    state_dir: Path,
) -> None:
    async def audit() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{state_dir / 'orchestrator.db'}")
        log = AuditLog(engine, "orchestrator")
        await log.initialize()
        await log.append(AuditEvent("rest:client", "run.start", "allowed", trace_id=TRACE_ID, run_id="run-b"))
        await engine.dispose()

    asyncio.run(audit())
    write_runs(state_dir, [{"id": "run-b", "created_at": time.time()}])

    result = invoke("trace", "run-b", "--state-dir", str(state_dir))

    assert result.exit_code == 0, result.output
    assert f"trace {TRACE_ID}  run run-b" in result.output


def test_an_unknown_run_is_an_error_naming_it(state_dir: Path) -> None:
    result = invoke("trace", "no-such-run", "--state-dir", str(state_dir))

    assert result.exit_code == 1
    assert "no-such-run" in result.output


def test_runs_lists_recent_runs_from_the_store_with_status_duration_and_cost(state_dir: Path) -> None:
    now = time.time()
    write_runs(
        state_dir,
        [
            {
                "id": RUN_ID,
                "created_at": now - 10,
                "finished_at": now - 9.6,
                "trace_id": TRACE_ID,
                "result": {"decision": "refer"},
            },
            {"id": "run-running", "created_at": now - 1, "status": "running"},
            {
                "id": "run-priced",
                "created_at": now - 20,
                "finished_at": now - 19,
                "budget": {"limits": {}, "spent": {"tasks": 3, "tokens": 900, "cost": 0.0042}},
            },
        ],
    )

    result = invoke("runs", "--state-dir", str(state_dir), "--json")

    newest, oldest, priced = json.loads(result.output)
    assert (priced["id"], priced["cost_usd"]) == ("run-priced", 0.0042)  # the run's own budget record
    assert (newest["id"], newest["status"], newest["cost_usd"]) == ("run-running", "running", None)
    assert (oldest["id"], oldest["status"], oldest["decision"]) == (RUN_ID, "completed", "refer")
    assert oldest["duration_s"] == pytest.approx(0.4, abs=1e-3)
    assert oldest["cost_usd"] == 0.01  # from the run's spans
    text = invoke("runs", "--state-dir", str(state_dir)).output
    row = next(line for line in text.splitlines() if line.startswith(RUN_ID))
    assert re.search(r"  400 ms +\$0\.0100  refer$", row), row


STAND_IN_TOKEN = "stand-in-token"


@pytest.fixture
def orchestrator_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A stand-in orchestrator REST API on a real port: runs as the orchestrator returns them, to a caller
    with the token its stand-in token endpoint issues to the operator (the gateway's part, in brief)."""
    app = FastAPI()
    run = {"id": "rest-run", "workflow": "credit-risk", "status": "completed", "created_at": 100.0}
    run |= {"finished_at": 100.25, "trace_id": TRACE_ID, "result": {"decision": "approve"}}
    run["budget"] = {"limits": {}, "spent": {"tasks": 3, "tokens": 1000, "cost": 0.5}, "exceeded": None}

    def authorized(request: Request) -> None:
        if request.headers.get("authorization") != f"Bearer {STAND_IN_TOKEN}":
            raise HTTPException(401)

    @app.post("/oauth/token")
    async def token(request: Request) -> dict[str, Any]:
        form = await request.form()
        assert form["grant_type"] == "client_credentials"
        assert form["resource"] == f"http://127.0.0.1:{port}"
        return {"access_token": STAND_IN_TOKEN, "token_type": "Bearer", "expires_in": 300}

    @app.get("/v1/runs")
    async def recent(request: Request) -> dict[str, Any]:
        authorized(request)
        return {"runs": [run]}

    @app.get("/v1/runs/{run_id}")
    async def one(request: Request, run_id: str) -> dict[str, Any]:
        authorized(request)
        return run

    port = free_port()
    monkeypatch.setenv("ACCORD_GATEWAY_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("ACCORD_OPERATOR_CLIENT_SECRET", "operator-secret")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "stand-in API did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_runs_and_trace_read_the_orchestrators_rest_api_when_it_is_up(
    state_dir: Path, orchestrator_api: str
) -> None:
    listed = CliRunner().invoke(
        cli, ["runs", "--state-dir", str(state_dir), "--orchestrator-url", orchestrator_api]
    )
    traced = CliRunner().invoke(
        cli, ["trace", "rest-run", "--state-dir", str(state_dir), "--orchestrator-url", orchestrator_api]
    )

    row = next(line for line in listed.output.splitlines() if line.startswith("rest-run"))
    assert re.search(r"  250 ms +\$0\.5000  approve$", row), row
    assert traced.output.splitlines()[0] == f"trace {TRACE_ID}  run rest-run"
