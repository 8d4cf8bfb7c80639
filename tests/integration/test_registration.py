"""Registering agents as an operator (admin credential, AI inventory) and as the agent itself (local mode),
against a real `python -m registry` process over REST, gRPC and the `accord agents` CLI.

The harness (a registry with an admin secret and a tool policy, card servers on chosen loopback addresses)
is `tests.registry_harness`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from typer.testing import CliRunner

from accord.card_signing import CardSigner
from accord.cli.main import app as cli
from accord.errors import AccordError
from accord.proto.registry.v1 import registry_pb2, registry_pb2_grpc
from accord.registry_client import InventoryEntry, RegistryClient
from tests.registry_harness import (
    ADMIN,
    SCOPES,
    CardServer,
    Registry,
    card_server_at,
    card_server_on,
    grpc_refusal,
    registration_registry,
    registry_env,
    unique,
)

# Registry processes start slowly on a loaded machine; the first test of a module waits for them.
pytestmark = pytest.mark.timeout(300)


async def audit_tail(registry: Registry, since: int) -> list[tuple[str, str, str | None]]:
    return [(r["action"], r["outcome"], r["reason"]) for r in (await registry.audit())[since:]]


def inventory_for(owner: str, policy: str = "partner-scorer", **fields: str) -> InventoryEntry:
    return InventoryEntry(
        owner=owner,
        policy=policy,
        purpose=fields.get("purpose", ""),
        model=fields.get("model", ""),
        model_version=fields.get("model_version", ""),
        risk=fields.get("risk", ""),
        review_date=fields.get("review_date", ""),
    )


def cli_run(*args: str) -> Any:
    """`accord ...` in a worker thread (the CLI runs its own event loop)."""
    return asyncio.to_thread(CliRunner().invoke, cli, list(args))


@pytest.fixture(scope="module")
def registry_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registration")


@pytest.fixture(scope="module")
def registry(registry_state: Path) -> Iterator[Registry]:
    with registration_registry(registry_state, **registry_env(registry_state, local_mode=True)) as running:
        yield running


@pytest.fixture(scope="module")
async def cards(registry_state: Path) -> AsyncIterator[CardServer]:
    async with card_server_on(CardSigner.local(registry_state)) as server:
        yield server


@pytest.fixture(scope="module")
async def far_cards(registry_state: Path) -> AsyncIterator[CardServer]:
    """Signed by the trusted publisher, but served from 127.0.0.2: not where the test's requests come from."""
    async with card_server_at("127.0.0.2", CardSigner.local(registry_state)) as server:
        yield server


@pytest.fixture
async def admin(registry: Registry) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(registry.base_url, timeout=20, admin_secret=ADMIN) as client:
        yield client


@pytest.fixture
async def anonymous(registry: Registry) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(registry.base_url, timeout=20) as client:
        yield client


async def test_an_operator_registers_an_agent_with_its_ai_inventory_and_policy_scopes(
    registry: Registry, admin: RegistryClient, far_cards: CardServer
) -> None:
    name = unique("scorer-agent")
    url = far_cards.serve_agent(name, {unique("score"): ["credit"]})
    review = (date.today() + timedelta(days=90)).isoformat()
    since = len(await registry.audit())

    agent = await admin.register(
        url,
        inventory_for(
            "risk-team",
            purpose="Scores partner applications",
            model="gpt-x",
            model_version="2026-01",
            risk="high",
            review_date=review,
        ),
    )

    assert (agent.name, agent.status, agent.owner) == (name, "active", "risk-team")
    assert agent.inventory is not None
    assert agent.inventory.policy == "partner-scorer"
    assert agent.inventory.data_access == tuple(SCOPES)
    assert (agent.inventory.model, agent.inventory.model_version) == ("gpt-x", "2026-01")
    assert (agent.inventory.risk, agent.inventory.review_date) == ("high", review)
    assert agent.inventory.purpose == "Scores partner applications"
    assert (await admin.get(name)).inventory == agent.inventory
    [event] = (await registry.audit())[since:]
    assert (event["action"], event["outcome"]) == ("agent.register", "created")
    assert event["details"]["owner"] == "risk-team"


async def test_the_review_date_defaults_to_a_year_and_the_risk_to_minimal(
    admin: RegistryClient, far_cards: CardServer
) -> None:
    url = far_cards.serve_agent(unique("plain-agent"), {unique("plain"): []})

    agent = await admin.register(url, inventory_for("ops", policy="no-tools"))

    assert agent.inventory is not None
    assert agent.inventory.risk == "minimal"
    assert agent.inventory.data_access == ()
    today = datetime.now(UTC).date()
    assert date.fromisoformat(agent.inventory.review_date) in {
        today.replace(year=today.year + 1),
        today.replace(year=today.year + 1, day=28),
    }


async def test_an_agent_registers_itself_in_local_mode_from_its_own_address_unassessed(
    registry: Registry, anonymous: RegistryClient, cards: CardServer
) -> None:
    name = unique("self-agent")
    url = cards.serve_agent(name, {unique("self-skill"): []})

    agent = await anonymous.register(url)

    assert (agent.name, agent.owner) == (name, "local")
    assert agent.inventory is not None
    assert (agent.inventory.risk, agent.inventory.policy, agent.inventory.review_date) == (
        "unassessed",
        name,
        "",
    )
    assert agent.inventory.purpose == f"{name} for tests"
    # An operator then registers the same URL with an inventory entry: the agent changes hands.
    async with RegistryClient(registry.base_url, timeout=20, admin_secret=ADMIN) as admin:
        claimed = await admin.register(url, inventory_for("risk-team", risk="limited"))
    assert (claimed.name, claimed.owner, claimed.inventory.risk if claimed.inventory else None) == (
        name,
        "risk-team",
        "limited",
    )
    # ... and the agent's own re-registration at its next start keeps that entry.
    assert (await anonymous.register(url)).owner == "risk-team"


async def test_without_the_admin_credential_a_card_elsewhere_is_refused_unauthenticated(
    registry: Registry, anonymous: RegistryClient, far_cards: CardServer
) -> None:
    url = far_cards.serve_agent(unique("elsewhere-agent"), {unique("elsewhere"): []})
    before = await registry.agents()
    since = len(await registry.audit())

    with pytest.raises(AccordError) as refused:
        await anonymous.register(url)

    assert refused.value.reason == "unauthenticated"
    assert await registry.agents() == before
    assert await audit_tail(registry, since) == [("agent.register", "refused", "unauthenticated")]
    assert far_cards.hits == []  # refused before the card was fetched


async def test_an_inventory_entry_or_a_wrong_secret_without_the_credential_is_refused(
    registry: Registry, cards: CardServer
) -> None:
    url = cards.serve_agent(unique("claim-agent"), {unique("claim"): []})
    before = await registry.agents()
    since = len(await registry.audit())
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=20) as http:
        claim = await http.post("/v1/agents", json={"card_url": url, "owner": "me", "policy": "no-tools"})
        wrong = await http.post(
            "/v1/agents", json={"card_url": url}, headers={"Authorization": "Bearer not-the-secret"}
        )
        other_scheme = await http.delete(
            f"/v1/agents/{unique('x')}", headers={"Authorization": f"Basic {ADMIN}"}
        )

    for answer in (claim, wrong, other_scheme):
        assert (answer.status_code, answer.json()["error"]["reason"]) == (401, "unauthenticated")
    assert await registry.agents() == before
    assert await audit_tail(registry, since) == [
        ("agent.register", "refused", "unauthenticated"),
        ("agent.register", "refused", "unauthenticated"),
        ("agent.remove", "refused", "unauthenticated"),
    ]


async def test_only_an_operator_removes_an_agent_that_is_not_the_caller(
    registry: Registry, admin: RegistryClient, anonymous: RegistryClient, far_cards: CardServer
) -> None:
    name = unique("removable-agent")
    await admin.register(far_cards.serve_agent(name, {unique("removable"): []}), inventory_for("ops"))

    with pytest.raises(AccordError) as refused:
        await anonymous.remove(name)
    assert refused.value.reason == "unauthenticated"
    assert name in [a.name for a in await anonymous.list()]

    await admin.remove(name)
    assert name not in [a.name for a in await anonymous.list()]


async def test_grpc_registers_with_the_inventory_and_refuses_writes_without_the_credential(
    registry: Registry, far_cards: CardServer
) -> None:
    name = unique("grpc-agent")
    url = far_cards.serve_agent(name, {unique("grpc-skill"): ["grpc"]})
    credential = (("authorization", f"Bearer {ADMIN}"),)
    request = registry_pb2.RegisterAgentRequest(
        card_url=url, owner="grpc-team", policy="partner-scorer", model="rules", risk="limited"
    )
    async with grpc.aio.insecure_channel(registry.grpc_target) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]
        anonymous = await grpc_refusal(stub.RegisterAgent(request, timeout=20))
        agent = await stub.RegisterAgent(request, metadata=credential, timeout=20)
        unauth_remove = await grpc_refusal(
            stub.RemoveAgent(registry_pb2.RemoveAgentRequest(name=name), timeout=20)
        )
        await stub.RemoveAgent(registry_pb2.RemoveAgentRequest(name=name), metadata=credential, timeout=20)

    assert anonymous == (grpc.StatusCode.UNAUTHENTICATED, "unauthenticated")
    assert unauth_remove == (grpc.StatusCode.UNAUTHENTICATED, "unauthenticated")
    assert (agent.name, agent.inventory.owner, agent.inventory.risk) == (name, "grpc-team", "limited")
    assert list(agent.inventory.data_access) == SCOPES
    assert agent.inventory.review_date


async def test_the_cli_registers_lists_shows_and_removes_an_agent(
    registry: Registry, far_cards: CardServer
) -> None:
    name = unique("cli-agent")
    url = far_cards.serve_agent(name, {unique("cli-skill"): []})
    common = ["--registry-url", registry.base_url]

    registered = await cli_run(
        "agents", "register", url, "--owner", "cli-team", "--policy", "partner-scorer",
        "--purpose", "CLI test", "--model", "none", "--risk", "limited", "--admin-secret", ADMIN, *common,
    )  # fmt: skip
    listed = await cli_run("agents", "list", *common)
    shown = await cli_run("agents", "show", name, "--json", *common)
    refused = await cli_run("agents", "remove", name, "--admin-secret", "wrong-secret-0123456789", *common)
    removed = await cli_run("agents", "remove", name, "--admin-secret", ADMIN, *common)
    missing = await cli_run("agents", "show", name, *common)

    assert registered.exit_code == 0, registered.output
    assert f"registered {name}" in registered.output
    assert "owner: cli-team" in registered.output
    assert name in listed.output
    assert "cli-team" in listed.output
    view = json.loads(shown.output)
    assert view["inventory"]["data_access"] == SCOPES
    assert view["inventory"]["risk"] == "limited"
    assert (refused.exit_code, "refused: unauthenticated" in refused.output) == (1, True)
    assert removed.exit_code == 0
    assert (missing.exit_code, "refused: not_found" in missing.output) == (1, True)
