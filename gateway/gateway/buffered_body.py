"""A request body read once, under a size cap, before a pure-ASGI layer judges it, then replayed to the app.

The guards in front of `/mcp` and of the relay's A2A endpoints decide on the very bytes the app behind them
will parse: the body is buffered here (a declared or actual size over the limit is `body_too_large`), and
`replay` hands the same bytes to the app, deferring to the real `receive` afterwards (disconnects).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope

from accord.strict_json import StrictJsonError


class Disconnected(Exception):
    """The client went away before its request body arrived."""


async def read_body(headers: Headers, receive: Receive, limit: int) -> bytes:
    """The whole body; `body_too_large` past `limit` bytes, `Disconnected` if the client went away."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 12 or int(declared) > limit):
        raise StrictJsonError("body_too_large", "body_too_large", limit=limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise StrictJsonError("body_too_large", "body_too_large", limit=limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def route_path(scope: Scope) -> str:
    """The path below the app's mount point (`root_path`), as the app behind the layer will route it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that yields the already-read body once, then defers to the real one (disconnects)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
