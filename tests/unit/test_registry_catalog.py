"""The registry catalog against real signed A2A cards served by a real local HTTP server, on a real SQLite
file. Signature refusals, quarantine and rotation are covered in `tests/security/test_card_*.py` and
`tests/integration/test_registry_*.py`."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from a2a.types import AgentCard, AgentSkill
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from accord.a2a_server import A2AServer
from accord.audit import AuditLog, verify_chain
from accord.card_signing import CardSigner, CardVerifier
from accord.cards import SkillSchemas, build_card, card_from_dict, card_to_dict
from accord.errors import AccordError
from accord.keys import KeyRing, TrustStore
from accord.storage import create_engine
from registry.card_intake import CardIntake
from registry.catalog import Catalog
from registry.drift import is_newer_version
from registry.store import AgentStore
from registry.targets import TargetPolicy
from tests.registry_harness import Done, bound_socket, running

FETCH_TIMEOUT_S = 0.5
MAX_CARD_BYTES = 64 * 1024
OPEN_SCHEMA = {"type": "object"}
PUBLISHER = KeyRing.generate()


class CardServer:
    """One uvicorn server; each `serve_agent` mounts a real A2AServer under its own path prefix."""

    def __init__(self, app: Starlette, base_url: str) -> None:
        self.app = app
        self.base_url = base_url

    def serve_agent(
        self, name: str, skills: dict[str, list[str]], prefix: str | None = None
    ) -> tuple[AgentCard, str]:
        """Serve a card for `name` with `skills` ({id: tags}); returns the card and its URL."""
        prefix = prefix or f"{name}-{uuid.uuid4().hex[:6]}"
        source = {
            "name": name,
            "description": f"{name} for tests",
            "version": "1.0.0",
            "capabilities": {},
            "defaultInputModes": ["application/json"],
            "defaultOutputModes": ["application/json"],
            "skills": [
                {"id": sid, "name": sid.title(), "description": f"does {sid}", "tags": tags}
                for sid, tags in skills.items()
            ],
        }
        schemas = {sid: SkillSchemas(OPEN_SCHEMA, OPEN_SCHEMA) for sid in skills}
        card = build_card(source, f"{self.base_url}/{prefix}", None, schemas)
        server = A2AServer(card, Done(), signer=CardSigner(PUBLISHER))
        self.app.router.routes.append(Mount(f"/{prefix}", routes=server.routes()))
        return card, f"{self.base_url}/{prefix}/.well-known/agent-card.json"


def bad_content_routes(release: asyncio.Event) -> list[Route]:
    """Endpoints whose content is not a usable card, or that do not answer until `release` is set."""

    async def never_answers(_request: Request) -> Response:
        await asyncio.wait_for(release.wait(), timeout=10 * FETCH_TIMEOUT_S)
        return Response(status_code=204)

    minimal = {"name": "broken-agent", "version": "1", "supportedInterfaces": [], "skills": []}
    return [
        Route("/bad/text", lambda _r: PlainTextResponse("hello, not a card")),
        Route("/bad/array", lambda _r: JSONResponse([{"name": "x"}])),
        Route(
            "/bad/huge", lambda _r: JSONResponse({"name": "huge", "description": "x" * (2 * MAX_CARD_BYTES)})
        ),
        Route("/bad/missing-fields", lambda _r: JSONResponse(minimal)),
        Route("/bad/wrong-types", lambda _r: JSONResponse({"name": ["not", "a", "string"]})),
        Route("/bad/error", lambda _r: JSONResponse({"oops": True}, status_code=500)),
        Route("/bad/slow", never_answers),
    ]


@pytest.fixture(scope="module")
async def card_server() -> AsyncIterator[CardServer]:
    release = asyncio.Event()
    app = Starlette(routes=bad_content_routes(release))
    async with running(app) as base_url:
        yield CardServer(app, base_url)
        release.set()


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}")
    yield engine
    await engine.dispose()


@pytest.fixture
async def catalog(engine: AsyncEngine) -> Catalog:
    verifier = CardVerifier(TrustStore.from_jwks(PUBLISHER.public_jwks()))
    # The card servers here listen on loopback, reachable only in local mode.
    intake = CardIntake(
        timeout_s=FETCH_TIMEOUT_S,
        max_bytes=MAX_CARD_BYTES,
        verifier=verifier,
        targets=TargetPolicy(allow_private=True),
    )
    catalog = Catalog(AgentStore(engine), AuditLog(engine, "registry"), intake)
    await catalog.start()
    return catalog


AuditReader = Callable[[], Awaitable[list[dict[str, Any]]]]


@pytest.fixture
def audit(engine: AsyncEngine) -> AuditReader:
    """The audit trail the catalog wrote, checked to be an intact chain."""
    log = AuditLog(engine, "registry")

    async def records() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await log.records()
        assert verify_chain(found) is None
        return found

    return records


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def snapshot(catalog: Catalog) -> list[Any]:
    return [
        (r.name, r.card_url, json.dumps(r.card, sort_keys=True), r.status, r.skills, r.updated_at)
        for r in await catalog.all_agents()
    ]


async def test_registering_a_served_card_stores_the_agent_with_its_skills_tags_and_card(
    card_server: CardServer, catalog: Catalog, audit: AuditReader
) -> None:
    name = unique("sanctions-agent")
    card, url = card_server.serve_agent(name, {"sanctions-screening": ["compliance", "screening"]})

    registration = await catalog.register(url, actor="test")

    assert registration.created
    record = registration.record
    assert (record.name, record.card_url, record.status) == (name, url, "active")
    assert record.skill_ids == ("sanctions-screening",)
    assert record.tags == ("compliance", "screening")
    assert record.card["name"] == name
    assert record.card["supportedInterfaces"][0]["url"] == card.supported_interfaces[0].url
    assert await catalog.get(name) == record
    [event] = await audit()
    assert (event["action"], event["outcome"], event["reason"]) == ("agent.register", "created", None)
    assert event["details"]["name"] == name


async def test_discovery_finds_active_agents_by_skill_by_tag_and_by_both(
    card_server: CardServer, catalog: Catalog
) -> None:
    screening = unique("screening")
    credit = unique("credit")
    tag = unique("tag")
    _, url_a = card_server.serve_agent(unique("a-agent"), {screening: [tag, "fast"], credit: ["slow"]})
    _, url_b = card_server.serve_agent(unique("b-agent"), {credit: [tag]})
    a = (await catalog.register(url_a, actor="test")).record.name
    b = (await catalog.register(url_b, actor="test")).record.name

    assert [r.name for r in await catalog.discover(skill=screening)] == [a]
    assert [r.name for r in await catalog.discover(skill=credit)] == sorted([a, b])
    assert [r.name for r in await catalog.discover(tag=tag)] == sorted([a, b])
    # Both filters must hold for one skill: a's credit skill is not tagged with `tag`.
    assert [r.name for r in await catalog.discover(skill=credit, tag=tag)] == [b]
    assert await catalog.discover(skill=screening, tag="slow") == []
    assert await catalog.discover(skill=unique("nobody-offers")) == []
    assert {r.name for r in await catalog.discover()} == {a, b}


async def test_re_registering_from_the_same_url_updates_the_card_that_discovery_sees(
    card_server: CardServer, catalog: Catalog, audit: AuditReader
) -> None:
    name = unique("ledger-agent")
    old_skill, new_skill = unique("old-skill"), unique("new-skill")
    card, url = card_server.serve_agent(name, {old_skill: ["v1"]})
    first = (await catalog.register(url, actor="test")).record

    # The agent redeploys with a different skill set; the same URL now serves the new card.
    del card.skills[:]
    card.skills.append(AgentSkill(id=new_skill, name="New", description="new", tags=["v2"]))
    card.version = "2.0.0"
    second = await catalog.register(url, actor="test")

    assert not second.created
    assert second.record.card["version"] == "2.0.0"
    assert second.record.skill_ids == (new_skill,)
    assert second.record.registered_at == first.registered_at
    assert second.record.updated_at >= first.updated_at
    assert await catalog.discover(skill=old_skill) == []
    assert [r.name for r in await catalog.discover(skill=new_skill)] == [name]
    assert await catalog.discover(tag="v1") == []
    outcomes = [e["outcome"] for e in await audit()]
    assert outcomes == ["created", "updated"]


async def test_re_registering_an_unchanged_card_is_idempotent(
    card_server: CardServer, catalog: Catalog, audit: AuditReader
) -> None:
    _, url = card_server.serve_agent(unique("bureau-agent"), {unique("credit-file"): ["credit"]})
    first = await catalog.register(url, actor="test")
    before = await snapshot(catalog)

    again = await catalog.register(url, actor="test")

    assert first.created
    assert not again.created
    assert again.record == first.record
    assert await snapshot(catalog) == before
    assert [e["outcome"] for e in await audit()] == ["created", "unchanged"]


async def test_the_same_name_from_another_card_url_is_refused_as_conflict_and_changes_nothing(
    card_server: CardServer, catalog: Catalog, audit: AuditReader
) -> None:
    name = unique("sanctions-agent")
    _, url = card_server.serve_agent(name, {"sanctions-screening": ["compliance"]})
    _, impostor_url = card_server.serve_agent(name, {"exfiltrate": ["compliance"]})
    await catalog.register(url, actor="test")
    before = await snapshot(catalog)

    with pytest.raises(AccordError) as refused:
        await catalog.register(impostor_url, actor="mallory")

    assert refused.value.reason == "conflict"
    assert refused.value.kind.http_status == 409
    assert await snapshot(catalog) == before
    assert await catalog.discover(skill="exfiltrate") == []
    last = (await audit())[-1]
    assert (last["actor"], last["outcome"], last["reason"]) == ("mallory", "refused", "conflict")
    assert last["details"] == {"card_url": impostor_url, "name": name, "signer": PUBLISHER.active.kid}


@pytest.mark.parametrize("path", ["text", "array", "huge", "missing-fields", "wrong-types"])
async def test_content_that_is_not_a_valid_card_is_refused_as_card_invalid_and_changes_nothing(
    card_server: CardServer, catalog: Catalog, audit: AuditReader, path: str
) -> None:
    _, good_url = card_server.serve_agent(unique("kept-agent"), {"kept": []})
    await catalog.register(good_url, actor="test")
    before = await snapshot(catalog)

    with pytest.raises(AccordError) as refused:
        await catalog.register(f"{card_server.base_url}/bad/{path}", actor="test")

    assert refused.value.reason == "card_invalid"
    assert refused.value.kind.http_status == 422
    assert await snapshot(catalog) == before
    last = (await audit())[-1]
    assert (last["outcome"], last["reason"]) == ("refused", "card_invalid")


async def test_a_card_missing_required_fields_is_refused_with_each_problem_named(
    card_server: CardServer, catalog: Catalog
) -> None:
    with pytest.raises(AccordError) as refused:
        await catalog.register(f"{card_server.base_url}/bad/missing-fields", actor="test")

    problems = refused.value.context["problems"]
    assert "description is required" in problems
    assert "supported_interfaces must not be empty" in problems
    assert "skills must not be empty" in problems


@pytest.mark.parametrize("target", ["closed-port", "http-error", "slow"])
async def test_card_urls_that_cannot_be_fetched_are_refused_as_agent_unavailable_and_change_nothing(
    card_server: CardServer, catalog: Catalog, audit: AuditReader, target: str
) -> None:
    closed = bound_socket()  # bound but never listening: connections are refused
    urls: dict[str, Callable[[], str]] = {
        "closed-port": lambda: f"http://127.0.0.1:{closed.getsockname()[1]}/.well-known/agent-card.json",
        "http-error": lambda: f"{card_server.base_url}/bad/error",
        "slow": lambda: f"{card_server.base_url}/bad/slow",
    }
    try:
        with pytest.raises(AccordError) as refused:
            await asyncio.wait_for(catalog.register(urls[target](), actor="test"), timeout=5)
    finally:
        closed.close()

    assert refused.value.reason == "agent_unavailable"
    assert refused.value.kind.http_status == 502
    assert await catalog.all_agents() == []
    [event] = await audit()
    assert (event["outcome"], event["reason"]) == ("refused", "agent_unavailable")


@pytest.mark.parametrize(
    "card_url", ["ftp://127.0.0.1/card.json", "not a url", "http://user:pw@127.0.0.1/card"]
)
async def test_card_urls_that_are_not_plain_http_urls_are_refused_as_invalid_input(
    catalog: Catalog, card_url: str
) -> None:
    with pytest.raises(AccordError) as refused:
        await catalog.register(card_url, actor="test")

    assert refused.value.reason == "invalid_input"
    assert await catalog.all_agents() == []


async def test_a_legacy_a2a_0_3_card_is_accepted_and_stored_in_its_1_0_form(
    card_server: CardServer, catalog: Catalog
) -> None:
    name = unique("legacy-agent")
    legacy = {
        "name": name,
        "description": "an A2A 0.3 card",
        "version": "0.3.0",
        "url": f"{card_server.base_url}/legacy/a2a",
        "preferredTransport": "JSONRPC",
        "protocolVersion": "0.3.0",
        "capabilities": {},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "echo", "name": "Echo", "description": "echoes", "tags": ["legacy"]}],
    }
    # The signature covers the card as A2A 1.0 reads it; the legacy JSON carries it alongside.
    signed = CardSigner(PUBLISHER).sign(card_from_dict(dict(legacy)))
    legacy["signatures"] = card_to_dict(signed)["signatures"]
    card_server.app.router.routes.append(Route(f"/{name}.json", lambda _r: JSONResponse(legacy)))

    record = (await catalog.register(f"{card_server.base_url}/{name}.json", actor="test")).record

    assert record.card["supportedInterfaces"] == [
        {"url": legacy["url"], "protocolBinding": "JSONRPC", "protocolVersion": "0.3.0"}
    ]
    assert "url" not in record.card
    assert record.tags == ("legacy",)


async def test_removing_an_agent_drops_it_and_unknown_names_are_not_found(
    card_server: CardServer, catalog: Catalog, audit: AuditReader
) -> None:
    skill = unique("skill")
    _, url = card_server.serve_agent(unique("gone-agent"), {skill: []})
    name = (await catalog.register(url, actor="test")).record.name

    await catalog.remove(name, actor="test")

    assert await catalog.discover(skill=skill) == []
    for call in (catalog.get(name), catalog.remove(name, actor="test")):
        with pytest.raises(AccordError) as missing:
            await call
        assert missing.value.reason == "not_found"
    outcomes = [(e["action"], e["outcome"], e["reason"]) for e in await audit()]
    assert outcomes[1:] == [("agent.remove", "removed", None), ("agent.remove", "refused", "not_found")]


@pytest.mark.parametrize(
    ("new", "old", "newer"),
    [
        ("1.0.1", "1.0.0", True),
        ("1.10.0", "1.9.9", True),
        ("2", "1.9", True),
        ("1.0", "1.0.0", False),
        ("1.0.0", "1.0.0", False),
        ("0.9.0", "1.0.0", False),
        ("v1.2.0", "1.1.9", True),
        ("1.0.0-rc2", "1.0.0-rc1", False),
        ("nightly-b", "nightly-a", True),
    ],
)
def test_a_card_version_is_newer_only_by_its_numeric_release(new: str, old: str, newer: bool) -> None:
    assert is_newer_version(new, old) is newer
