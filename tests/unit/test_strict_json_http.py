"""read_strict_json: request bodies are size-capped while streaming, then decoded by loads_strict."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from starlette.types import Message

from accord.service import create_service_app
from accord.strict_json import StrictJsonError, read_capped_body, read_strict_json

MAX_BYTES = 256
MAX_DEPTH = 4


def _create_app(accepted: list[Any]) -> FastAPI:
    app = create_service_app("strict-json-test")

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, Any]:
        value = await read_strict_json(request, max_bytes=MAX_BYTES, max_depth=MAX_DEPTH)
        accepted.append(value)
        return {"value": value}

    return app


@asynccontextmanager
async def _running(app: FastAPI) -> AsyncIterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, list[Any]]]:
    accepted: list[Any] = []
    async with _running(_create_app(accepted)) as base_url:
        yield base_url, accepted


async def _post(base_url: str, content: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        return await client.post("/echo", content=content, headers=headers)


async def test_a_valid_body_is_decoded_over_real_http(served: tuple[str, list[Any]]) -> None:
    base_url, accepted = served
    response = await _post(base_url, b'{"scope": "read", "n": [1, 2.5]}')
    assert response.status_code == 200
    assert response.json() == {"value": {"scope": "read", "n": [1, 2.5]}}
    assert accepted == [{"scope": "read", "n": [1, 2.5]}]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"scope":"read","scope":"admin"}', "duplicate_key"),
        (b'{"amount": NaN}', "non_finite_number"),
        (b'{"amount": 9007199254740992}', "number_out_of_range"),
        (b'{"name": "\\ud800"}', "lone_surrogate"),
        (b'{"name": "\xff"}', "invalid_utf8"),
        (b"[[[[[1]]]]]", "too_deep"),
        (b'{"a": ', "syntax_error"),
    ],
)
async def test_a_hostile_body_gets_400_with_its_reason_and_changes_nothing(
    served: tuple[str, list[Any]], body: bytes, detail: str
) -> None:
    base_url, accepted = served
    response = await _post(base_url, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["reason"], error["message"]) == ("malformed_json", detail)
    assert accepted == []


async def test_an_oversized_body_gets_413_and_changes_nothing(served: tuple[str, list[Any]]) -> None:
    base_url, accepted = served
    response = await _post(base_url, json.dumps({"pad": "x" * MAX_BYTES}).encode())
    assert response.status_code == 413
    assert response.json()["error"]["reason"] == "body_too_large"
    assert accepted == []


async def test_an_oversized_chunked_body_without_content_length_gets_413(
    served: tuple[str, list[Any]],
) -> None:
    base_url, accepted = served

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"pad": "'
        for _ in range(64):
            yield b"x" * 64
        yield b'"}'

    response = await _post(base_url, chunks())
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413
    assert response.json()["error"]["reason"] == "body_too_large"
    assert accepted == []


async def test_a_huge_declared_length_is_refused_before_any_body_is_sent(
    served: tuple[str, list[Any]],
) -> None:
    base_url, accepted = served
    port = int(base_url.rsplit(":", 1)[1])
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000000000000\r\n\r\n"
            )
            await writer.drain()
            status_line = await reader.readline()
        finally:
            writer.close()
    assert status_line.split()[1] == b"413"
    assert accepted == []


def _request(chunks: list[bytes], headers: dict[str, str]) -> tuple[Request, list[Message]]:
    """An ASGI request fed from `chunks`; the returned list records every message the reader pulled."""
    pending: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    pulled: list[Message] = []

    async def receive() -> Message:
        message = pending.pop(0)
        pulled.append(message)
        return message

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
    }
    return Request(scope, receive), pulled


async def test_reading_stops_at_the_first_chunk_past_the_limit() -> None:
    request, pulled = _request([b"x" * 100] * 50, {})
    with pytest.raises(StrictJsonError) as caught:
        await read_capped_body(request, max_bytes=250)
    assert caught.value.reason == "body_too_large"
    assert len(pulled) == 3


async def test_a_content_length_that_understates_the_body_is_not_trusted() -> None:
    request, pulled = _request([b"x" * 100] * 50, {"content-length": "10"})
    with pytest.raises(StrictJsonError) as caught:
        await read_capped_body(request, max_bytes=250)
    assert caught.value.reason == "body_too_large"
    assert len(pulled) == 3


@pytest.mark.parametrize("declared", ["251", "0" * 30 + "251", "9" * 5000])
async def test_a_content_length_over_the_limit_is_refused_without_reading(declared: str) -> None:
    request, pulled = _request([b"x"], {"content-length": declared})
    with pytest.raises(StrictJsonError) as caught:
        await read_capped_body(request, max_bytes=250)
    assert caught.value.reason == "body_too_large"
    assert pulled == []


@pytest.mark.parametrize("declared", ["abc", "-5", "\u00b2", "250"])
async def test_an_unusable_or_honest_content_length_falls_back_to_counting(declared: str) -> None:
    request, _ = _request([b'{"a": ', b"[1, 2]}"], {"content-length": declared})
    assert await read_strict_json(request, max_bytes=250) == {"a": [1, 2]}


async def test_a_body_exactly_at_the_limit_is_read_whole() -> None:
    body = json.dumps({"k": "v" * 40}).encode()
    request, _ = _request([body[:10], body[10:]], {"content-length": str(len(body))})
    assert await read_strict_json(request, max_bytes=len(body), max_depth=1) == {"k": "v" * 40}
