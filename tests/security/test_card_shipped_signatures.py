"""The shipped agents, as real processes started by `MeshRunner`, serve signed cards that verify with two
independent implementations (a2a-sdk's verifier, and authlib over an RFC 8785 canonicalization written in
the tests), are registered only because they verify, and follow `accord keys rotate` without a restart."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver
from a2a.utils.signing import create_signature_verifier

from accord.card_signing import PUBLISHER_JWKS_PATH, CardVerifier, publisher_trust_file
from accord.cards import WELL_KNOWN_PATHS, card_from_dict
from accord.keys import TrustStore
from accord.mesh import MeshRunner
from tests.independent_card_check import verify_with_authlib

AGENTS = ("sanctions-agent", "bureau-agent", "ledger-agent")
# Keeps this mesh off other test meshes and below the ephemeral port range (free ports of other tests).
OFFSET = 19600


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshRunner]:
    runner = MeshRunner(
        tmp_path_factory.mktemp("signed-mesh"), port_offset=OFFSET, only={"registry", *AGENTS}
    )
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


def trust_of(mesh: MeshRunner) -> dict[str, Any]:
    trust: dict[str, Any] = json.loads(publisher_trust_file(mesh.state_dir).read_text())
    return trust


def kid_of(card: dict[str, Any]) -> str:
    [signature] = card["signatures"]
    protected = signature["protected"] + "=" * (-len(signature["protected"]) % 4)
    header = json.loads(base64.urlsafe_b64decode(protected))
    assert set(header) == {"alg", "kid", "typ"}, "no jku or other key URL in the protected header"
    return str(header["kid"])


async def served_cards(mesh: MeshRunner) -> dict[tuple[str, str], dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        return {
            (agent, path): (await http.get(mesh.url(agent) + path)).json()
            for agent in AGENTS
            for path in WELL_KNOWN_PATHS
        }


async def test_every_shipped_card_at_both_paths_verifies_with_the_sdk_and_with_authlib(
    mesh: MeshRunner,
) -> None:
    trust = trust_of(mesh)
    verifier = CardVerifier(TrustStore.from_jwks(trust))

    for (agent, path), card in (await served_cards(mesh)).items():
        assert card["name"] == agent, path
        kid = kid_of(card)
        assert verifier.verify(card_from_dict(dict(card))) == kid
        assert verify_with_authlib(card, trust) == kid


async def test_the_a2a_resolver_accepts_the_cards_with_a_trust_store_key_provider(mesh: MeshRunner) -> None:
    store = TrustStore.from_jwks(trust_of(mesh))
    asked_urls: list[str | None] = []

    def key_provider(kid: str | None, jku: str | None) -> Any:
        asked_urls.append(jku)
        key = store.key_for(kid or "")
        assert key is not None
        return key

    verify = create_signature_verifier(key_provider, ["ES256"])
    async with httpx.AsyncClient(timeout=10) as http:
        for agent in AGENTS:
            card = await A2ACardResolver(http, mesh.url(agent)).get_agent_card(signature_verifier=verify)
            assert card.name == agent
    assert asked_urls == [None] * len(AGENTS)


async def test_the_registry_holds_the_signed_cards_and_agents_publish_their_publisher_jwks(
    mesh: MeshRunner,
) -> None:
    trust = trust_of(mesh)
    async with httpx.AsyncClient(timeout=10) as http:
        registered = (await http.get(mesh.url("registry") + "/v1/agents")).json()["agents"]
        published = [(await http.get(mesh.url(agent) + PUBLISHER_JWKS_PATH)).json() for agent in AGENTS]

    assert sorted((a["name"], a["status"]) for a in registered) == sorted((a, "active") for a in AGENTS)
    verifier = CardVerifier(TrustStore.from_jwks(trust))
    for agent in registered:
        assert verifier.verify(card_from_dict(dict(agent["card"]))) == kid_of(agent["card"])
    assert all(jwks == trust for jwks in published)


async def test_accord_keys_rotate_is_followed_by_running_agents_and_the_registry(mesh: MeshRunner) -> None:
    old = {kid_of(card) for card in (await served_cards(mesh)).values()}

    command = [sys.executable, "-m", "accord.cli.main", "keys", "rotate", "--publisher", "--overlap", "600"]
    rotation = await asyncio.create_subprocess_exec(
        *command, "--state-dir", str(mesh.state_dir), stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(rotation.communicate(), timeout=60)

    assert rotation.returncode == 0, stderr.decode()
    new = {kid_of(card) for card in (await served_cards(mesh)).values()}
    assert len(old) == len(new) == 1
    assert new != old, "every agent re-signed its card with the new key, without a restart"
    assert {jwk["kid"] for jwk in trust_of(mesh)["keys"]} == old | new
    async with httpx.AsyncClient(base_url=mesh.url("registry"), timeout=10) as http:
        for agent in AGENTS:
            refreshed = await http.post(f"/v1/agents/{agent}:refresh")
            assert refreshed.status_code == 200, refreshed.text
            assert kid_of(refreshed.json()["card"]) in new
