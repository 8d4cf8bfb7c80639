"""`accord agents`: register, list, show and remove agents at the registry, as an operator.

`register` records the agent's AI inventory entry (owner, policy, purpose, model, risk, review date); the
registry fetches the card (SSRF-checked), verifies its signature, health-checks the agent and reads the
data access its policy grants. Writes need the registry's admin secret: `--admin-secret`, else
`ACCORD_REGISTRY_ADMIN_SECRET`, else the local mesh's (`<state dir>/secrets.json`, written by `accord up`).
Exit status 1 on a refusal, with its reason code on stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from accord.errors import AccordError
from accord.operator_credentials import read_local_secret
from accord.registry_client import InventoryEntry, RegisteredAgent, RegistryClient

REGISTRY_URL_ENV = "ACCORD_REGISTRY_URL"
REGISTRY_SECRET_ENV = "ACCORD_REGISTRY_ADMIN_SECRET"  # noqa: S105 (a name, not a secret)
REGISTRY_SECRET_NAME = "registry-admin"  # noqa: S105 (a name, not a secret)
DEFAULT_REGISTRY_URL = "http://127.0.0.1:8701"

app = typer.Typer(help="Agents at the registry: register, list, show, remove.", no_args_is_help=True)

RegistryUrl = Annotated[
    str | None,
    typer.Option("--registry-url", help=f"Default: ${REGISTRY_URL_ENV} or {DEFAULT_REGISTRY_URL}."),
]
AdminSecret = Annotated[
    str | None,
    typer.Option("--admin-secret", help=f"Default: ${REGISTRY_SECRET_ENV} or the local mesh's secret."),
]
StateDir = Annotated[Path | None, typer.Option(help="The local mesh's state dir (default: <repo>/.accord).")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

T = TypeVar("T")


def local_secret(explicit: str | None, env_name: str, secret_name: str, state_dir: Path | None) -> str | None:
    """An admin secret: given, from the environment, or from the local mesh's secrets file."""
    if explicit:
        return explicit
    if os.environ.get(env_name):
        return os.environ[env_name]
    return read_local_secret(state_dir, secret_name)


def run_or_exit(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one async call; a refusal prints its reason code and exits 1."""
    try:
        return asyncio.run(work())
    except AccordError as error:
        typer.echo(f"refused: {error.reason}: {error.detail}", err=True)
        raise typer.Exit(1) from None


def _client(registry_url: str | None, secret: str | None = None) -> RegistryClient:
    url = registry_url or os.environ.get(REGISTRY_URL_ENV) or DEFAULT_REGISTRY_URL
    # Registration fetches and health-checks the agent: allow more than one round trip of time.
    return RegistryClient(url, timeout=30.0, admin_secret=secret)


@app.command()
def register(
    card_url: Annotated[str, typer.Argument(help="The agent's card URL (…/.well-known/agent-card.json).")],
    owner: Annotated[str, typer.Option(help="Who answers for the agent (team or person id).")],
    policy: Annotated[str, typer.Option(help="Its client entry in deploy/policies/tools.yaml.")],
    purpose: Annotated[str, typer.Option(help="What the agent is for.")] = "",
    model: Annotated[str, typer.Option(help="The model it runs (or 'none' for rules only).")] = "",
    model_version: Annotated[str, typer.Option("--model-version", help="The model's version.")] = "",
    risk: Annotated[str, typer.Option(help="minimal | limited | high.")] = "minimal",
    review_date: Annotated[
        str, typer.Option("--review-date", help="Next review, YYYY-MM-DD (default: in a year).")
    ] = "",
    registry_url: RegistryUrl = None,
    admin_secret: AdminSecret = None,
    state_dir: StateDir = None,
    as_json: AsJson = False,
) -> None:
    """Register (or re-register) an agent from its card URL, with its AI inventory entry."""
    secret = local_secret(admin_secret, REGISTRY_SECRET_ENV, REGISTRY_SECRET_NAME, state_dir)
    entry = InventoryEntry(owner, policy, purpose, model, model_version, risk, review_date)

    async def work() -> RegisteredAgent:
        async with _client(registry_url, secret) as client:
            return await client.register(card_url, entry)

    agent = run_or_exit(work)
    typer.echo(json.dumps(agent_view(agent), indent=2) if as_json else f"registered {agent.name}")
    if not as_json:
        typer.echo(render_agent(agent))


@app.command("list")
def list_agents(registry_url: RegistryUrl = None, as_json: AsJson = False) -> None:
    """Every registered agent with its owner, status and skills."""

    async def work() -> list[RegisteredAgent]:
        async with _client(registry_url) as client:
            return await client.list()

    agents = run_or_exit(work)
    if as_json:
        typer.echo(json.dumps([agent_view(agent) for agent in agents], indent=2))
        return
    rows = [("NAME", "OWNER", "STATUS", "RISK", "SKILLS")]
    rows += [
        (a.name, a.owner or "-", a.status, a.inventory.risk if a.inventory else "-", ",".join(a.skills))
        for a in agents
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + row[4])


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="The agent's name.")],
    registry_url: RegistryUrl = None,
    as_json: AsJson = False,
) -> None:
    """One agent: its card URL, status, skills and AI inventory entry."""

    async def work() -> RegisteredAgent:
        async with _client(registry_url) as client:
            return await client.get(name)

    agent = run_or_exit(work)
    typer.echo(json.dumps(agent_view(agent), indent=2) if as_json else render_agent(agent))


@app.command()
def remove(
    name: Annotated[str, typer.Argument(help="The agent's name.")],
    registry_url: RegistryUrl = None,
    admin_secret: AdminSecret = None,
    state_dir: StateDir = None,
) -> None:
    """Remove an agent from the registry (it is no longer discovered)."""
    secret = local_secret(admin_secret, REGISTRY_SECRET_ENV, REGISTRY_SECRET_NAME, state_dir)

    async def work() -> None:
        async with _client(registry_url, secret) as client:
            await client.remove(name)

    run_or_exit(work)
    typer.echo(f"removed {name}")


def agent_view(agent: RegisteredAgent) -> dict[str, Any]:
    inventory = agent.inventory
    return {
        "name": agent.name,
        "card_url": agent.card_url,
        "status": agent.status,
        "skills": list(agent.skills),
        "tags": list(agent.tags),
        "inventory": None
        if inventory is None
        else {
            "owner": inventory.owner,
            "policy": inventory.policy,
            "purpose": inventory.purpose,
            "model": inventory.model,
            "model_version": inventory.model_version,
            "risk": inventory.risk,
            "review_date": inventory.review_date or None,
            "data_access": list(inventory.data_access),
        },
    }


def render_agent(agent: RegisteredAgent) -> str:
    view = agent_view(agent)
    lines = [f"{key}: {view[key]}" for key in ("name", "card_url", "status")]
    lines.append(f"skills: {', '.join(agent.skills)}")
    for key, value in (view["inventory"] or {}).items():
        shown = ", ".join(value) if isinstance(value, list) else value
        lines.append(f"{key}: {shown if shown not in (None, '') else '-'}")
    return "\n".join(lines)
