"""Whether a session's subscription may still be served, under the real grant authority (SQLite) and the
real policy store: a token that expired, one whose signing key is no longer trusted, a task grant revoked,
a scope the token lacks and a policy that no longer names the upstream each end it, with their reason
codes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest_asyncio
import yaml

from accord.audit import AuditLog
from accord.keys import KeyRing
from accord.storage import create_engine
from accord.tokens import AccessClaims
from gateway.caller import Caller
from gateway.federation import SubscriptionAuthority
from gateway.oauth import ClientRegistry, GrantAuthority, MemoryRevocationList, new_client
from gateway.policy import PolicyStore, Subject
from gateway.tool_access import subscription_authority

SCOPE = "resources:fixture"
TRUSTED_KEYS = {"key-1"}
NOW = 1_900_000_000.0


def policy(resources: list[str]) -> str:
    return yaml.safe_dump(
        {"version": 1, "clients": {"watcher": {"tools": [], "resources": resources}}}, sort_keys=False
    )


@dataclass
class World:
    authority: SubscriptionAuthority
    grants: GrantAuthority
    policy: PolicyStore
    policy_file: Path
    caller: Caller


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
    audit = AuditLog(engine, "gateway")
    await audit.initialize()
    clients = ClientRegistry(engine)
    await clients.initialize()
    await clients.register(new_client("orchestrator", "orchestrator", secret="o" * 20))
    await clients.register(new_client("watcher", "agent", secret="w" * 20, grant_scopes=[SCOPE]))
    grants = GrantAuthority(KeyRing.generate(), "http://gw", engine, clients, MemoryRevocationList(), audit)
    await grants.initialize()
    issued = await grants.issue_grant(
        agent="watcher",
        scopes=[SCOPE],
        wf="run-1",
        task="watch",
        deadline=time.time() + 600,
        audience="http://gw/mcp",
        delegated_by="orchestrator",
    )
    grant = await grants.verify_grant(issued.token)
    policy_file = tmp_path / "tools.yaml"
    policy_file.write_text(policy(["fixture"]))
    store = PolicyStore(policy_file, audit, check_interval_s=0)
    claims = AccessClaims(
        iss="http://gw",
        sub="watcher",
        aud=("http://gw/mcp",),
        client_id="watcher",
        scopes=frozenset({SCOPE}),
        iat=int(NOW),
        exp=int(NOW) + 60,
        jti="j1",
        grant_id=grant.grant_id,
    )
    try:
        yield World(
            subscription_authority(store, grants, lambda issuer, kid: kid in TRUSTED_KEYS, clock=lambda: NOW),
            grants,
            store,
            policy_file,
            Caller(claims, Subject("watcher"), "key-1"),
        )
    finally:
        await engine.dispose()


async def test_a_caller_whose_token_grant_scope_and_policy_hold_is_served(world: World) -> None:
    assert await world.authority(world.caller, SCOPE) is None


async def test_an_expired_token_ends_the_subscription(world: World) -> None:
    expired = Caller(replace(world.caller.claims, exp=int(NOW)), world.caller.subject, "key-1")
    refusal = await world.authority(expired, SCOPE)
    assert refusal is not None
    assert (refusal.reason, getattr(refusal, "cause", None)) == ("invalid_token", "expired")


async def test_a_token_whose_signing_key_is_no_longer_trusted_ends_the_subscription(world: World) -> None:
    retired = Caller(world.caller.claims, world.caller.subject, "key-0")
    untracked = Caller(world.caller.claims, world.caller.subject)
    for caller in (retired, untracked):
        refusal = await world.authority(caller, SCOPE)
        assert refusal is not None
        assert (refusal.reason, getattr(refusal, "cause", None)) == ("invalid_token", "unknown_key")


async def test_a_revoked_grant_ends_the_subscription(world: World) -> None:
    assert world.caller.claims.grant_id is not None
    await world.grants.revoke(world.caller.claims.grant_id)
    refusal = await world.authority(world.caller, SCOPE)
    assert refusal is not None
    assert (refusal.reason, getattr(refusal, "cause", None)) == ("invalid_token", "revoked")


async def test_a_scope_the_token_lacks_ends_the_subscription(world: World) -> None:
    # The policy still names the upstream: only the token's scope is missing.
    without = Caller(replace(world.caller.claims, scopes=frozenset()), world.caller.subject, "key-1")
    refusal = await world.authority(without, SCOPE)
    assert refusal is not None and refusal.reason == "insufficient_scope"  # noqa: PT018


async def test_a_policy_that_no_longer_names_the_upstream_ends_the_subscription(world: World) -> None:
    world.policy_file.write_text(policy([]))
    await world.policy.refresh()
    refusal = await world.authority(world.caller, SCOPE)
    assert refusal is not None and refusal.reason == "policy_denied"  # noqa: PT018
