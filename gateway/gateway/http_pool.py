"""A small HTTP/1.1 client for one origin: POST with keep-alive connections, nothing else.

The gateway's hot path makes one POST per tool call to a known upstream. A general client (httpx) spends
more time on that than the rest of the call's path together; this one writes the request in one go and
reads a `Content-Length` or chunked response, reusing idle connections. A reused connection that the server
closed while idle (before any byte of an answer arrived) is retried once on a fresh one, as HTTP clients
conventionally do; any other failure is the caller's to handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

_MAX_HEADER_BYTES = 65_536
_MAX_BODY_BYTES = 16 * 1024 * 1024


# Sees each piece of a response body as it arrives.
OnChunk = Callable[[bytes], Awaitable[None]]


class HttpError(Exception):
    """The exchange failed: connection, timeout, or a malformed answer."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-cased names; repeated headers keep the last value
    body: bytes


class _Stale(Exception):
    """A reused connection was closed before any answer: safe to retry on a fresh one."""


class KeepAlivePool:
    def __init__(self, url: str, timeout: float, max_idle: int = 64) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http(s) URL is required")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._authority = parts.netloc.rpartition("@")[2]
        self._timeout = timeout
        self._max_idle = max_idle
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(
        self, body: bytes, headers: dict[str, str], on_chunk: OnChunk | None = None
    ) -> HttpResponse:
        """The response to one POST. `on_chunk` sees an event stream's chunks as they arrive (or its
        whole body at once, when it is not chunked)."""
        request = self._request(body, headers)
        try:
            async with asyncio.timeout(self._timeout):
                while self._idle:
                    connection = self._idle.pop()
                    try:
                        return await self._exchange(connection, request, on_chunk)
                    except _Stale:
                        continue
                try:
                    return await self._exchange(await self._connect(), request, on_chunk)
                except _Stale:
                    raise HttpError("connection closed before an answer") from None
        except TimeoutError:
            raise HttpError("timed out") from None
        except OSError as exc:
            raise HttpError(type(exc).__name__) from None

    def _request(self, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"POST {self._path} HTTP/1.1", f"host: {self._authority}", f"content-length: {len(body)}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self._host, self._port, ssl=self._ssl, limit=_MAX_HEADER_BYTES)

    async def _exchange(
        self,
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        request: bytes,
        on_chunk: OnChunk | None,
    ) -> HttpResponse:
        reader, writer = connection
        keep = False
        try:
            writer.write(request)
            await writer.drain()
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:
                    raise _Stale from None
                raise HttpError("truncated response head") from None
            except (ConnectionResetError, BrokenPipeError):
                raise _Stale from None
            status, response_headers = _parse_head(head)
            body, reusable = await _read_body(reader, response_headers, on_chunk)
            keep = reusable and response_headers.get("connection", "").lower() != "close"
            return HttpResponse(status, response_headers, body)
        except asyncio.IncompleteReadError:
            raise HttpError("truncated response body") from None
        except asyncio.LimitOverrunError:
            raise HttpError("response head too large") from None
        finally:
            if keep and len(self._idle) < self._max_idle:
                self._idle.append(connection)
            else:
                writer.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
        for _, writer in idle:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError("malformed status line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, separator, value = line.partition(":")
        if not separator:
            raise HttpError("malformed header")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _read_body(
    reader: asyncio.StreamReader, headers: dict[str, str], on_chunk: OnChunk | None
) -> tuple[bytes, bool]:
    """The body and whether the connection can carry another request; `on_chunk` sees an event stream's
    body only (what a JSON answer holds is read whole afterwards)."""
    if headers.get("content-type", "").split(";")[0].strip().lower() != "text/event-stream":
        on_chunk = None
    body, reusable = await _read_chunks(reader, headers, on_chunk)
    if on_chunk is not None and "chunked" not in headers.get("transfer-encoding", "").lower() and body:
        await on_chunk(body)
    return body, reusable


async def _read_chunks(
    reader: asyncio.StreamReader, headers: dict[str, str], on_chunk: OnChunk | None
) -> tuple[bytes, bool]:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks: list[bytes] = []
        size = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            length = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if length == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(chunks), True
            size += length
            if size > _MAX_BODY_BYTES:
                raise HttpError("response body too large")
            chunk = await reader.readexactly(length)
            await reader.readexactly(2)
            chunks.append(chunk)
            if on_chunk is not None:
                await on_chunk(chunk)
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit() or int(declared) > _MAX_BODY_BYTES:
            raise HttpError("bad content-length")
        return await reader.readexactly(int(declared)), True
    body = await reader.read(_MAX_BODY_BYTES + 1)
    if len(body) > _MAX_BODY_BYTES:
        raise HttpError("response body too large")
    return body, False
