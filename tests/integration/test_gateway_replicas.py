"""Two gateway replicas (one issuer URL, one state store, one Redis): a grant revoked at one stops working
at the other at once, and a client's rate limit is one bucket across both."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from accord.testing.backing_services import require_redis
from tests.gateway_mesh import (
    APPLICANT,
    CREDIT_FILE,
    MCP_HEADERS,
    GatewayMesh,
    assert_rejected,
    deploy_policy,
    eventually,
    gateway_mesh,
)

pytestmark = pytest.mark.redis


@dataclass
class Replicas:
    mesh: GatewayMesh  # replica A is the mesh's own gateway
    second_url: str

    async def call_at(self, url: str, token: str) -> httpx.Response:
        body = {
            "jsonrpc": "2.0",
            "id": 41,
            "method": "tools/call",
            "params": {"name": "bureau.get_credit_file", "arguments": {"applicant_id": APPLICANT}},
        }
        headers = {**MCP_HEADERS, "authorization": f"Bearer {token}"}
        return await self.mesh.http.post(url + "/mcp", json=body, headers=headers)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_db_url() -> str:
    base = require_redis().rsplit("/", 1)[0]
    return base + "/7"  # a database of its own, so other users of this Redis are not disturbed


@pytest.fixture(scope="module")
async def replicas(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Replicas]:
    redis_url = redis_db_url()
    cleanup = Redis.from_url(redis_url)
    await cleanup.delete("accord:gateway:rate:|bureau-agent")
    await cleanup.aclose()
    policy = deploy_policy()
    policy["clients"]["bureau-agent"]["rate_limit"] = {"per_second": 0.2, "burst": 4}
    state = tmp_path_factory.mktemp("gw-replicas")
    async with gateway_mesh(
        state, port_offset=22600, policy=policy, extra_env={"gateway": {"ACCORD_REDIS_URL": redis_url}}
    ) as mesh:
        spec = mesh.runner.topology.by_name("gateway")
        env = {
            **os.environ,
            "ACCORD_STATE_DIR": str(state),
            **mesh.runner.topology.resolve_env(spec, "127.0.0.1", 22600, mesh.secrets),
            **mesh.runner.extra_env["gateway"],
        }
        port = free_port()
        # Same public URL (issuer and MCP resource) as replica A; its own listening port.
        env.update(ACCORD_PORT=str(port), ACCORD_PUBLIC_URL=mesh.url)
        log = (state / "logs" / "gateway-b.log").open("ab")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
        second = f"http://127.0.0.1:{port}"
        try:

            async def ready() -> bool:
                assert process.returncode is None, "replica B exited"
                try:
                    return (await mesh.http.get(second + "/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, timeout=60)
            yield Replicas(mesh, second)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(15):
                        await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            log.close()


async def test_a_grant_revoked_at_one_replica_stops_working_at_the_other_at_once(replicas: Replicas) -> None:
    mesh = replicas.mesh
    token, grant = await mesh.agent_token("bureau-agent", [CREDIT_FILE], {"applicant_id": APPLICANT})
    assert (await replicas.call_at(replicas.second_url, token)).status_code == 200

    assert (await mesh.revoke(grant["grant_id"])).status_code == 204  # at replica A

    refused = await replicas.call_at(replicas.second_url, token)
    assert_rejected(refused, 401, "invalid_token", challenge="invalid_token")
    assert "revoked" in refused.headers["www-authenticate"]


async def test_one_clients_rate_limit_is_shared_by_every_replica(replicas: Replicas) -> None:
    mesh = replicas.mesh
    token, _ = await mesh.agent_token("bureau-agent", [CREDIT_FILE], {"applicant_id": APPLICANT})
    statuses: list[Any] = []
    for url in (mesh.url, replicas.second_url, mesh.url, replicas.second_url, mesh.url, replicas.second_url):
        statuses.append((await replicas.call_at(url, token)).status_code)
    # A burst of 4 in total (barely refilled at 0.2/s), not 4 per replica.
    assert statuses.count(200) <= 5
    assert statuses.count(429) >= 1
    assert statuses[-1] == 429
