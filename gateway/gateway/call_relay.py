"""What an upstream sends back while a tool call runs, carried to the caller of that call and no one else.

An upstream may report progress and log messages during a call, and may need input from the caller's side
(elicitation, sampling, roots) before it can answer. The gateway speaks 2026-07-28 to its upstreams, so the
first two arrive on the call's SSE stream and the third as an `input_required` result. How each reaches
the caller depends on how the caller speaks:

- progress and log messages go out on the caller's request stream, if the caller asked for them (a
  progress token; a log level: the request's `_meta` key, or `logging/setLevel` in a handshake session),
  and only at or above the level it asked for;
- a 2026-07-28 caller gets the `input_required` result itself and answers it by retrying the call, which
  the gateway authorizes like any call and forwards with the answers;
- a handshake-session caller is asked by the gateway, as server-to-client requests on the call's stream;
  the gateway then retries upstream with the answers, at most `MAX_INPUT_ROUNDS` times;
- a caller that can be asked nothing (no session, or no such capability declared) is never asked: the
  upstream is told the caller lacks the capability.

Everything relayed is the upstream's data, as untrusted as its results: the gateway checks its shape and
passes it on, and never acts on it.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard

import anyio
import anyio.lowlevel
import mcp_types as types
from mcp.server import ServerRequestContext
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.message import ServerMessageMetadata
from mcp_types import LOG_LEVEL_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

from gateway.provenance import PROVENANCE_KEY
from gateway.session_state import connection_state

logger = logging.getLogger(__name__)

MAX_INPUT_ROUNDS = 10
MAX_EVENT_CHARS = 1_048_576
# An SSE event ends at a blank line, whichever line ending the upstream uses.
_EVENT_END = re.compile(r"\r\n\r\n|\n\r\n|\r\n\n|\n\n|\r\r")
# How long a caller may take over one question (a person may be answering it).
ASK_TIMEOUT_S = 300.0
LOG_LEVELS: tuple[types.LoggingLevel, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
# Where a handshake session keeps the level its client set with `logging/setLevel`.
SESSION_LOG_LEVEL_KEY = "accord.log_level"
# The capabilities a caller may lend the upstream for one call: what it can be asked.
_ASKABLE = ("elicitation", "sampling", "roots")
# Per method a caller may be asked: the capability it must have declared, and the shape of its answer.
_ASKED: dict[str, tuple[types.ClientCapabilities, type[BaseModel]]] = {
    "elicitation/create": (
        types.ClientCapabilities(elicitation=types.ElicitationCapability()),
        types.ElicitResult,
    ),
    "sampling/createMessage": (
        types.ClientCapabilities(sampling=types.SamplingCapability()),
        types.CreateMessageResult,
    ),
    "roots/list": (types.ClientCapabilities(roots=types.RootsCapability()), types.ListRootsResult),
}


class InputDeclined(Exception):
    """The caller could not or would not give what the upstream asked for."""


@dataclass(frozen=True)
class InputRound:
    """A caller's answers to an earlier `input_required` result (wire form), forwarded as they are."""

    responses: Mapping[str, Any] | None = None
    request_state: str | None = None


class CallRelay(Protocol):
    """The caller's side of one call, as the upstream call path needs it."""

    @property
    def progress_token(self) -> str | int | None: ...

    @property
    def log_level(self) -> types.LoggingLevel | None: ...

    @property
    def capabilities(self) -> dict[str, Any]: ...

    @property
    def can_ask(self) -> bool: ...

    @property
    def answers_itself(self) -> bool: ...

    async def progress(self, progress: float, total: float | None, message: str | None) -> None: ...

    async def log(self, level: types.LoggingLevel, data: Any, logger_name: str | None) -> None: ...

    async def ask(self, requests: Mapping[str, types.InputRequest], upstream: str) -> dict[str, Any]: ...


def level_allows(threshold: types.LoggingLevel | None, level: types.LoggingLevel) -> bool:
    return threshold is not None and LOG_LEVELS.index(level) >= LOG_LEVELS.index(threshold)


@dataclass
class DownstreamRelay:
    """`CallRelay` over the MCP server's request context of the caller's `tools/call`."""

    ctx: ServerRequestContext[Any, Any]
    progress_token: str | int | None = None
    log_level: types.LoggingLevel | None = None
    capabilities: dict[str, Any] = field(default_factory=dict)
    can_ask: bool = False
    answers_itself: bool = False

    @classmethod
    def of(cls, ctx: ServerRequestContext[Any, Any]) -> DownstreamRelay:
        meta: Mapping[str, Any] = ctx.meta if isinstance(ctx.meta, Mapping) else {}
        token = meta.get("progress_token")  # the SDK's name for the wire's `progressToken`
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        level = meta.get(LOG_LEVEL_META_KEY) if modern else connection_state(ctx).get(SESSION_LOG_LEVEL_KEY)
        declared = ctx.session.client_capabilities
        lent = declared.model_dump(by_alias=True, mode="json", exclude_none=True) if declared else {}
        # A modern caller answers an `input_required` result itself; a session caller is asked on its
        # stream; a caller with neither cannot be asked anything, so the upstream is told so.
        can_ask = not modern and ctx.session.can_send_request
        askable = modern or can_ask
        return cls(
            ctx,
            progress_token=token if isinstance(token, str | int) and not isinstance(token, bool) else None,
            log_level=level if level in LOG_LEVELS else None,
            capabilities={name: lent[name] for name in _ASKABLE if askable and name in lent},
            can_ask=can_ask,
            answers_itself=modern,
        )

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        if self.progress_token is None:
            return
        await self.ctx.session.send_progress_notification(
            self.progress_token, progress, total, message, related_request_id=str(self.ctx.request_id)
        )

    async def log(self, level: types.LoggingLevel, data: Any, logger_name: str | None) -> None:
        if not level_allows(self.log_level, level):
            return
        with warnings.catch_warnings():
            # Deprecated from 2026-07-28 on, where it is still the way to answer a log-level opt-in.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await self.ctx.session.send_log_message(
                level, data, logger_name, related_request_id=self.ctx.request_id
            )

    async def ask(self, requests: Mapping[str, types.InputRequest], upstream: str) -> dict[str, Any]:
        """Each request, asked of the caller concurrently; the answers keyed as the upstream keyed them.
        Nothing is asked unless every request may be: see `relayable`."""
        if not self.can_ask:
            raise InputDeclined("the caller cannot be asked for input")
        relayed = {key: relayable(request, upstream) for key, request in requests.items()}
        for request in relayed.values():
            if not self.ctx.session.check_client_capability(_ASKED[request.method][0]):
                raise InputDeclined(f"the caller did not declare {request.method}")
        answers: dict[str, Any] = {}
        metadata = ServerMessageMetadata(related_request_id=self.ctx.request_id)

        async def ask_one(key: str, request: types.InputRequest) -> None:
            result_type = _ASKED[request.method][1]
            result = await self.ctx.session.send_request(
                request, result_type, request_read_timeout_seconds=ASK_TIMEOUT_S, metadata=metadata
            )
            answers[key] = result.model_dump(by_alias=True, mode="json", exclude_none=True)

        try:
            async with anyio.create_task_group() as group:
                for key, request in relayed.items():
                    group.start_soon(ask_one, key, request)
        except* Exception as failed:
            # The caller refused, answered out of shape, or not in time: the upstream gets no answer.
            kinds = sorted({type(exc).__name__ for exc in failed.exceptions})
            logger.warning("a caller did not answer an input request", extra={"error": ",".join(kinds)})
            raise InputDeclined("the caller did not answer") from None
        return answers


def relayable(request: types.InputRequest, upstream: str) -> types.InputRequest:
    """What of an upstream's request reaches the caller (deny by default), marked as the upstream's.

    A URL elicitation would show the caller an upstream's link as if the gateway sent it, and sampling
    with tools would let an upstream drive the caller's model through tool calls: neither is relayed.
    Sampling never includes the caller's context (`includeContext` is forced to `none`): that context
    holds other upstreams' results."""
    mark = {PROVENANCE_KEY: {"upstream": upstream, "untrusted": True}}
    if isinstance(request, types.ElicitRequest):
        if not isinstance(request.params, types.ElicitRequestFormParams):
            raise InputDeclined("URL elicitation is not relayed")
        params: Any = request.params.model_copy(update={"meta": {**(request.params.meta or {}), **mark}})
        return request.model_copy(update={"params": params})
    if isinstance(request, types.CreateMessageRequest):
        if request.params.tools or request.params.tool_choice is not None:
            raise InputDeclined("sampling with tools is not relayed")
        update = {"include_context": "none", "meta": {**(request.params.meta or {}), **mark}}
        return request.model_copy(update={"params": request.params.model_copy(update=update)})
    return request


class UpstreamEvents:
    """Reads a call's SSE stream as it arrives and relays what the caller asked for.

    Only `notifications/progress` for the call's own token and `notifications/message` at the caller's
    level pass; anything else an upstream sends on the stream is dropped here (the final response is
    read from the whole body afterwards)."""

    def __init__(self, relay: CallRelay) -> None:
        self._relay = relay
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = ""
        self._scanned = 0  # where the next search for an event's end starts
        self._skipping = False  # inside an event too large to relay, until its end

    async def feed(self, chunk: bytes) -> None:
        """Relay the events `chunk` completes. Linear in what arrives: the buffer is searched from where
        the last search stopped (less the length of a separator split across chunks) and cut once."""
        self._pending += self._decoder.decode(chunk)
        taken = 0
        for end in _EVENT_END.finditer(self._pending, self._scanned):
            if not self._skipping and end.start() - taken <= MAX_EVENT_CHARS:
                data = event_data(self._pending[taken : end.start()].replace("\r\n", "\n"))
                if data:
                    await self._relay_message(data)
            self._skipping = False
            taken = end.end()
        self._pending = self._pending[taken:]
        if len(self._pending) > MAX_EVENT_CHARS:
            # An upstream may stream a large final result, never an oversized notification worth relaying:
            # the rest of this event is skipped (its last characters kept: they may begin the separator).
            self._pending, self._skipping = self._pending[-3:], True
        self._scanned = max(len(self._pending) - 3, 0)
        await anyio.lowlevel.checkpoint()  # a long stream's parsing never holds the event loop

    async def _relay_message(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        if not isinstance(message, dict) or not isinstance(params := message.get("params"), dict):
            return
        method = message.get("method")
        token = self._relay.progress_token
        if method == "notifications/progress" and token is not None and params.get("progressToken") == token:
            progress, total, text = params.get("progress"), params.get("total"), params.get("message")
            if not _number(progress) or not (total is None or _number(total)):
                return
            if text is None or isinstance(text, str):
                await self._relay.progress(progress, total, text)
        elif method == "notifications/message":
            level, name = params.get("level"), params.get("logger")
            if level in LOG_LEVELS and (name is None or isinstance(name, str)):
                await self._relay.log(level, params.get("data"), name)


def events_data(text: str) -> list[str]:
    """The data of each event in a whole SSE body (events without data left out)."""
    return [data for data in map(event_data, _EVENT_END.split(text.replace("\r\n", "\n"))) if data]


def event_data(block: str) -> str:
    """The data of one SSE event (its `data:` lines joined), "" if it has none."""
    lines = [line[5:].removeprefix(" ") for line in block.split("\n") if line.startswith("data:")]
    return "\n".join(lines)


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
