"""Forged and misplaced Agent Cards against a real registry process: each is refused with its exact HTTP
status, gRPC status and reason code, audited, and leaves the registry as it was.

The attacker runs real servers on loopback: one serves the forged cards, another serves the attacker's
key set that a forged card points `jku` at. The registry must never contact the latter.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import httpx
import pytest
from a2a.types import AgentCard
from a2a.utils.signing import ProtectedHeader, create_agent_card_signer
from jwt.api_jwk import PyJWK

from accord.card_signing import CardSigner
from accord.cards import SkillSchemas, build_card, card_to_dict
from accord.keys import KeyRing
from accord.proto.registry.v1 import registry_pb2, registry_pb2_grpc
from tests.independent_card_check import jcs, without_empty
from tests.registry_harness import (
    OPEN_SCHEMA,
    CardServer,
    Registry,
    card_server_on,
    card_source,
    grpc_refusal,
    registry_process,
    unique,
)

SKILL = "sanctions-screening"


@dataclass
class World:
    registry: Registry
    publisher: CardServer  # the trusted publisher's agents
    attacker: CardServer  # forged cards
    attacker_keys: CardServer  # the attacker's key set, named by `jku`
    attacker_ring: KeyRing
    genuine_url: str
    genuine_name: str


@pytest.fixture(scope="module")
def registry_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("card-refusals")


@pytest.fixture(scope="module")
def registry(registry_state: Path) -> Iterator[Registry]:
    with registry_process(registry_state) as running:
        yield running


@pytest.fixture(scope="module")
async def world(registry: Registry, registry_state: Path) -> AsyncIterator[World]:
    attacker_ring = KeyRing.generate()
    async with (
        card_server_on(CardSigner.local(registry_state)) as publisher,
        card_server_on(CardSigner(attacker_ring)) as attacker,
        card_server_on(None) as attacker_keys,
    ):
        attacker_keys.serve_json(attacker_ring.public_jwks(), "jwks.json")
        name = unique("sanctions-agent")
        genuine_url = publisher.serve_agent(name, {SKILL: ["compliance"]})
        async with httpx.AsyncClient(timeout=10) as http:
            assert (
                await http.post(registry.base_url + "/v1/agents", json={"card_url": genuine_url})
            ).is_success
        yield World(registry, publisher, attacker, attacker_keys, attacker_ring, genuine_url, name)


@pytest.fixture
async def stub(registry: Registry) -> AsyncIterator[registry_pb2_grpc.RegistryServiceStub]:
    async with grpc.aio.insecure_channel(registry.grpc_target) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        yield registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]


async def served_json(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as http:
        body: dict[str, Any] = (await http.get(url)).json()
    return body


def forged_card(server: CardServer, name: str) -> AgentCard:
    """An unsigned card for `name` whose interfaces are at `server` (so only its signature is wrong)."""
    schemas = {SKILL: SkillSchemas(OPEN_SCHEMA, OPEN_SCHEMA)}
    source = card_source(name, {SKILL: ["compliance"]})
    return build_card(source, f"{server.base_url}/{name}", None, schemas)


async def refused_everywhere(world: World, stub: Any, card_url: str, reason: str, status: int = 422) -> None:
    """Refused over REST and gRPC with `reason`, audited twice, and nothing in the registry changed."""
    before = await world.registry.agents()
    audited = len(await world.registry.audit())
    async with httpx.AsyncClient(base_url=world.registry.base_url, timeout=10) as http:
        answer = await http.post("/v1/agents", json={"card_url": card_url})
    via_grpc = await grpc_refusal(stub.RegisterAgent(registry_pb2.RegisterAgentRequest(card_url=card_url)))

    assert (answer.status_code, answer.json()["error"]["reason"]) == (status, reason)
    assert via_grpc == (grpc.StatusCode.FAILED_PRECONDITION, reason)
    assert await world.registry.agents() == before
    new_records = (await world.registry.audit())[audited:]
    assert [(r["action"], r["outcome"], r["reason"]) for r in new_records] == [
        ("agent.register", "refused", reason)
    ] * 2
    assert all(r["details"]["card_url"] == card_url for r in new_records)
    async with httpx.AsyncClient(base_url=world.registry.base_url, timeout=10) as http:
        found = (await http.get("/v1/discover", params={"skill": SKILL})).json()["agents"]
    assert [agent["card_url"] for agent in found] == [world.genuine_url]


async def test_an_unsigned_card_is_refused_as_card_unsigned(world: World, stub: Any) -> None:
    url = world.publisher.serve_agent(unique("unsigned-agent"), {SKILL: []}, signer=None)
    await refused_everywhere(world, stub, url, "card_unsigned")


async def test_a_card_edited_after_signing_is_refused_as_card_signature_invalid(
    world: World, stub: Any
) -> None:
    genuine = await served_json(world.publisher.serve_agent(unique("edited-agent"), {SKILL: []}))
    # Same origin, same signature, one word changed: the skill now promises something else.
    genuine["skills"][0]["description"] = "does sanctions-screening and wires funds"
    url = world.publisher.serve_json(genuine)
    await refused_everywhere(world, stub, url, "card_signature_invalid")


async def test_a_card_with_one_byte_changed_is_refused_as_card_signature_invalid(
    world: World, stub: Any
) -> None:
    genuine = await served_json(world.publisher.serve_agent(unique("byte-agent"), {SKILL: []}))
    genuine["version"] = "1.0.1"
    await refused_everywhere(world, stub, world.publisher.serve_json(genuine), "card_signature_invalid")


async def test_a_card_signed_by_an_unknown_key_pointing_jku_at_the_attackers_keys_is_refused_unfetched(
    world: World, stub: Any
) -> None:
    name = unique("jku-agent")
    card = forged_card(world.attacker, name)
    jku = world.attacker_keys.base_url + "/docs/jwks.json"
    header = {"alg": "ES256", "kid": world.attacker_ring.active.kid, "typ": "JOSE", "jku": jku}
    key = PyJWK(world.attacker_ring.active.private_jwk(), "ES256")
    signed = create_agent_card_signer(key, cast(ProtectedHeader, header))(card)
    url = world.attacker.serve_json(card_to_dict(signed), f"{name}.json")

    await refused_everywhere(world, stub, url, "card_signer_unknown")

    assert world.attacker_keys.hits == [], "the registry never fetched the attacker's key set"
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(jku)).json() == world.attacker_ring.public_jwks(), "the key set is real"
    assert world.attacker_keys.hits == ["/docs/jwks.json"]


async def test_a_genuine_signed_card_served_from_another_origin_is_refused_as_card_origin_mismatch(
    world: World, stub: Any
) -> None:
    genuine = await served_json(world.genuine_url)
    copy_url = world.attacker.serve_json(genuine)
    await refused_everywhere(world, stub, copy_url, "card_origin_mismatch")


async def test_an_hs256_card_is_refused_as_card_algorithm_not_allowed(world: World, stub: Any) -> None:
    card = forged_card(world.publisher, unique("hmac-agent"))
    trusted_kid = CardSigner.local(world.registry.state).ring.active.kid
    protected = _b64(json.dumps({"alg": "HS256", "kid": trusted_kid, "typ": "JOSE"}).encode())
    payload = _b64(jcs(without_empty(card_to_dict(card))).encode())
    mac = hmac.new(b"guessable-secret", f"{protected}.{payload}".encode(), hashlib.sha256).digest()
    document = {**card_to_dict(card), "signatures": [{"protected": protected, "signature": _b64(mac)}]}
    await refused_everywhere(world, stub, world.publisher.serve_json(document), "card_algorithm_not_allowed")


async def test_a_card_signed_by_a_key_the_registry_does_not_trust_is_refused_even_at_its_own_origin(
    world: World, stub: Any
) -> None:
    url = world.attacker.serve_agent(unique("stranger-agent"), {SKILL: []})
    await refused_everywhere(world, stub, url, "card_signer_unknown")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
