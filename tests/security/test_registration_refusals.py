"""Every way a registration is refused, against real registry processes: the exact status and reason code,
an audit record of the refusal, and a registry left exactly as it was.

Two registries: one in local mode (loopback cards allowed, as `accord up` runs it) for card, ownership and
health refusals, and one outside local mode for SSRF refusals, allowed to reach exactly one loopback
`ip:port` (a redirector) so that redirects can be followed and refused at the hop that goes inside.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from accord.card_signing import CardSigner
from accord.cards import SkillSchemas, build_card, card_to_dict
from accord.keys import KeyRing
from accord.proto.registry.v1 import registry_pb2, registry_pb2_grpc
from tests.registry_harness import (
    ADMIN,
    OPEN_SCHEMA,
    CardServer,
    Registry,
    card_server_on,
    card_source,
    free_port,
    grpc_refusal,
    registration_registry,
    registry_env,
    unique,
)

# Registry processes start slowly on a loaded machine; the first test of a module waits for them.
pytestmark = pytest.mark.timeout(300)
CYRILLIC_E = "\u0435"
CREDENTIAL = (("authorization", f"Bearer {ADMIN}"),)


@dataclass
class World:
    registry: Registry
    cards: CardServer  # trusted publisher's agents
    forger: CardServer  # agents signed by an untrusted key


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registration-refusals")


@pytest.fixture(scope="module")
def local_registry(state: Path) -> Iterator[Registry]:
    with registration_registry(state, **registry_env(state, local_mode=True)) as running:
        yield running


@pytest.fixture(scope="module")
async def world(local_registry: Registry, state: Path) -> AsyncIterator[World]:
    async with (
        card_server_on(CardSigner.local(state)) as cards,
        card_server_on(CardSigner(KeyRing.generate())) as forger,
    ):
        # A health-check target: a signed card whose A2A endpoint is down (503).
        cards.app.router.routes.append(Route("/down/{rest:path}", lambda _r: Response(status_code=503)))
        yield World(local_registry, cards, forger)


def body(card_url: str, owner: str = "team-a", **fields: str) -> dict[str, Any]:
    return {"card_url": card_url, "owner": owner, "policy": "partner-scorer", **fields}


async def refused(registry: Registry, request: dict[str, Any], status: int, reason: str) -> dict[str, Any]:
    """POST as the operator; assert status + reason, one audited refusal, and an unchanged catalog."""
    before = await registry.agents()
    audited = len(await registry.audit())
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=30) as http:
        answer = await http.post("/v1/agents", json=request, headers={"Authorization": f"Bearer {ADMIN}"})
    error: dict[str, Any] = answer.json()["error"]
    assert (answer.status_code, error["reason"]) == (status, reason), error
    assert await registry.agents() == before
    records = (await registry.audit())[audited:]
    assert [(r["action"], r["outcome"], r["reason"]) for r in records] == [
        ("agent.register", "refused", reason)
    ]
    assert records[0]["details"]["card_url"] == request["card_url"]
    return error


async def register(registry: Registry, request: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=30) as http:
        answer = await http.post("/v1/agents", json=request, headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


# Card trust -------------------------------------------------------------------------------------------


async def test_an_unsigned_card_is_refused_as_card_unsigned(world: World) -> None:
    url = world.cards.serve_agent(unique("unsigned-agent"), {unique("s"): []}, signer=None)
    await refused(world.registry, body(url), 422, "card_unsigned")


async def test_a_card_signed_by_an_untrusted_key_is_refused_as_card_signer_unknown(world: World) -> None:
    url = world.forger.serve_agent(unique("forged-agent"), {unique("s"): []})
    await refused(world.registry, body(url), 422, "card_signer_unknown")


async def test_a_card_changed_after_signing_is_refused_as_card_signature_invalid(world: World) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        genuine = (await http.get(world.cards.serve_agent(unique("edited-agent"), {unique("s"): []}))).json()
    genuine["description"] = "now also moves money"
    await refused(world.registry, body(world.cards.serve_json(genuine)), 422, "card_signature_invalid")


# Reachability -----------------------------------------------------------------------------------------


async def test_an_unreachable_agent_is_refused_as_agent_unavailable(world: World) -> None:
    url = f"http://127.0.0.1:{free_port()}/.well-known/agent-card.json"
    await refused(world.registry, body(url), 502, "agent_unavailable")


async def test_an_agent_whose_a2a_endpoint_fails_its_health_check_is_refused(
    world: World, state: Path
) -> None:
    name = unique("down-agent")
    schemas = {"down-skill": SkillSchemas(OPEN_SCHEMA, OPEN_SCHEMA)}
    card = build_card(card_source(name, {"down-skill": []}), f"{world.cards.base_url}/down", None, schemas)
    url = world.cards.serve_json(card_to_dict(CardSigner.local(state).sign(card)))
    error = await refused(world.registry, body(url), 502, "agent_unavailable")
    assert "health" in error["message"] or "A2A endpoint" in error["message"]


# Inventory --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"policy": "nobody-in-tools-yaml"}, "no tool policy"),
        ({"risk": "unacceptable"}, "risk must be"),
        ({"review_date": (date.today() - timedelta(days=1)).isoformat()}, "past"),
        ({"review_date": "next spring"}, "YYYY-MM-DD"),
        ({"owner": "has spaces"}, "owner"),
    ],
)
async def test_an_invalid_inventory_entry_is_refused_as_invalid_input(
    world: World, fields: dict[str, str], problem: str
) -> None:
    url = world.cards.serve_agent(unique("inventory-agent"), {unique("s"): []})
    error = await refused(world.registry, {**body(url), **fields}, 422, "invalid_input")
    assert problem in error["message"]


# Names, skills and owners -----------------------------------------------------------------------------


async def test_another_owners_name_at_another_url_is_refused_as_agent_shadowing(world: World) -> None:
    name = unique("alpha-agent")
    await register(world.registry, body(world.cards.serve_agent(name, {unique("alpha"): []}), owner="team-a"))

    impostor = world.cards.serve_agent(name, {unique("other"): []})
    await refused(world.registry, body(impostor, owner="team-b"), 409, "agent_shadowing")
    # Upper case is a lookalike too.
    upper = world.cards.serve_agent(name.upper(), {unique("other"): []})
    await refused(world.registry, body(upper, owner="team-b"), 409, "agent_shadowing")


async def test_offering_another_owners_skill_or_a_lookalike_of_it_is_refused_as_agent_shadowing(
    world: World,
) -> None:
    skill = unique("credit-file")
    await register(
        world.registry, body(world.cards.serve_agent(unique("bureau-a"), {skill: []}), owner="team-a")
    )

    same = world.cards.serve_agent(unique("bureau-b"), {skill: []})
    await refused(world.registry, body(same, owner="team-b"), 409, "agent_shadowing")
    lookalike = world.cards.serve_agent(unique("bureau-c"), {skill.replace("e", CYRILLIC_E, 1): []})
    error = await refused(world.registry, body(lookalike, owner="team-b"), 409, "agent_shadowing")
    assert error["context"]["existing"] == skill


async def test_one_owners_lookalike_names_and_skill_ids_are_refused_as_name_confusable(world: World) -> None:
    suffix = unique("x").removeprefix("x-")
    skill = f"credit-file-{suffix}"
    await register(
        world.registry, body(world.cards.serve_agent(f"team-{suffix}", {skill: []}), owner="team-c")
    )

    lookalike_name = world.cards.serve_agent(f"tearn-{suffix}", {unique("other"): []})  # rn ~ m
    await refused(world.registry, body(lookalike_name, owner="team-c"), 409, "name_confusable")
    lookalike_skill = world.cards.serve_agent(unique("second"), {skill.replace("l", "I", 1): []})  # I ~ l
    await refused(world.registry, body(lookalike_skill, owner="team-c"), 409, "name_confusable")
    # The same owner may offer the very same skill from a second agent.
    await register(
        world.registry, body(world.cards.serve_agent(unique("replica"), {skill: []}), owner="team-c")
    )


async def test_grpc_refusals_carry_the_error_tables_status_and_reason(world: World) -> None:
    name = unique("grpc-alpha")
    await register(world.registry, body(world.cards.serve_agent(name, {unique("g"): []}), owner="team-a"))
    shadow = world.cards.serve_agent(name, {unique("g"): []})
    request = registry_pb2.RegisterAgentRequest(card_url=shadow, owner="team-b", policy="partner-scorer")
    async with grpc.aio.insecure_channel(world.registry.grpc_target) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]
        refusal = await grpc_refusal(stub.RegisterAgent(request, metadata=CREDENTIAL, timeout=30))
    assert refusal == (grpc.StatusCode.ALREADY_EXISTS, "agent_shadowing")


# SSRF (outside local mode) ----------------------------------------------------------------------------


@dataclass
class Strict:
    registry: Registry
    redirector: CardServer
    closed_port: int


@pytest.fixture(scope="module")
async def strict(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Strict]:
    state = tmp_path_factory.mktemp("registration-ssrf")
    closed = free_port()
    async with card_server_on(CardSigner.local(state)) as redirector:
        targets = {
            "metadata": "http://169.254.169.254/latest/meta-data/iam/",
            "decimal": f"http://2130706433:{closed}/card.json",
            "mapped": f"http://[::ffff:127.0.0.1]:{closed}/card.json",
        }
        for name, target in targets.items():
            redirector.app.router.routes.append(
                Route(f"/redirect/{name}", lambda _r, t=target: RedirectResponse(t, status_code=302))
            )
        allowed = redirector.base_url.removeprefix("http://")
        env = registry_env(state, local_mode=False, ACCORD_REGISTRY_ALLOWED_TARGETS=f'["{allowed}"]')
        process = await asyncio.to_thread(lambda: registration_registry(state, **env))
        registry = await asyncio.to_thread(process.__enter__)
        try:
            yield Strict(registry, redirector, closed)
        finally:
            await asyncio.to_thread(process.__exit__, None, None, None)


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433:{closed}/card.json",  # decimal
        "http://0177.0.0.1:{closed}/card.json",  # octal
        "http://0x7f.0.0.1:{closed}/card.json",  # hex
        "http://127.1:{closed}/card.json",  # short form
        "http://[::ffff:127.0.0.1]:{closed}/card.json",  # IPv6-mapped
        "http://[::1]:{closed}/card.json",
        "http://localhost:{closed}/card.json",  # a name resolving to loopback
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/card.json",
        "http://0.0.0.0:{closed}/card.json",
        "{redirector}/redirect/metadata",  # allowed hop, then metadata
        "{redirector}/redirect/decimal",
        "{redirector}/redirect/mapped",
    ],
)
async def test_internal_and_metadata_targets_are_refused_as_target_forbidden(
    strict: Strict, url: str
) -> None:
    card_url = url.format(closed=strict.closed_port, redirector=strict.redirector.base_url)
    error = await refused(strict.registry, body(card_url), 403, "target_forbidden")
    assert "address" in error["message"] or "interface" in error["message"]


async def test_outside_local_mode_an_agent_cannot_register_itself(strict: Strict) -> None:
    url = strict.redirector.serve_agent(unique("self-agent"), {unique("s"): []})
    before = await strict.registry.agents()
    async with httpx.AsyncClient(base_url=strict.registry.base_url, timeout=30) as http:
        answer = await http.post("/v1/agents", json={"card_url": url})
    assert (answer.status_code, answer.json()["error"]["reason"]) == (401, "unauthenticated")
    assert await strict.registry.agents() == before


async def test_the_one_allowed_target_still_registers_outside_local_mode(strict: Strict) -> None:
    name = unique("allowed-agent")
    created = await register(strict.registry, body(strict.redirector.serve_agent(name, {unique("s"): []})))
    assert (created["name"], created["owner"]) == (name, "team-a")
