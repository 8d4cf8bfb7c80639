"""Shared revocation and replay state through a real Redis: what one gateway replica revokes or sees used,
every other replica refuses at once.

Needs Redis on 127.0.0.1:6379: skipped locally when it is down, a failure under CI=true. Every test uses its
own key prefix, so runs never see each other's keys.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
from redis.asyncio import Redis

from accord.testing.backing_services import require_redis
from gateway.oauth import GRANT_TOKEN_TYPE, MemoryRevocationList, RedisRevocationList
from gateway.oauth.client_auth import CLIENT_ASSERTION_TYPE
from gateway.oauth.grants import GrantError
from gateway.oauth.replay import RedisReplayGuard
from gateway.oauth.token_service import TOKEN_EXCHANGE
from tests.oauth_server import (
    SANCTIONS_SECRET,
    SEARCH,
    WAIT,
    agent_key,
    assertion_for,
    authorization_server,
    bound_socket,
    eventually,
    standard_clients,
    url_of,
)

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_url() -> str:
    url: str = require_redis()
    return url


@pytest.fixture
def prefix() -> str:
    return f"accord-test:{uuid.uuid4().hex}:"


@pytest.fixture
async def two_clients(redis_url: str, prefix: str) -> AsyncIterator[tuple[Redis, Redis]]:
    first, second = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        yield first, second
    finally:
        keys = [key async for key in first.scan_iter(match=prefix + "*")]
        if keys:
            await first.delete(*keys)
        await first.aclose()
        await second.aclose()


async def test_a_revocation_is_visible_to_a_second_revocation_list_at_once(
    two_clients: tuple[Redis, Redis], prefix: str
) -> None:
    here = RedisRevocationList(two_clients[0], prefix)
    there = RedisRevocationList(two_clients[1], prefix)
    assert not await there.is_revoked("grant-1")

    await here.revoke("grant-1", expires_at=time.time() + 300)

    assert await there.is_revoked("grant-1")
    assert not await there.is_revoked("grant-2")
    ttl_ms = await two_clients[1].pttl(prefix + "grant-1")
    assert 299_000 < ttl_ms <= 301_000


async def test_a_revocation_is_forgotten_once_the_grant_would_have_expired(
    two_clients: tuple[Redis, Redis], prefix: str
) -> None:
    here = RedisRevocationList(two_clients[0], prefix)
    there = RedisRevocationList(two_clients[1], prefix)
    await here.revoke("short-lived", expires_at=time.time() + 0.2)
    assert await there.is_revoked("short-lived")

    async def forgotten() -> bool:
        return not await there.is_revoked("short-lived")

    await eventually(forgotten, timeout=5)


async def test_in_process_revocation_lists_do_not_share_what_redis_shares() -> None:
    """The contrast that makes Redis necessary for more than one replica."""
    here, there = MemoryRevocationList(), MemoryRevocationList()
    await here.revoke("grant-1", expires_at=time.time() + 60)
    assert await here.is_revoked("grant-1")
    assert not await there.is_revoked("grant-1")


async def test_an_identifier_is_first_used_only_once_across_replicas(
    two_clients: tuple[Redis, Redis], prefix: str
) -> None:
    here = RedisReplayGuard(two_clients[0], prefix)
    there = RedisReplayGuard(two_clients[1], prefix)
    expires_at = time.time() + 60
    assert await here.first_use("client:jti-1", expires_at)
    assert not await there.first_use("client:jti-1", expires_at)
    assert not await here.first_use("client:jti-1", expires_at)
    assert await there.first_use("client:jti-2", expires_at)


async def test_two_gateway_replicas_share_grant_revocation_and_assertion_replay(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    ledger_key = agent_key()
    clients = standard_clients(ledger_key)
    sock_a = bound_socket()
    issuer = url_of(sock_a)  # the one public URL both replicas answer for
    async with (
        authorization_server(
            tmp_path, clients, redis_url=redis_url, sock=sock_a, issuer=issuer, redis_prefix=prefix
        ) as replica_a,
        authorization_server(
            tmp_path, clients, redis_url=redis_url, issuer=issuer, redis_prefix=prefix
        ) as replica_b,
        httpx.AsyncClient(timeout=WAIT) as http,
    ):
        assert replica_a.url != replica_b.url
        mcp_resource = replica_a.deps.config.mcp_resource
        issued = await replica_a.deps.grants.issue_grant(
            agent="sanctions-agent",
            scopes=[SEARCH],
            wf="wf-replicas",
            task="t-replicas",
            deadline=time.time() + 120,
            audience=mcp_resource,
            delegated_by="orchestrator",
        )
        exchange = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": issued.token,
            "subject_token_type": GRANT_TOKEN_TYPE,
            "resource": mcp_resource,
        }
        auth = ("sanctions-agent", SANCTIONS_SECRET)
        first = await http.post(replica_b.token_endpoint, data=exchange, auth=auth)
        assert first.status_code == 200, first.text
        claims = replica_b.deps.access_token_verifier().verify(first.json()["access_token"])
        assert claims.grant_id == issued.grant.grant_id
        assert await replica_b.deps.grants.is_active(issued.grant.grant_id)

        await replica_a.deps.grants.revoke(issued.grant.grant_id)

        # The per-call check consults only the shared list: B knows at once, without asking the database.
        assert not await replica_b.deps.grants.is_active(issued.grant.grant_id)
        with pytest.raises(GrantError):
            await replica_b.deps.grants.ensure_active(claims)
        refused = await http.post(replica_b.token_endpoint, data=exchange, auth=auth)
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"

        assertion = {
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion_for(ledger_key, "ledger-agent", issuer),
        }
        assert (await http.post(replica_a.token_endpoint, data=assertion)).status_code == 200
        replayed = await http.post(replica_b.token_endpoint, data=assertion)
        assert replayed.status_code == 401
        assert replayed.json()["error"] == "invalid_client"
        assert (
            jwt.get_unverified_header(first.json()["access_token"])["kid"] == replica_a.deps.ring.active.kid
        )

    cleanup = Redis.from_url(redis_url)
    try:
        keys = [key async for key in cleanup.scan_iter(match=prefix + "*")]
        if keys:
            await cleanup.delete(*keys)
    finally:
        await cleanup.aclose()
