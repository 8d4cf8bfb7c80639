"""The client registry and the grant store on SQLite and on real PostgreSQL (one throwaway schema per test),
and clients loaded from a configuration file."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncEngine

from accord.audit import AuditLog
from accord.errors import AccordError
from accord.keys import KeyRing, SigningKey
from accord.testing.backing_services import require_postgres
from accord.testing.scratch_databases import postgres_schema_engine, sqlite_file_engine
from gateway.oauth import ClientRegistry, GrantAuthority, MemoryRevocationList, new_client
from gateway.oauth.grants import GrantError
from gateway.oauth.secret_hashing import hash_secret, verify_secret

ISSUER = "http://127.0.0.1:8700"
MCP = ISSUER + "/mcp"
SECRET = "config-secret-0123456789"


def postgres_engine() -> AsyncGenerator[AsyncEngine, None]:
    return postgres_schema_engine(require_postgres(), "oauth_test")


def sqlite_engine(path: Path) -> AsyncGenerator[AsyncEngine, None]:
    return sqlite_file_engine(path / "gateway.db")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engines = postgres_engine() if request.param == "postgres" else sqlite_engine(tmp_path)
    yield await anext(engines)
    await engines.aclose()


@pytest.fixture
async def registry(engine: AsyncEngine) -> ClientRegistry:
    registry = ClientRegistry(engine)
    await registry.initialize()
    await registry.initialize()  # every boot runs it: it must be repeatable
    return registry


async def test_a_registered_client_round_trips_without_its_secret_in_clear(registry: ClientRegistry) -> None:
    client = new_client("partner", "external", scopes=["tool:sanctions.search"], secret=SECRET)
    await registry.register(client)

    stored = await registry.get("partner")

    assert stored == client
    assert stored is not None
    assert stored.secret_hash is not None
    assert SECRET not in stored.secret_hash
    assert verify_secret(SECRET, stored.secret_hash)
    assert not verify_secret(SECRET + "x", stored.secret_hash)
    assert "secret_hash" not in stored.public_view()
    assert [c.client_id for c in await registry.list_all()] == ["partner"]


async def test_registering_an_existing_id_is_a_conflict_and_changes_nothing(registry: ClientRegistry) -> None:
    await registry.register(new_client("partner", "external", scopes=["a"], secret=SECRET))
    with pytest.raises(AccordError) as caught:
        await registry.register(new_client("partner", "agent", grant_scopes=["b"], secret=SECRET))
    assert caught.value.reason == "conflict"
    stored = await registry.get("partner")
    assert stored is not None
    assert stored.kind == "external"
    assert stored.scopes == {"a"}


async def test_deleting_a_client_removes_it_once(registry: ClientRegistry) -> None:
    await registry.register(new_client("partner", "external", secret=SECRET))
    assert await registry.delete("partner")
    assert not await registry.delete("partner")
    assert await registry.get("partner") is None


async def test_clients_load_from_a_yaml_file_and_the_file_wins_on_reload(
    registry: ClientRegistry, tmp_path: Path
) -> None:
    key = SigningKey.generate("EdDSA")
    entries: list[dict[str, Any]] = [
        {"client_id": "orchestrator", "kind": "orchestrator", "secret_env": "ORCH_SECRET"},
        {
            "client_id": "ledger-agent",
            "kind": "agent",
            "jwk": key.public_jwk(),
            "grant_scopes": ["tool:ledger.x"],
        },
        {"client_id": "partner", "kind": "external", "secret_hash": hash_secret(SECRET), "scopes": ["s1"]},
    ]
    path = tmp_path / "clients.yaml"
    path.write_text(yaml.safe_dump({"clients": entries}))

    loaded = await registry.load_config(path, env={"ORCH_SECRET": "orchestrator-secret-0123456789"})

    assert [c.client_id for c in loaded] == ["orchestrator", "ledger-agent", "partner"]
    orchestrator = await registry.get("orchestrator")
    assert orchestrator is not None
    assert orchestrator.secret_hash is not None
    assert verify_secret("orchestrator-secret-0123456789", orchestrator.secret_hash)
    ledger = await registry.get("ledger-agent")
    assert ledger is not None
    assert ledger.public_jwk is not None
    assert ledger.public_jwk["kid"] == key.kid
    assert ledger.public_jwk["alg"] == "EdDSA"
    assert ledger.auth_methods == {"private_key_jwt"}

    entries[2]["scopes"] = ["s1", "s2"]
    path.write_text(json.dumps({"clients": entries}))  # JSON is YAML too
    await registry.load_config(path, env={"ORCH_SECRET": "orchestrator-secret-0123456789"})
    partner = await registry.get("partner")
    assert partner is not None
    assert partner.scopes == {"s1", "s2"}


@pytest.mark.parametrize(
    ("entry", "env"),
    [
        ({"client_id": "x", "kind": "external", "secret": SECRET, "admin": True}, {}),
        ({"client_id": "x", "kind": "external", "secret_env": "MISSING"}, {}),
        ({"client_id": "x", "kind": "external", "secret": SECRET, "secret_hash": hash_secret(SECRET)}, {}),
        ({"client_id": "x", "kind": "external"}, {}),
        ({"client_id": "x", "kind": "external", "secret_hash": "plain-text-not-a-hash"}, {}),
        ({"client_id": "x", "kind": "external", "jwk": {"kty": "oct", "k": "c2VjcmV0"}}, {}),
    ],
    ids=["unknown-key", "missing-env", "two-credentials", "no-credential", "bad-hash", "symmetric-jwk"],
)
async def test_a_bad_clients_file_is_refused_whole(
    registry: ClientRegistry, tmp_path: Path, entry: dict[str, object], env: dict[str, str]
) -> None:
    good = {"client_id": "fine", "kind": "external", "secret": SECRET}
    path = tmp_path / "clients.yaml"
    path.write_text(yaml.safe_dump({"clients": [good, entry]}))
    with pytest.raises(AccordError) as caught:
        await registry.load_config(path, env=env)
    assert caught.value.reason == "invalid_input"
    assert await registry.list_all() == []


async def test_grants_are_stored_verified_and_revoked_per_task(
    engine: AsyncEngine, registry: ClientRegistry
) -> None:
    await registry.register(new_client("orchestrator", "orchestrator", secret=SECRET))
    await registry.register(
        new_client("bureau-agent", "agent", grant_scopes=["tool:bureau.get_credit_file"], secret=SECRET)
    )
    audit = AuditLog(engine, "gateway")
    await audit.initialize()
    grants = GrantAuthority(KeyRing.generate(), ISSUER, engine, registry, MemoryRevocationList(), audit)
    await grants.initialize()
    await grants.initialize()

    issued = await grants.issue_grant(
        agent="bureau-agent",
        scopes=["tool:bureau.get_credit_file"],
        wf="wf-9",
        task="credit-file",
        deadline=time.time() + 60,
        audience=MCP,
        delegated_by="orchestrator",
    )
    assert (await grants.verify_grant(issued.token)).grant_id == issued.grant.grant_id

    assert await grants.revoke_task("wf-9", "credit-file") == [issued.grant.grant_id]
    assert await grants.revoke_task("wf-9", "credit-file") == []
    with pytest.raises(GrantError) as caught:
        await grants.verify_grant(issued.token)
    assert caught.value.cause == "revoked"
    stored = await grants.get(issued.grant.grant_id)
    assert stored is not None
    assert stored.revoked
    with pytest.raises(AccordError) as missing:
        await grants.revoke("no-such-grant")
    assert missing.value.reason == "not_found"
