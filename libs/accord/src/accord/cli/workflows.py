"""`accord workflows list|check`: the workflow definitions the orchestrator runs, checked before deploy.

`check` validates files (default: every `deploy/workflows/*.yaml`) against the workflow JSON Schema and the
graph rules, printing each problem as `file:line: where: what`; exit status 0 when all are valid, 1 when
not. `list` shows each workflow's steps, patterns and what each step reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from accord.topology import repo_root

app = typer.Typer(help="Workflow definitions (deploy/workflows/*.yaml).", no_args_is_help=True)

Directory = typer.Option(None, "--dir", help="Workflow directory (default: deploy/workflows).")


def _directory(value: Path | None) -> Path:
    return value or repo_root() / "deploy" / "workflows"


@app.command("list")
def list_workflows(directory: Path | None = Directory) -> None:
    """Every workflow with its steps: skill, what it waits for, and its patterns."""
    # The orchestrator owns the workflow language; the CLI uses the very loader the orchestrator runs with.
    from orchestrator.workflows import WorkflowError, load_workflows

    try:
        workflows = load_workflows(_directory(directory))
    except WorkflowError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(1) from None
    for name, spec in sorted(workflows.items()):
        delegated = [step.id for step in spec.steps if step.skill in workflows]
        patterns = spec.patterns() + (["hierarchical"] if delegated else [])
        typer.echo(
            f"{name} v{spec.version}  [{', '.join(patterns) or 'sequence'}]  synthesis: {spec.synthesis}"
        )
        routers = spec.routers()
        for step in spec.steps:
            waits = sorted(step.dependencies() | ({routers[step.id]} if step.id in routers else set()))
            extras = [f"after {', '.join(waits)}" if waits else "starts at once"]
            if step.id in routers:
                extras.append(f"branch of {routers[step.id]}")
            if step.route:
                extras.append(f"routes on {step.route.field}")
            if step.critic:
                extras.append(f"critic {step.critic.skill} (max {step.critic.max_iterations})")
            if step.min_confidence is not None:
                extras.append(f"confidence >= {step.min_confidence:g} else {step.on_low_confidence}")
            typer.echo(f"  {step.id}: {step.skill}  ({'; '.join(extras)})")
        for fact in spec.facts:
            rules = ", ".join(str(getattr(r, "prefer_step", getattr(r, "take", r))) for r in fact.rules)
            typer.echo(f"  fact {fact.name}: {' vs '.join(s.step for s in fact.sources)}  rules: {rules}")


@app.command()
def check(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Workflow files (default: every deploy/workflows/*.yaml).")
    ] = None,
) -> None:
    """Validate workflow files; print a summary, or every problem with its line."""
    from orchestrator.workflows import WorkflowError, delegation_cycles, load_workflow_file

    paths = files or sorted(_directory(None).glob("*.yaml"))
    problems: list[str] = []
    loaded = {}
    for path in paths:
        try:
            loaded[path.stem] = load_workflow_file(path)
        except WorkflowError as exc:
            problems += exc.problems
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror}")
    problems += delegation_cycles(loaded)
    if problems:
        for problem in problems:
            typer.echo(problem, err=True)
        typer.echo(f"{len(problems)} problem(s) in {len(paths)} file(s)", err=True)
        raise typer.Exit(1)
    for name, spec in sorted(loaded.items()):
        typer.echo(f"{name}: valid (v{spec.version}, {len(spec.steps)} step(s))")
