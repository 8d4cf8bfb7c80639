"""`accord clients`: register, list and remove OAuth clients at the gateway's authorization server.

An outside caller (an A2A agent of another team, an MCP client) gets a client id and a generated secret,
shown once; it then uses OAuth client credentials at the gateway (`/oauth/token`). Scopes are what its
tokens may carry without a task grant (`tool:<upstream>.<tool>` still needs a tools.yaml entry to be
usable). The admin secret comes from `--admin-secret`, else `ACCORD_GATEWAY_ADMIN_SECRET`, else the local
mesh's (`<state dir>/secrets.json`). Exit status 1 on a refusal, with its reason code on stderr.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import httpx
import typer

from accord.cli.agents import StateDir, local_secret, run_or_exit
from accord.errors import ERROR_TABLE, AccordError

GATEWAY_URL_ENV = "ACCORD_GATEWAY_URL"
GATEWAY_SECRET_ENV = "ACCORD_GATEWAY_ADMIN_SECRET"  # noqa: S105 (a name, not a secret)
GATEWAY_SECRET_NAME = "gateway-admin"  # noqa: S105 (a name, not a secret)
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8700"
ADMIN_CLIENTS_PATH = "/admin/clients"

app = typer.Typer(help="OAuth clients of the gateway: add, list, remove.", no_args_is_help=True)

GatewayUrl = Annotated[
    str | None, typer.Option("--gateway-url", help=f"Default: ${GATEWAY_URL_ENV} or {DEFAULT_GATEWAY_URL}.")
]
AdminSecret = Annotated[
    str | None,
    typer.Option("--admin-secret", help=f"Default: ${GATEWAY_SECRET_ENV} or the local mesh's secret."),
]


class GatewayAdmin:
    """The gateway's client admin API (`/admin/clients`, bearer admin secret)."""

    def __init__(self, gateway_url: str | None, secret: str | None) -> None:
        url = (gateway_url or os.environ.get(GATEWAY_URL_ENV) or DEFAULT_GATEWAY_URL).rstrip("/")
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        self._http = httpx.AsyncClient(base_url=url, headers=headers, timeout=10.0)

    async def __aenter__(self) -> GatewayAdmin:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._http.aclose()

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, ADMIN_CLIENTS_PATH + path, **kwargs)
        except httpx.HTTPError as exc:
            raise AccordError("upstream_unavailable", "the gateway is unreachable") from exc
        if response.status_code >= 400:
            raise _refusal(response)
        return None if response.status_code == 204 else response.json()


def _refusal(response: httpx.Response) -> AccordError:
    try:
        error = response.json()["error"]
        reason, message = str(error["reason"]), str(error.get("message") or "")
    except (ValueError, KeyError, TypeError):
        return AccordError("internal_error", f"the gateway answered HTTP {response.status_code}")
    return AccordError(reason if reason in ERROR_TABLE else "internal_error", message or None)


def _secret(explicit: str | None, state_dir: Any) -> str | None:
    return local_secret(explicit, GATEWAY_SECRET_ENV, GATEWAY_SECRET_NAME, state_dir)


@app.command()
def add(
    client_id: Annotated[str, typer.Argument(help="The new client's id.")],
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="A scope its tokens may carry (repeatable).")
    ] = None,
    kind: Annotated[str, typer.Option(help="external (an outside caller) or agent.")] = "external",
    description: Annotated[str, typer.Option(help="Who this client is.")] = "",
    gateway_url: GatewayUrl = None,
    admin_secret: AdminSecret = None,
    state_dir: StateDir = None,
) -> None:
    """Register a client; its generated secret is printed once and never stored in clear."""
    body = {"client_id": client_id, "kind": kind, "scopes": scope or [], "description": description}

    async def work() -> Any:
        async with GatewayAdmin(gateway_url, _secret(admin_secret, state_dir)) as admin:
            return await admin.call("POST", "", json=body)

    created = run_or_exit(work)
    typer.echo(f"client_id: {created['client_id']}")
    typer.echo(f"client_secret: {created.get('client_secret', '(none generated)')}")
    typer.echo(f"scopes: {' '.join(created.get('scopes') or []) or '-'}")
    typer.echo("the secret is shown once: store it now")


@app.command("list")
def list_clients(
    gateway_url: GatewayUrl = None,
    admin_secret: AdminSecret = None,
    state_dir: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every client of the authorization server (never a secret)."""

    async def work() -> Any:
        async with GatewayAdmin(gateway_url, _secret(admin_secret, state_dir)) as admin:
            return await admin.call("GET", "")

    clients = run_or_exit(work)["clients"]
    if as_json:
        typer.echo(json.dumps(clients, indent=2))
        return
    for client in clients:
        scopes = " ".join(client.get("scopes") or []) or "-"
        typer.echo(f"{client['client_id']}  {client['kind']}  {scopes}")


@app.command()
def remove(
    client_id: Annotated[str, typer.Argument(help="The client's id.")],
    gateway_url: GatewayUrl = None,
    admin_secret: AdminSecret = None,
    state_dir: StateDir = None,
) -> None:
    """Delete a client: it can get no more tokens."""

    async def work() -> Any:
        async with GatewayAdmin(gateway_url, _secret(admin_secret, state_dir)) as admin:
            return await admin.call("DELETE", f"/{client_id}")

    run_or_exit(work)
    typer.echo(f"removed {client_id}")
