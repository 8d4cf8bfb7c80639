"""`accord`: run and inspect the mesh."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from types import FrameType

import typer

from accord.cli import agents, clients, keys, policy, scaffold, workflows
from accord.cli.approve import approve
from accord.cli.audit import app as audit_app
from accord.cli.demo import run_demo
from accord.cli.runs import runs
from accord.cli.status import collect_status, render_status
from accord.cli.trace import trace
from accord.mesh import MeshRunner
from accord.topology import repo_root

app = typer.Typer(help="Accord: a protocol-native agent mesh.", no_args_is_help=True)
app.add_typer(policy.app, name="policy")
app.add_typer(keys.app, name="keys")
app.add_typer(audit_app, name="audit")
app.command(name="trace")(trace)
app.command(name="runs")(runs)
app.command(name="approve")(approve)
app.add_typer(agents.app, name="agents")
app.add_typer(clients.app, name="clients")
app.add_typer(scaffold.app, name="new")
app.add_typer(workflows.app, name="workflows")

StateDir = typer.Option(None, help="Where logs, stores and secrets live (default: <repo>/.accord).")


def _state_dir(value: Path | None) -> Path:
    return value or repo_root() / ".accord"


@app.command()
def up(
    state_dir: Path | None = StateDir,
    host: str = typer.Option("127.0.0.1", help="Address every service binds to."),
    port_offset: int = typer.Option(0, help="Added to every port of the topology."),
) -> None:
    """Start the whole mesh as local processes; Ctrl-C or SIGTERM stops all of them."""
    runner = MeshRunner(_state_dir(state_dir), host=host, port_offset=port_offset)
    stop = threading.Event()

    def request_stop(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    runner.start()
    try:
        typer.echo(render_status(collect_status(runner.topology, host, port_offset)))
        typer.echo(f"\nlogs: {runner.state_dir / 'logs'}   stop: Ctrl-C")
        while not stop.wait(0.5):
            for name, service in runner.services.items():
                if service.process.poll() is not None:
                    typer.echo(
                        f"{name} exited with {service.process.returncode}; stopping the mesh", err=True
                    )
                    stop.set()
    finally:
        runner.stop()
        typer.echo("mesh stopped")


@app.command()
def status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    host: str = typer.Option("127.0.0.1"),
    port_offset: int = typer.Option(0),
) -> None:
    """Each service's URL and health."""
    from accord.topology import load_topology

    rows = collect_status(load_topology(), host, port_offset)
    typer.echo(json.dumps(rows, indent=2) if as_json else render_status(rows))
    if not all(row["ready"] for row in rows):
        raise typer.Exit(1)


@app.command()
def demo(
    state_dir: Path | None = StateDir,
    port_offset: int = typer.Option(0, help="Added to every port of the topology."),
    applicants: int = typer.Option(6, min=1, help="How many sample applicants to run."),
) -> None:
    """Start the mesh, run credit-risk for sample applicants, print decisions, stop the mesh."""
    runner = MeshRunner(_state_dir(state_dir), port_offset=port_offset)
    typer.echo("starting the mesh ...")
    runner.start()
    try:
        ok = run_demo(runner.url("orchestrator"), runner.operator_auth(), applicants, typer.echo)
    finally:
        runner.stop()
        typer.echo("mesh stopped")
    if not ok:
        raise typer.Exit(1)


@app.command()
def compose(
    write: bool = typer.Option(
        False, "--write", help="Write docker-compose.yml, the Dockerfiles and deploy/k8s (what changed)."
    ),
) -> None:
    """Render docker-compose.yml from deploy/topology.yaml (prints it unless --write)."""
    from accord.compose import render_compose
    from accord.deploy_files import write_files
    from accord.topology import load_topology

    topology = load_topology()
    if write:
        for path in write_files(topology, repo_root()):
            typer.echo(f"wrote {path}")
    else:
        typer.echo(render_compose(topology), nl=False)


if __name__ == "__main__":
    app()
