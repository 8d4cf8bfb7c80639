"""Publisher key rotation against a real registry process: no refresh fails while the key changes, the old
and the new key both verify during the overlap window, and the old key is refused once it has ended. Neither
the agent nor the registry restarts: the agent follows its ring file, the registry its trust directory."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from accord.card_signing import CardSigner, publisher_key_file, publisher_trust_file
from accord.cli.keys import RingFile, rotate_ring
from tests.registry_harness import (
    CardServer,
    Registry,
    card_server_on,
    eventually,
    registry_process,
    unique,
)

OVERLAP_S = 3.0


@pytest.fixture(scope="module")
def registry_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry-rotation")


@pytest.fixture(scope="module")
def registry(registry_state: Path) -> Iterator[Registry]:
    with registry_process(registry_state, ACCORD_REGISTRY_REFRESH_INTERVAL_S="0") as running:
        yield running


@pytest.fixture(scope="module")
async def cards(registry_state: Path) -> AsyncIterator[CardServer]:
    async with card_server_on(CardSigner.local(registry_state)) as server:
        yield server


def kid_of(card: dict[str, Any]) -> str:
    [signature] = card["signatures"]
    protected = signature["protected"] + "=" * (-len(signature["protected"]) % 4)
    return str(json.loads(base64.urlsafe_b64decode(protected))["kid"])


async def frozen_copy(cards: CardServer, name: str) -> str:
    """A card signed now and served unchanged from then on (an agent that never re-signs)."""
    async with httpx.AsyncClient(timeout=10) as http:
        document = (await http.get(cards.serve_agent(name, {"credit-file": []}))).json()
    return cards.serve_json(document)


async def test_rotation_fails_no_refresh_and_retires_the_old_key_after_the_overlap(
    registry: Registry, cards: CardServer, registry_state: Path
) -> None:
    name = unique("bureau-agent")
    live_url = cards.serve_agent(name, {"credit-file": []})
    old_only_now, old_only_late = await frozen_copy(cards, unique("a")), await frozen_copy(cards, unique("b"))
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        registered = (await http.post("/v1/agents", json={"card_url": live_url})).json()
        old = kid_of(registered["card"])

        statuses: list[int] = []
        stop = asyncio.Event()

        async def keep_refreshing() -> None:
            while not stop.is_set():
                statuses.append((await http.post(f"/v1/agents/{name}:refresh")).status_code)

        refreshing = asyncio.create_task(keep_refreshing())
        await eventually(_count_at_least(statuses, 3))
        ring = RingFile("publisher", publisher_key_file(registry_state), publisher_trust_file(registry_state))
        _, new = rotate_ring(ring, OVERLAP_S)
        rotated_at = len(statuses)

        # Inside the window a card the old key signed still registers.
        during = await http.post("/v1/agents", json={"card_url": old_only_now})
        assert during.status_code == 201, during.text
        assert kid_of(during.json()["card"]) == old

        async def stored_kid_is_new() -> bool:
            return kid_of((await http.get(f"/v1/agents/{name}")).json()["card"]) == new

        await eventually(stored_kid_is_new)
        await eventually(_count_at_least(statuses, rotated_at + 3))
        stop.set()
        await asyncio.wait_for(refreshing, timeout=10)
        assert set(statuses) == {200}, "no refresh failed while the key changed"

        expiry = {
            k["kid"]: k.get("exp")
            for k in json.loads(publisher_trust_file(registry_state).read_text())["keys"]
        }
        assert expiry[new] is None
        await eventually(_after(expiry[old]), timeout_s=OVERLAP_S + 5)

        before = (await http.get("/v1/agents")).json()
        late = await http.post("/v1/agents", json={"card_url": old_only_late})
        assert (late.status_code, late.json()["error"]["reason"]) == (422, "card_signer_unknown")
        assert (await http.get("/v1/agents")).json() == before

        stale_name = during.json()["name"]
        stale = await http.post(f"/v1/agents/{stale_name}:refresh")
        assert (stale.status_code, stale.json()["error"]["reason"]) == (422, "card_signer_unknown")
        assert (await http.get(f"/v1/agents/{stale_name}")).json()["status"] == "quarantined"
        current = await http.post(f"/v1/agents/{name}:refresh")
        assert (current.status_code, current.json()["status"]) == (200, "active")


def _count_at_least(values: list[int], count: int) -> Any:
    async def check() -> bool:
        await asyncio.sleep(0)
        return len(values) >= count

    return check


def _after(moment: float) -> Any:
    async def check() -> bool:
        return time.time() >= moment

    return check
