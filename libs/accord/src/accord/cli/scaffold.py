"""`accord new agent <name>`: scaffold a working specialist agent (see `accord.scaffold`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from accord.scaffold import ScaffoldError, plan_agent
from accord.topology import repo_root

app = typer.Typer(help="Create new mesh parts from templates.", no_args_is_help=True)


@app.command()
def agent(
    name: Annotated[str, typer.Argument(help="Kebab-case name without '-agent' (e.g. 'fraud').")],
    description: Annotated[str, typer.Option(help="What the agent does (its card's description).")] = "",
    root: Annotated[
        Path | None, typer.Option("--repo-root", help="The checkout to scaffold into (default: this one).")
    ] = None,
) -> None:
    """Scaffold services/<name>-agent, its card, policy, client, topology entry and test."""
    target = root or repo_root()
    try:
        scaffold = plan_agent(target, name, description)
    except ScaffoldError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from None
    for path in scaffold.write(target):
        typer.echo(f"wrote {path}")
    names = scaffold.names
    typer.echo(
        f"\n{names.agent}: skill {names.skill}, ports {scaffold.port} (gRPC {scaffold.grpc_port})\n"
        "next: uv sync (installs the package), accord up (starts it), then see docs/adding-an-agent.md"
    )
