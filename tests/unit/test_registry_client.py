"""`accord.registry_client` against a real in-process registry app and real misbehaving HTTP servers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from accord.errors import AccordError
from accord.registry_client import RegistryClient
from registry.app import create_app
from registry.settings import RegistrySettings
from tests.registry_harness import bound_socket, running

ADMIN_SECRET = "registry-admin-secret-for-tests"


@pytest.fixture(scope="module")
async def registry_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    settings = RegistrySettings(
        state_dir=tmp_path_factory.mktemp("registry"), database_url=None, registry_admin_secret=ADMIN_SECRET
    )
    async with running(create_app(settings), lifespan="on") as base_url:
        yield base_url


@pytest.fixture(scope="module")
async def odd_server_url() -> AsyncIterator[str]:
    """A server that is not a registry: plain-text errors and bodies of the wrong shape."""
    app = Starlette(
        routes=[
            Route("/v1/agents/{name}", lambda _r: PlainTextResponse("upstream exploded", status_code=503)),
            Route("/v1/agents", lambda _r: JSONResponse({"agents": [{"name": "no-card"}]})),
            Route("/v1/discover", lambda _r: JSONResponse(["not", "an", "object"])),
        ]
    )
    async with running(app) as base_url:
        yield base_url


async def test_the_registry_s_reason_codes_surface_as_accord_errors(registry_url: str) -> None:
    async with RegistryClient(registry_url, admin_secret=ADMIN_SECRET) as client:
        with pytest.raises(AccordError) as missing:
            await client.get("nobody")
        with pytest.raises(AccordError) as bad_url:
            await client.register("ftp://127.0.0.1/card.json")
        with pytest.raises(AccordError) as not_removed:
            await client.remove("nobody")

    assert (missing.value.reason, missing.value.detail) == ("not_found", "no agent named 'nobody'")
    assert bad_url.value.reason == "invalid_input"
    assert not_removed.value.reason == "not_found"


async def test_names_are_sent_as_one_path_segment(registry_url: str) -> None:
    async with RegistryClient(registry_url) as client:
        with pytest.raises(AccordError) as missing:
            await client.get("../v1/agents")

    assert missing.value.reason == "not_found"
    assert "'../v1/agents'" in missing.value.detail


async def test_an_empty_registry_lists_and_discovers_nothing(registry_url: str) -> None:
    async with RegistryClient(registry_url) as client:
        assert await client.list() == []
        assert await client.discover(skill="credit-file", tag="credit") == []


async def test_an_unreachable_registry_is_upstream_unavailable() -> None:
    closed = bound_socket()  # bound, never listening: connections are refused
    try:
        async with RegistryClient(f"http://127.0.0.1:{closed.getsockname()[1]}", timeout=2) as client:
            with pytest.raises(AccordError) as unreachable:
                await client.list()
    finally:
        closed.close()

    assert unreachable.value.reason == "upstream_unavailable"


async def test_answers_that_are_not_registry_answers_are_reason_coded(odd_server_url: str) -> None:
    async with RegistryClient(odd_server_url) as client:
        with pytest.raises(AccordError) as plain_error:
            await client.get("anyone")
        with pytest.raises(AccordError) as cardless:
            await client.list()
        with pytest.raises(AccordError) as not_an_object:
            await client.discover(skill="x")

    assert plain_error.value.reason == "upstream_unavailable"
    assert cardless.value.reason == "contract_violation"
    assert not_an_object.value.reason == "contract_violation"


async def test_aclose_releases_a_client_used_without_async_with(registry_url: str) -> None:
    client = RegistryClient(registry_url + "/")
    assert client.base_url == registry_url
    assert await client.list() == []
    await client.aclose()
    with pytest.raises(RuntimeError):
        await client.list()
