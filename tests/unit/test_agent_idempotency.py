"""The agent SDK runs a skill once per idempotency key: a second delivery of the same request (a resumed
orchestrator sending an in-flight step again) attaches to the first one's outcome. An agent served on
loopback by the SDK, called over A2A JSON-RPC (unsigned messages: the SDK alone is under test here; the
relay-signed path is in `tests/integration/test_durable_runs.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from a2a.client import Client, ClientConfig, ClientFactory
from a2a.types import SendMessageRequest, Task, TaskState
from pydantic import BaseModel

from accord.agent import Agent, ToolBox
from accord.agent.executor import SkillExecutor
from accord.agent.testing import running_agent
from accord.payloads import first_data, skill_request, task_result

WAIT_S = 10.0


class Order(BaseModel):
    item: str


class Placed(BaseModel):
    item: str
    order_no: int


@dataclass
class Shop:
    placed: list[str] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


def shop_agent(shop: Shop) -> Agent:
    agent = Agent("sanctions-agent")

    @agent.skill("sanctions-screening")
    async def place(request: Order, _tools: ToolBox) -> Placed:
        shop.placed.append(request.item)
        shop.started.set()
        await shop.release.wait()
        return Placed(item=request.item, order_no=len(shop.placed))

    return agent


@dataclass
class Running:
    client: Client
    executor: SkillExecutor
    shop: Shop


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    shop = Shop()
    agent = shop_agent(shop)
    async with (
        running_agent(agent, "http://127.0.0.1:9", accept_unsigned_messages=True) as served,
        httpx.AsyncClient(timeout=WAIT_S) as http,
    ):
        config = ClientConfig(streaming=False, httpx_client=http, supported_protocol_bindings=["JSONRPC"])
        client = ClientFactory(config).create(served.app.state.card)
        yield Running(client, served.app.state.skill_executor, shop)
        await client.close()


async def send(client: Client, item: str, key: str | None) -> Task:
    message = skill_request("sanctions-screening", {"item": item}, idempotency_key=key)
    async for event in client.send_message(SendMessageRequest(message=message)):
        assert event.HasField("task"), event
        return event.task
    raise AssertionError("no reply")


def error_reason(task: Task) -> str:
    reported = first_data(task.status.message.parts) or {}
    return str(reported["error"]["reason"])


async def test_a_second_delivery_with_the_same_key_attaches_to_the_first_and_runs_nothing_again(
    running: Running,
) -> None:
    async with asyncio.timeout(WAIT_S):
        first = asyncio.create_task(send(running.client, "lamp", "run-1:order:1"))
        await running.shop.started.wait()
        second = asyncio.create_task(send(running.client, "lamp", "run-1:order:1"))
        await asyncio.sleep(0.1)
        running.shop.release.set()
        tasks = await asyncio.gather(first, second)
        third = await send(running.client, "lamp", "run-1:order:1")
    assert [t.status.state for t in (*tasks, third)] == [TaskState.TASK_STATE_COMPLETED] * 3
    assert len({t.id for t in (*tasks, third)}) == 3, "each delivery has a task of its own"
    assert [task_result(t) for t in (*tasks, third)] == [{"item": "lamp", "order_no": 1}] * 3
    assert running.shop.placed == ["lamp"]
    assert (
        running.executor.executions["sanctions-screening"],
        running.executor.attached["sanctions-screening"],
    ) == (1, 2)


async def test_another_key_or_no_key_runs_the_skill_again(running: Running) -> None:
    running.shop.release.set()
    async with asyncio.timeout(WAIT_S):
        await send(running.client, "lamp", "run-1:order:1")
        await send(running.client, "lamp", "run-1:order:2")
        await send(running.client, "lamp", None)
        await send(running.client, "lamp", None)
    assert running.shop.placed == ["lamp"] * 4


async def test_the_same_key_for_another_request_is_refused_and_runs_nothing(running: Running) -> None:
    running.shop.release.set()
    async with asyncio.timeout(WAIT_S):
        await send(running.client, "lamp", "run-1:order:1")
        refused = await send(running.client, "chair", "run-1:order:1")
    assert refused.status.state == TaskState.TASK_STATE_FAILED
    assert error_reason(refused) == "idempotency_conflict"
    assert running.shop.placed == ["lamp"]
