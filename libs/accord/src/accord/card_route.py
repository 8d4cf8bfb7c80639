"""Serving an Agent Card with HTTP caching (RFC 9111) and conditional requests (RFC 9110 §13).

Every answer carries `Cache-Control` (how long a client may reuse the card), a strong `ETag` (a digest of
the exact bytes served, signature included) and `Last-Modified` (when the served card last changed: the
process start, then every change of the bytes, such as a re-signing after a key rotation). A request whose
`If-None-Match` names the ETag (or is `*`) is answered 304; without `If-None-Match`, one whose
`If-Modified-Since` is not older than `Last-Modified` is answered 304 (RFC 9110 §13.2.2: `If-None-Match`,
when present, decides alone). A 304 carries the same validators and no body; HEAD gets the headers only.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate, parsedate_to_datetime

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.types import AgentCard
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from accord.keys import Clock

CardSource = Callable[[], Awaitable[AgentCard]]


class CardEndpoint:
    def __init__(self, card: CardSource, cache_control: str, clock: Clock = time.time) -> None:
        self._card = card
        self._cache_control = cache_control
        self._clock = clock
        self._etag: str | None = None
        # HTTP dates have whole seconds: a change within the second of the last one still moves it on.
        self._modified = int(clock())

    def routes(self, paths: tuple[str, ...]) -> list[BaseRoute]:
        return [Route(path, self.serve, methods=["GET", "HEAD"]) for path in paths]

    async def serve(self, request: Request) -> Response:
        body = json.dumps(agent_card_to_dict(await self._card()), separators=(",", ":")).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if etag != self._etag:
            if self._etag is not None:
                self._modified = max(self._modified + 1, int(self._clock()))
            self._etag = etag
        headers = {
            "Cache-Control": self._cache_control,
            "ETag": etag,
            "Last-Modified": formatdate(self._modified, usegmt=True),
        }
        if self._not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    def _not_modified(self, request: Request, etag: str) -> bool:
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None:
            tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
            return "*" in tags or etag in tags
        since = request.headers.get("if-modified-since")
        if since is None:
            return False
        try:
            return self._modified <= parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False  # an unparsable date is ignored (RFC 9110 §13.1.3)
