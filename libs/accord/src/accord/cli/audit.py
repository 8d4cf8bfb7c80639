"""`accord audit verify` and `accord audit export`: the mesh's audit trail from every service."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

from accord.audit_trail import AuditTrail
from accord.cli.runs import AsJson, DatabaseUrl, StateDir, database_url_or_env, state_dir_or_default

app = typer.Typer(help="The tamper-evident audit trail of every service.", no_args_is_help=True)

RunId = typer.Option(None, "--run", help="Only this run's trail (every service, in order).")
TraceId = typer.Option(None, "--trace", help="Only the records of this trace.")


def _load(state_dir: Path | None, database_url: str | None) -> AuditTrail:
    return asyncio.run(AuditTrail.load(state_dir_or_default(state_dir), database_url_or_env(database_url)))


@app.command()
def verify(
    state_dir: Path | None = StateDir,
    database_url: str | None = DatabaseUrl,
    as_json: bool = AsJson,
) -> None:
    """Check every service's hash chain; exit 1 naming the first broken record of each broken chain."""
    trail = _load(state_dir, database_url)
    broken = trail.verify()
    if as_json:
        chains = [
            {"source": c.source, "chain": c.name, "records": len(c.records), "head": c.head}
            for c in trail.chains
        ]
        typer.echo(json.dumps({"chains": chains, "broken": [b.__dict__ for b in broken]}, indent=2))
    else:
        for chain in trail.chains:
            failure = next((b for b in broken if (b.source, b.chain) == (chain.source, chain.name)), None)
            state = f"BROKEN at seq {failure.seq}" if failure else "ok"
            typer.echo(f"{chain.name:<20}{chain.source:<24}{len(chain.records):>8} records  {state}")
        if not trail.chains:
            typer.echo("no audit records found")
    if broken:
        for failure in broken:
            typer.echo(f"audit chain broken: {failure.describe()}", err=True)
        raise typer.Exit(1)
    if not as_json:
        total = sum(len(c.records) for c in trail.chains)
        typer.echo(f"audit trail intact: {total} records in {len(trail.chains)} chains")


@app.command()
def export(
    run: str | None = RunId,
    trace: str | None = TraceId,
    state_dir: Path | None = StateDir,
    database_url: str | None = DatabaseUrl,
) -> None:
    """Write audit records as JSON lines (time order across services), each verifiable with its hash."""
    trail = _load(state_dir, database_url)
    if run is not None:
        records = trail.run_trail(run, [trace] if trace else [])
    elif trace is not None:
        records = trail.trace_trail(trace)
    else:
        records = trail.records()
    for record in records:
        typer.echo(json.dumps(record, sort_keys=True, separators=(",", ":"), default=str))
