"""`accord runs`: recent runs with status, duration and cost; and where a run's trace is found.

Runs come from the orchestrator's REST API when it is up, else straight from its store (the
`orchestrator.db` SQLite file of the state dir, or the shared PostgreSQL database).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import typer
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from accord.audit_trail import AuditTrail
from accord.cli.clients import GATEWAY_URL_ENV
from accord.errors import AccordError
from accord.gateway_client import GatewayBearer
from accord.operator_credentials import operator_bearer
from accord.span_store import SpanReader, is_postgres
from accord.storage import create_engine
from accord.telemetry import COST_USD
from accord.topology import load_topology, repo_root

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
# The run store's JSON columns (`orchestrator.run_store`), stored as text by SQLite.
_JSON_COLUMNS = (
    "input",
    "steps",
    "result",
    "error",
    "conflicts",
    "rationale",
    "review",
    "budget",
    "approvals",
)


def state_dir_or_default(value: Path | None) -> Path:
    env = os.environ.get("ACCORD_STATE_DIR")
    return value or (Path(env) if env else repo_root() / ".accord")


def database_url_or_env(value: str | None) -> str | None:
    return value or os.environ.get("ACCORD_DATABASE_URL") or None


@dataclass
class RunSource:
    """Where runs are read: the orchestrator's REST API first, its store second."""

    state_dir: Path
    orchestrator_url: str | None = None
    database_url: str | None = None
    # The gateway whose authorization server issues the operator's token for the API.
    gateway_url: str | None = None

    @classmethod
    def locate(
        cls, state_dir: Path, orchestrator_url: str | None, database_url: str | None, port_offset: int = 0
    ) -> RunSource:
        return cls(
            state_dir,
            orchestrator_url or _service_url(state_dir, "orchestrator", port_offset),
            database_url,
            os.environ.get(GATEWAY_URL_ENV) or _service_url(state_dir, "gateway", port_offset),
        )

    @functools.cached_property
    def _operator(self) -> GatewayBearer | None:
        """The operator's auth, made once: its token serves every call of this command."""
        if self.orchestrator_url is None or self.gateway_url is None:
            return None
        return operator_bearer(self.gateway_url, self.orchestrator_url.rstrip("/"), self.state_dir)

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        body = await self._rest("/v1/runs", {"limit": limit})
        if isinstance(body, dict) and isinstance(body.get("runs"), list):
            return [run for run in body["runs"] if isinstance(run, dict)]
        return await self._query("SELECT * FROM runs ORDER BY created_at DESC LIMIT :limit", {"limit": limit})

    async def get(self, run_id: str) -> dict[str, Any] | None:
        body = await self._rest(f"/v1/runs/{run_id}", {})
        if isinstance(body, dict) and body.get("id") == run_id:
            return body
        found = await self._query("SELECT * FROM runs WHERE id = :id", {"id": run_id})
        return found[0] if found else None

    async def _rest(self, path: str, params: dict[str, Any]) -> Any:
        """The API's answer as the operator; None (read the store instead) when it cannot be had."""
        auth = self._operator
        if self.orchestrator_url is None or auth is None:
            return None
        try:
            async with httpx.AsyncClient(timeout=3.0, auth=auth) as client:
                response = await client.get(self.orchestrator_url.rstrip("/") + path, params=params)
        except (httpx.HTTPError, AccordError):
            return None
        return response.json() if response.status_code == 200 else None

    async def _query(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        if is_postgres(self.database_url):
            assert self.database_url is not None
            url = self.database_url
        else:
            path = self.state_dir / "orchestrator.db"
            if not path.exists():
                return []
            url = f"sqlite+aiosqlite:///{path}"
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                rows = [dict(row._mapping) for row in await conn.execute(text(sql), params)]
        except SQLAlchemyError:
            return []  # no runs table (yet)
        finally:
            await engine.dispose()
        return [_decoded(row) for row in rows]


def locate_stores(
    state_dir: Path | None, orchestrator_url: str | None, database_url: str | None, port_offset: int
) -> tuple[Path, RunSource, SpanReader]:
    """From a command's options: the state dir, where its runs are read and where its spans are."""
    directory = state_dir_or_default(state_dir)
    database = database_url_or_env(database_url)
    source = RunSource.locate(directory, orchestrator_url, database, port_offset)
    return directory, source, SpanReader(directory, database)


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    for column in _JSON_COLUMNS:
        if isinstance(row.get(column), str):
            row[column] = json.loads(row[column])
    return row


def _service_url(state_dir: Path, name: str, port_offset: int) -> str | None:
    """A service of the running mesh (`mesh.json` of `accord up`), else the topology's address."""
    mesh = state_dir / "mesh.json"
    if mesh.exists():
        url = json.loads(mesh.read_text()).get(name, {}).get("url")
        if isinstance(url, str):
            return url
    try:
        return f"http://127.0.0.1:{load_topology().by_name(name).port + port_offset}"
    except (OSError, KeyError, ValueError):
        return None


async def resolve_traces(
    identifier: str, source: RunSource, spans: SpanReader, trail: AuditTrail | None = None
) -> tuple[str | None, list[str]]:
    """(run id, its trace ids) for a run id or a trace id: the run record's `trace_id` when it has
    one, else the audit records of the run, else spans labelled with the run."""
    if TRACE_ID.match(identifier.lower()):
        return None, [identifier.lower()]
    run = await source.get(identifier)
    if run is not None and isinstance(run.get("trace_id"), str) and run["trace_id"]:
        return identifier, [run["trace_id"]]
    trail = trail or await AuditTrail.load(source.state_dir, source.database_url)
    found = trail.trace_ids_for_run(identifier)
    if found:
        return identifier, found
    return identifier, await spans.trace_ids_for_run(identifier)


def run_cost(run: dict[str, Any]) -> float | None:
    """What the run's model usage cost, as its budget record states (None: a record without it)."""
    spent = (run.get("budget") or {}).get("spent") or {}
    cost = spent.get("cost") if isinstance(spent, dict) else None
    return float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None


async def spans_cost(trace_ids: list[str], spans: SpanReader) -> float | None:
    """The cost recorded on a run's spans, when it has any."""
    found = [s for trace_id in trace_ids for s in await spans.trace(trace_id) if COST_USD in s.attributes]
    return round(sum(float(s.attributes[COST_USD]) for s in found), 6) if found else None


def run_duration_s(run: dict[str, Any], now: float | None = None) -> float | None:
    started = run.get("created_at")
    if not isinstance(started, int | float):
        return None
    finished = run.get("finished_at")
    end = finished if isinstance(finished, int | float) else (now or time.time())
    return max(0.0, float(end) - float(started))


async def collect_runs(source: RunSource, spans: SpanReader, limit: int) -> list[dict[str, Any]]:
    runs = await source.recent(limit)
    trail = await AuditTrail.load(source.state_dir, source.database_url) if runs else None
    rows = []
    for run in runs:
        run_id = str(run.get("id", ""))
        cost = run_cost(run)
        if cost is None and run_id:
            _, traces = await resolve_traces(run_id, _Known(run, source), spans, trail)
            cost = await spans_cost(traces, spans)
        rows.append(
            {
                "id": run_id,
                "workflow": run.get("workflow"),
                "status": run.get("status"),
                "created_at": run.get("created_at"),
                "duration_s": run_duration_s(run),
                "cost_usd": cost,
                "decision": (run.get("result") or {}).get("decision")
                if isinstance(run.get("result"), dict)
                else None,
            }
        )
    return rows


class _Known(RunSource):
    """A source that already holds the run (no second request per listed run)."""

    def __init__(self, run: dict[str, Any], source: RunSource) -> None:
        super().__init__(source.state_dir, None, source.database_url)
        self._run = run

    async def get(self, run_id: str) -> dict[str, Any] | None:
        return self._run if self._run.get("id") == run_id else None


def render_runs(rows: list[dict[str, Any]]) -> str:
    header = f"{'run':<38}{'workflow':<16}{'status':<18}{'started (UTC)':<21}"
    header += f"{'duration':>10}{'cost':>11}  decision"
    lines = [header, "-" * len(header)]
    for row in rows:
        started = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["created_at"]))
            if isinstance(row["created_at"], int | float)
            else "-"
        )
        duration = f"{row['duration_s'] * 1000:.0f} ms" if row["duration_s"] is not None else "-"
        cost = f"${row['cost_usd']:.4f}" if row["cost_usd"] is not None else "-"
        lines.append(
            f"{row['id']:<38}{row['workflow'] or '-'!s:<16}{row['status'] or '-'!s:<18}"
            f"{started:<21}{duration:>10}{cost:>11}  {row['decision'] or '-'}"
        )
    if not rows:
        lines.append("(no runs)")
    return "\n".join(lines)


StateDir = typer.Option(None, help="The mesh's state dir (default: <repo>/.accord).")
OrchestratorUrl = typer.Option(None, help="Default: the running mesh's orchestrator.")
DatabaseUrl = typer.Option(None, help="Shared PostgreSQL (default: ACCORD_DATABASE_URL).")
PortOffset = typer.Option(0, help="Added to the topology's orchestrator port.")
AsJson = typer.Option(False, "--json", help="Machine-readable output.")
Limit = typer.Option(20, min=1, max=500, help="How many recent runs.")


def runs(
    limit: int = Limit,
    as_json: bool = AsJson,
    state_dir: Path | None = StateDir,
    orchestrator_url: str | None = OrchestratorUrl,
    database_url: str | None = DatabaseUrl,
    port_offset: int = PortOffset,
) -> None:
    """Recent runs with status, duration and cost."""
    _, source, spans = locate_stores(state_dir, orchestrator_url, database_url, port_offset)
    rows = asyncio.run(collect_runs(source, spans, limit))
    typer.echo(json.dumps(rows, indent=2) if as_json else render_runs(rows))
