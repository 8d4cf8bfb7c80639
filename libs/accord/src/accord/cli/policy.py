"""`accord policy check [FILE]`: validate the gateway's policies before they are deployed.

The gateway reloads its tool policy (`tools.yaml`) and its relay's delegation policy (`delegation.yaml`)
when they change and refuses an invalid one; this command shows the same verdict first, with every problem
and its line. Without FILE it checks both deployed files; a FILE is checked as a delegation policy when it
names `callers`, else as a tool policy. Exit status 0: valid; 1: invalid (errors on stderr).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from accord.topology import repo_root

app = typer.Typer(
    help="Gateway policies (deploy/policies/tools.yaml, delegation.yaml).", no_args_is_help=True
)


@app.command()
def check(
    file: Annotated[
        Path | None,
        typer.Argument(help="Policy file (default: the deployed tools.yaml and delegation.yaml)."),
    ] = None,
) -> None:
    """Validate policy files; print a summary, or every error with its line."""
    policies = repo_root() / "deploy" / "policies"
    if file is not None:
        valid = _check_delegation(file) if _names_callers(file) else _check_tools(file)
    else:
        # Both, so one invalid file does not hide the other's problems.
        valid = all([_check_tools(policies / "tools.yaml"), _check_delegation(policies / "delegation.yaml")])
    if not valid:
        raise typer.Exit(1)


def _names_callers(path: Path) -> bool:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False  # the tool policy's parser reports why the file cannot be used
    return isinstance(document, dict) and "callers" in document


def _check_tools(path: Path) -> bool:
    # The gateway owns the policy language; the CLI uses the very parser the gateway enforces with.
    from gateway.policy import PolicyError, load_policy

    try:
        policy = load_policy(path)
    except PolicyError as exc:
        _report(path, exc.problems)
        return False
    clients = policy.document.clients
    typer.echo(f"{path}: valid (sha256 {policy.digest[:16]}, {len(clients)} client(s))")
    for client_id, entry in sorted(clients.items()):
        tools = ", ".join(rule.tool for rule in entry.tools) or "(no tools)"
        issuer = f" [{entry.issuer}]" if entry.issuer else ""
        reads = [f"resources of {u}" for u in entry.resources] + [f"prompts of {u}" for u in entry.prompts]
        typer.echo(f"  {client_id}{issuer}: {tools}" + (f"; {', '.join(reads)}" if reads else ""))
    return True


def _check_delegation(path: Path) -> bool:
    from gateway.policy import PolicyError
    from gateway.relay import load_delegation

    try:
        policy = load_delegation(path)
    except PolicyError as exc:
        _report(path, exc.problems)
        return False
    callers = policy.document.callers
    typer.echo(f"{path}: valid (sha256 {policy.digest[:16]}, {len(callers)} caller(s))")
    for caller, rules in sorted(callers.items()):
        for agent, skills in sorted(rules.agents.items()):
            typer.echo(f"  {caller} -> {agent}: {', '.join(skills)}")
    return True


def _report(path: Path, problems: list[str]) -> None:
    for problem in problems:
        typer.echo(problem, err=True)
    typer.echo(f"{path}: invalid ({len(problems)} problem(s))", err=True)
