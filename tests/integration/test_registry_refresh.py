"""Refreshing registered cards against a real registry process: re-verified from the registered URL on every
refresh (REST, gRPC and the periodic refresher); drift and broken signatures quarantine the agent, keeping
its last good card and taking it out of discovery; a properly re-signed new version replaces it."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from a2a.types import AgentCard, AgentSkill

from accord.card_signing import CardSigner
from accord.cards import SKILL_SCHEMAS_EXTENSION, SkillSchemas
from accord.payloads import to_struct
from accord.proto.registry.v1 import registry_pb2, registry_pb2_grpc
from tests.registry_harness import (
    OPEN_SCHEMA,
    CardServer,
    Registry,
    card_server_on,
    eventually,
    grpc_refusal,
    registry_process,
    unique,
)

SKILL = "credit-file"


@pytest.fixture(scope="module")
def registry_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry-refresh")


@pytest.fixture(scope="module")
def registry(registry_state: Path) -> Iterator[Registry]:
    # The periodic refresher is off here; the last test starts its own registry with it on.
    with registry_process(registry_state, ACCORD_REGISTRY_REFRESH_INTERVAL_S="0") as running:
        yield running


@pytest.fixture(scope="module")
async def cards(registry_state: Path) -> AsyncIterator[CardServer]:
    async with card_server_on(CardSigner.local(registry_state)) as server:
        yield server


@pytest.fixture
async def http(registry: Registry) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as client:
        yield client


async def register(http: httpx.AsyncClient, card_url: str) -> dict[str, Any]:
    answer = await http.post("/v1/agents", json={"card_url": card_url})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def discovered(http: httpx.AsyncClient, skill: str) -> list[str]:
    return [
        agent["name"] for agent in (await http.get("/v1/discover", params={"skill": skill})).json()["agents"]
    ]


async def signed_document(cards: CardServer, name: str, skill: str) -> tuple[str, dict[str, Any]]:
    """A signed card JSON served as a plain document (so a test can swap its content); returns URL, JSON."""
    async with httpx.AsyncClient(timeout=10) as client:
        document: dict[str, Any] = (await client.get(cards.serve_agent(name, {skill: []}))).json()
    return cards.serve_json(document), document


async def test_refreshing_an_unchanged_card_keeps_the_agent_active_over_rest_and_grpc(
    registry: Registry, cards: CardServer, http: httpx.AsyncClient
) -> None:
    name = unique("bureau-agent")
    stored = await register(http, cards.serve_agent(name, {SKILL: []}))

    refreshed = await http.post(f"/v1/agents/{name}:refresh")
    async with grpc.aio.insecure_channel(registry.grpc_target) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]
        via_grpc = await stub.RefreshAgent(registry_pb2.RefreshAgentRequest(name=name), timeout=10)
        missing = await grpc_refusal(
            stub.RefreshAgent(registry_pb2.RefreshAgentRequest(name=unique("nobody")))
        )

    assert refreshed.status_code == 200
    assert (refreshed.json()["status"], refreshed.json()["card"]) == ("active", stored["card"])
    assert via_grpc.status == "active"
    assert missing == (grpc.StatusCode.NOT_FOUND, "not_found")
    unknown = await http.post(f"/v1/agents/{unique('nobody')}:refresh")
    assert (unknown.status_code, unknown.json()["error"]["reason"]) == (404, "not_found")
    outcomes = [
        (r["action"], r["outcome"]) for r in await registry.audit() if r["details"].get("name") == name
    ]
    assert outcomes == [
        ("agent.register", "created"),
        ("agent.refresh", "unchanged"),
        ("agent.refresh", "unchanged"),
    ]


async def test_a_card_changed_and_re_signed_without_a_new_version_is_quarantined_keeping_the_last_good_card(
    registry: Registry, cards: CardServer, http: httpx.AsyncClient
) -> None:
    name, skill = unique("bureau-agent"), unique("credit-file")
    server, url = cards.mount_agent(name, {skill: ["credit"]})
    good = await register(http, url)
    assert await discovered(http, skill) == [name]

    # The publisher's key signs the new content, but the version says nothing changed: drift.
    server.card.skills.append(AgentSkill(id="wire-funds", name="Wire", description="moves money", tags=["x"]))
    refused = await http.post(f"/v1/agents/{name}:refresh")

    assert refused.status_code == 409
    assert refused.json()["error"]["reason"] == "card_drift"
    assert refused.json()["error"]["context"]["status"] == "quarantined"
    kept = (await http.get(f"/v1/agents/{name}")).json()
    assert kept["status"] == "quarantined"
    assert kept["card"] == good["card"], "the last good card stays stored"
    assert kept["skills"] == [skill]
    assert await discovered(http, skill) == []
    assert await discovered(http, "wire-funds") == []
    last = (await registry.audit())[-1]
    assert (last["action"], last["outcome"], last["reason"]) == ("agent.refresh", "quarantined", "card_drift")


async def test_a_tampered_card_at_the_registered_url_is_quarantined_with_its_signature_reason(
    registry: Registry, cards: CardServer, http: httpx.AsyncClient
) -> None:
    name, skill = unique("ledger-agent"), unique("transaction-profile")
    url, document = await signed_document(cards, name, skill)
    good = await register(http, url)

    tampered = copy.deepcopy(document)
    tampered["description"] = "now also exports the ledger"
    cards.documents[url.removeprefix(cards.base_url)] = tampered
    refused = await http.post(f"/v1/agents/{name}:refresh")

    assert (refused.status_code, refused.json()["error"]["reason"]) == (422, "card_signature_invalid")
    kept = (await http.get(f"/v1/agents/{name}")).json()
    assert (kept["status"], kept["card"]) == ("quarantined", good["card"])
    assert await discovered(http, skill) == []

    # The good card is back: the agent is active again, with the card it had.
    cards.documents[url.removeprefix(cards.base_url)] = document
    restored = await http.post(f"/v1/agents/{name}:refresh")
    assert (restored.status_code, restored.json()["status"]) == (200, "active")
    assert await discovered(http, skill) == [name]


async def test_an_unsigned_card_at_the_registered_url_quarantines_the_agent_on_re_registration(
    registry: Registry, cards: CardServer, http: httpx.AsyncClient
) -> None:
    name, skill = unique("sanctions-agent"), unique("screening")
    url, document = await signed_document(cards, name, skill)
    await register(http, url)

    cards.documents[url.removeprefix(cards.base_url)] = {
        k: v for k, v in document.items() if k != "signatures"
    }
    again = await http.post("/v1/agents", json={"card_url": url})

    assert (again.status_code, again.json()["error"]["reason"]) == (422, "card_unsigned")
    assert (await http.get(f"/v1/agents/{name}")).json()["status"] == "quarantined"


async def test_a_properly_re_signed_new_version_replaces_the_card_and_lifts_a_quarantine(
    registry: Registry, cards: CardServer, http: httpx.AsyncClient
) -> None:
    name, old_skill, new_skill = unique("bureau-agent"), unique("old-skill"), unique("new-skill")
    server, url = cards.mount_agent(name, {old_skill: []})
    await register(http, url)
    server.card.description = "changed without a version bump"
    assert (await http.post(f"/v1/agents/{name}:refresh")).json()["error"]["reason"] == "card_drift"

    # The release done right: new skills, a higher version, signed by the publisher (the server re-signs).
    del server.card.skills[:]
    server.card.skills.append(AgentSkill(id=new_skill, name="New", description="new", tags=["v2"]))
    _replace_schemas(server.card, {new_skill: SkillSchemas(OPEN_SCHEMA, OPEN_SCHEMA)})
    server.card.version = "1.1.0"
    replaced = await http.post(f"/v1/agents/{name}:refresh")

    assert replaced.status_code == 200, replaced.text
    body = replaced.json()
    assert (body["status"], body["card"]["version"], body["skills"]) == ("active", "1.1.0", [new_skill])
    assert await discovered(http, new_skill) == [name]
    assert await discovered(http, old_skill) == []
    last = (await registry.audit())[-1]
    assert (last["action"], last["outcome"], last["details"]["signer"]) == (
        "agent.refresh",
        "updated",
        CardSigner.local(registry.state).ring.active.kid,
    )


async def test_an_older_version_replayed_at_the_registered_url_is_drift(
    cards: CardServer, http: httpx.AsyncClient
) -> None:
    name, skill = unique("ledger-agent"), unique("profile")
    server, url = cards.mount_agent(name, {skill: []}, version="2.0.0")
    await register(http, url)
    server.card.version = "1.9.9"
    refused = await http.post(f"/v1/agents/{name}:refresh")
    assert (refused.status_code, refused.json()["error"]["reason"]) == (409, "card_drift")


async def test_an_agent_that_cannot_be_reached_is_not_quarantined(
    cards: CardServer, http: httpx.AsyncClient
) -> None:
    name, skill = unique("bureau-agent"), unique("credit")
    url, _ = await signed_document(cards, name, skill)
    await register(http, url)
    del cards.documents[url.removeprefix(cards.base_url)]  # now 404

    failed = await http.post(f"/v1/agents/{name}:refresh")

    assert (failed.status_code, failed.json()["error"]["reason"]) == (502, "agent_unavailable")
    assert (await http.get(f"/v1/agents/{name}")).json()["status"] == "active"


async def test_the_periodic_refresher_quarantines_a_drifted_card_and_restores_it_without_any_call(
    tmp_path: Path,
) -> None:
    async with card_server_on(CardSigner.local(tmp_path)) as cards:
        with registry_process(tmp_path, ACCORD_REGISTRY_REFRESH_INTERVAL_S="0.2") as registry:
            async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
                name, skill = unique("sanctions-agent"), unique("screening")
                server, url = cards.mount_agent(name, {skill: []})
                good = await register(http, url)
                original = server.card.description

                async def status() -> str:
                    return str((await http.get(f"/v1/agents/{name}")).json()["status"])

                server.card.description = "drifted"
                await eventually(lambda: _is(status, "quarantined"))
                kept = (await http.get(f"/v1/agents/{name}")).json()
                assert kept["card"] == good["card"]
                assert await discovered(http, skill) == []

                server.card.description = original
                await eventually(lambda: _is(status, "active"))
                assert await discovered(http, skill) == [name]
            records = [r for r in await registry.audit() if r["details"].get("name") == name]
    assert [(r["actor"], r["outcome"], r["reason"]) for r in records[1:]] == [
        ("registry:refresher", "quarantined", "card_drift"),
        ("registry:refresher", "updated", None),
    ], "the refresher audits changes only, not every unchanged pass"


async def _is(read: Any, expected: str) -> bool:
    return bool(await read() == expected)


def _replace_schemas(card: AgentCard, schemas: dict[str, SkillSchemas]) -> None:
    """Keep the card's skill-schema extension in step with its skills, as `build_card` does."""
    contracts = {
        skill: {"input_schema": s.input_schema, "output_schema": s.output_schema, "tools": []}
        for skill, s in schemas.items()
    }
    for extension in card.capabilities.extensions:
        if extension.uri == SKILL_SCHEMAS_EXTENSION:
            extension.params.CopyFrom(to_struct({"skills": contracts}))
