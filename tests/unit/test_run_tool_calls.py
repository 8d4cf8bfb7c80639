"""Counting a run's tool calls for its budget: in memory, and shared through real Redis by replicas; and
the run's limit as it travels (relay metadata, grant, access token)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from accord.keys import KeyRing
from accord.testing.backing_services import require_redis
from accord.tokens import TokenError, TokenVerifier, issue_access_token
from gateway.relay.gate import target_from_metadata
from gateway.run_budget import COUNT_TTL_S, MemoryRunToolCalls, RedisRunToolCalls

ISSUER = "http://gateway.test"


async def test_memory_counts_per_run_and_starts_over_after_the_ttl() -> None:
    now = [0.0]
    counts = MemoryRunToolCalls(clock=lambda: now[0])
    assert [await counts.take("run-a") for _ in range(3)] == [1, 2, 3]
    assert await counts.take("run-b") == 1
    now[0] += COUNT_TTL_S + 1
    assert await counts.take("run-a") == 1


@pytest.mark.redis
async def test_replicas_sharing_redis_share_one_count_per_run() -> None:
    first, second = Redis.from_url(require_redis()), Redis.from_url(require_redis())
    prefix = f"accord-test:{uuid.uuid4().hex}:"
    try:
        replicas = [RedisRunToolCalls(first, prefix), RedisRunToolCalls(second, prefix)]
        taken = await asyncio.gather(*(replicas[i % 2].take("run-1") for i in range(20)))
        assert sorted(taken) == list(range(1, 21))
        assert 0 < await first.ttl(prefix + "run-1") <= COUNT_TTL_S
    finally:
        await first.delete(prefix + "run-1")
        await first.aclose()
        await second.aclose()


@pytest.mark.parametrize(
    ("budget", "limit", "problem"),
    [
        (None, None, False),
        ({"tool_calls": 5}, 5, False),
        ({"tool_calls": 5.0}, 5, False),  # a whole JSON number, as a protobuf Struct carries it
        ({"tasks": 3}, None, False),
        ({"tool_calls": -1}, None, True),
        ({"tool_calls": 1.5}, None, True),
        ({"tool_calls": True}, None, True),
        ("lots", None, True),
    ],
)
def test_the_relay_reads_the_runs_tool_call_limit(budget: object, limit: int | None, problem: bool) -> None:
    metadata = {"accord.skill": "s", "accord.wf": "run-1", "accord.task": "t", "accord.budget": budget}
    target = target_from_metadata("SendMessage", "ledger-agent", metadata, None)
    assert target.tool_call_limit == limit
    assert (target.metadata_problem is not None) == problem


def test_access_tokens_carry_the_limit_and_refuse_a_malformed_one() -> None:
    ring = KeyRing.generate()
    verifier = TokenVerifier(ring, [ISSUER], "http://gateway.test/mcp")

    def token(limit: object) -> str:
        return issue_access_token(
            ring, ISSUER, "sub", "agent", "http://gateway.test/mcp", ["tool:x.y"], 60, wf="run-1",
            tool_call_limit=limit,  # type: ignore[arg-type]
        )  # fmt: skip

    assert verifier.verify(token(7)).tool_call_limit == 7
    assert verifier.verify(token(None)).tool_call_limit is None
    with pytest.raises(TokenError):
        verifier.verify(token(-2))
