"""Outside callers: `accord clients add|list|remove` against the gateway's real authorization server. The
secret printed once gets a token through OAuth client credentials; after removal it gets none."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from accord.cli.main import app as cli
from tests.oauth_gateway import ADMIN_SECRET, OAuthGateway, oauth_gateway


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OAuthGateway]:
    state: Path = tmp_path_factory.mktemp("clients-gateway")
    async with oauth_gateway(state) as running:
        yield running


def cli_run(*args: str) -> Any:
    return asyncio.to_thread(CliRunner().invoke, cli, list(args))


async def token_for(gateway: OAuthGateway, client_id: str, secret: str, scope: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(
            gateway.url + "/oauth/token",
            data={"grant_type": "client_credentials", "scope": scope, "resource": gateway.mcp_url},
            auth=(client_id, secret),
        )


def field(output: str, name: str) -> str:
    return next(line.split(": ", 1)[1] for line in output.splitlines() if line.startswith(f"{name}: "))


async def test_an_outside_client_added_by_the_cli_gets_tokens_until_it_is_removed(
    gateway: OAuthGateway,
) -> None:
    common = ["--gateway-url", gateway.url, "--admin-secret", ADMIN_SECRET]

    added = await cli_run("clients", "add", "partner-bank", "--scope", "tool:sanctions.search", *common)
    listed = await cli_run("clients", "list", *common)
    secret = field(added.output, "client_secret")
    issued = await token_for(gateway, "partner-bank", secret, "tool:sanctions.search")
    removed = await cli_run("clients", "remove", "partner-bank", *common)
    after = await token_for(gateway, "partner-bank", secret, "tool:sanctions.search")

    assert added.exit_code == 0, added.output
    assert field(added.output, "client_id") == "partner-bank"
    assert len(secret) >= 32
    assert "partner-bank  external  tool:sanctions.search" in listed.output
    assert secret not in listed.output
    assert issued.status_code == 200, issued.text
    assert issued.json()["scope"] == "tool:sanctions.search"
    assert removed.exit_code == 0
    assert (after.status_code, after.json()["error"]) == (401, "invalid_client")


async def test_client_commands_without_the_admin_secret_are_refused_with_their_reason(
    gateway: OAuthGateway,
) -> None:
    wrong = ["--gateway-url", gateway.url, "--admin-secret", "not-the-admin-secret"]

    added = await cli_run("clients", "add", "sneaky", *wrong)
    duplicate = await cli_run("clients", "add", "orchestrator", "--gateway-url", gateway.url,
                              "--admin-secret", ADMIN_SECRET)  # fmt: skip

    assert (added.exit_code, added.output.strip()) == (
        1,
        "refused: unauthenticated: admin credentials required",
    )
    assert duplicate.exit_code == 1
    assert "refused: conflict" in duplicate.output
