"""The upstream tool servers and the gateway's persistent MCP client to each.

Each `Upstream` owns one `mcp.Client` for its whole life. The client is entered and left by a supervisor
task (the SDK's task groups must be exited by the task that entered them); request handlers only borrow it.
A failed connection never aborts startup: the upstream is marked down and reconnected on demand, at most once
per retry interval. The http client carries only the gateway's own credential for that upstream, so nothing a
caller sends can reach an upstream except the tool arguments.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import anyio
import httpx2

# The MCP client validates structured results with jsonschema, which it imports on the first tool call; on
# a slow machine that import takes a second or more, so the gateway pays it at startup, not a caller.
import jsonschema  # noqa: F401
import mcp_types as types
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.subscriptions import ResourceUpdated
from pydantic import SecretStr

from accord.errors import AccordError
from gateway.call_relay import CallRelay, InputRound
from gateway.settings import GatewaySettings
from gateway.upstream_calls import CallRefused, CallTransportError, UpstreamCaller

logger = logging.getLogger(__name__)

T = TypeVar("T")
# A tool listing that keeps paginating past this many pages is treated as broken.
_MAX_LIST_PAGES = 50
# The SDK reports a lost HTTP exchange as one of these; any other MCPError is the upstream's own answer.
_TRANSPORT_ERROR_MESSAGES = ("Server returned an error response", "Session terminated")
_STREAM_ERRORS = (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream)
# "Resource not found" before SEP-2164 made it Invalid params.
_RESOURCE_NOT_FOUND = -32002


class UpstreamStatus(StrEnum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"


class UpstreamFailure(Exception):
    """An upstream could not produce a usable answer. `reason` is an error-table code; `detail` is safe."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _unavailable(name: str, why: str) -> UpstreamFailure:
    return UpstreamFailure("upstream_unavailable", f"upstream {name!r} {why}")


def _is_transport_failure(exc: BaseException) -> bool:
    """True when the connection itself is lost, so the client must be rebuilt."""
    if isinstance(exc, MCPError):
        return exc.code == types.CONNECTION_CLOSED or exc.message in _TRANSPORT_ERROR_MESSAGES
    return isinstance(exc, _STREAM_ERRORS)


def _failure_kind(exc: BaseException) -> str:
    """The leaf exception types of a failure (the SDK wraps transport errors in exception groups)."""
    if isinstance(exc, BaseExceptionGroup):
        return ",".join(sorted({_failure_kind(inner) for inner in exc.exceptions}))
    return type(exc).__name__


class Upstream:
    """One federated tool server: its URL, the gateway's credential for it, and the connection state."""

    def __init__(
        self, name: str, url: str, secret: SecretStr, *, timeout: float, retry_interval: float
    ) -> None:
        self.name = name
        self.url = url
        self._secret = secret
        self._timeout = timeout
        self._retry_interval = retry_interval
        self.status = UpstreamStatus.CONNECTING
        self.ever_connected = False
        self.first_attempt_done = asyncio.Event()
        self._client: Client | None = None
        self._broken = asyncio.Event()
        self._wanted = asyncio.Event()
        self._wanted.set()  # connect eagerly at startup
        self._changed = asyncio.Event()
        self._failed_at: float | None = None
        self._caller = UpstreamCaller(url, secret, timeout)

    # --- supervisor side -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect whenever a connection is wanted and hold it until it breaks. Runs until cancelled."""
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            await self._hold_one_connection()

    async def _hold_one_connection(self) -> None:
        self._set_status(UpstreamStatus.CONNECTING)
        connected = False
        try:
            async with self._open_client() as client:
                connected = True
                self._broken = asyncio.Event()
                self._client = client
                self.ever_connected = True
                self._failed_at = None
                self._set_status(UpstreamStatus.UP)
                logger.info("upstream connected", extra={"upstream": self.name})
                await self._broken.wait()
        except Exception as exc:
            # Connect errors, auth refusals and crashes of the SDK's transport task all mean "down"; the type
            # is enough for operators and the text could echo upstream responses.
            logger.warning("upstream down", extra={"upstream": self.name, "error": _failure_kind(exc)})
        finally:
            self._client = None
            if not connected:
                self._failed_at = time.monotonic()
            self._set_status(UpstreamStatus.DOWN)

    @asynccontextmanager
    async def _open_client(self) -> AsyncIterator[Client]:
        # Only the gateway's own header: the caller's Authorization (or anything it sent) never goes upstream.
        headers = {"Authorization": f"Bearer {self._secret.get_secret_value()}"}
        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(self._timeout), trust_env=False)
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(http)
            transport = streamable_http_client(self.url, http_client=http)
            # The catalog keeps its own TTL cache, so the SDK's response cache would only hide changes.
            client = Client(transport, read_timeout_seconds=self._timeout, cache=None)
            yield await stack.enter_async_context(client)

    def _set_status(self, status: UpstreamStatus) -> None:
        self.status = status
        if status is not UpstreamStatus.CONNECTING:
            self.first_attempt_done.set()
        self._changed.set()
        self._changed = asyncio.Event()

    # --- borrower side ---------------------------------------------------------------------------------

    def request_connection(self) -> None:
        """Ask for a (re)connection unless one is under way or the last attempt failed too recently."""
        if self.status is UpstreamStatus.DOWN and not self._recently_failed():
            self._wanted.set()

    def _recently_failed(self) -> bool:
        return self._failed_at is not None and time.monotonic() - self._failed_at < self._retry_interval

    async def client(self) -> Client:
        """The connected client, connecting on demand; `UpstreamFailure` when the upstream is unreachable."""
        try:
            with anyio.fail_after(self._timeout):
                while True:
                    if self._client is not None:
                        return self._client
                    if self.status is UpstreamStatus.DOWN and self._recently_failed():
                        raise _unavailable(self.name, "is unavailable")
                    changed = self._changed
                    self.request_connection()
                    await changed.wait()
        except TimeoutError:
            raise _unavailable(self.name, "did not connect in time") from None

    def _mark_broken(self, client: Client) -> None:
        if client is self._client:
            self._client = None
            self._broken.set()

    async def _exchange(self, operation: Callable[[Client], Awaitable[T]]) -> T:
        client = await self.client()
        try:
            return await operation(client)
        except MCPError as exc:
            if _is_transport_failure(exc):
                self._mark_broken(client)
                raise _unavailable(self.name, "is unavailable") from None
            if exc.code == types.REQUEST_TIMEOUT:
                raise _unavailable(self.name, "did not answer in time") from None
            # The upstream's own verdict on what was asked (no such resource, bad arguments): the
            # caller's to hear, with a safe message rather than the upstream's text.
            if exc.code == types.INVALID_PARAMS:
                raise AccordError("invalid_input", f"upstream {self.name!r} refused the parameters") from None
            if exc.code == _RESOURCE_NOT_FOUND:
                raise AccordError(
                    "unknown_resource", f"upstream {self.name!r} has no such resource"
                ) from None
            raise _unavailable(self.name, "refused the request") from None
        except RuntimeError as exc:
            # The SDK raises RuntimeError when structured content fails the tool's declared output schema.
            # Only the type is logged: the message quotes the upstream's (possibly personal) data.
            logger.warning(
                "upstream contract violation", extra={"upstream": self.name, "error": type(exc).__name__}
            )
            raise UpstreamFailure(
                "contract_violation", f"upstream {self.name!r} broke its tool contract"
            ) from None
        except _STREAM_ERRORS:
            self._mark_broken(client)
            raise _unavailable(self.name, "is unavailable") from None

    async def list_tools(self) -> list[types.Tool]:
        async def page(client: Client, cursor: str | None) -> tuple[list[types.Tool], str | None]:
            listed = await client.list_tools(cursor=cursor)
            return listed.tools, listed.next_cursor

        return await self._exchange(lambda client: _all_pages(client, page))

    async def list_resources(self) -> list[types.Resource]:
        async def page(client: Client, cursor: str | None) -> tuple[list[types.Resource], str | None]:
            listed = await client.list_resources(cursor=cursor)
            return listed.resources, listed.next_cursor

        return await self._exchange(lambda client: _all_pages(client, page))

    async def list_resource_templates(self) -> list[types.ResourceTemplate]:
        async def page(client: Client, cursor: str | None) -> tuple[list[types.ResourceTemplate], str | None]:
            listed = await client.list_resource_templates(cursor=cursor)
            return listed.resource_templates, listed.next_cursor

        return await self._exchange(lambda client: _all_pages(client, page))

    async def list_prompts(self) -> list[types.Prompt]:
        async def page(client: Client, cursor: str | None) -> tuple[list[types.Prompt], str | None]:
            listed = await client.list_prompts(cursor=cursor)
            return listed.prompts, listed.next_cursor

        return await self._exchange(lambda client: _all_pages(client, page))

    async def watch_resource(
        self, uri: str, on_update: Callable[[], Awaitable[None]], honored: asyncio.Future[None]
    ) -> None:
        """Hold a `subscriptions/listen` stream for one resource: `honored` resolves once the upstream
        acknowledged it (refused, `UpstreamFailure`, if it left the resource out), and each update of that
        resource calls `on_update`. Returns when the upstream ends the stream."""
        client = await self.client()
        async with client.listen(resource_subscriptions=[uri]) as subscription:
            if uri not in (subscription.honored.resource_subscriptions or []):
                raise UpstreamFailure(
                    "upstream_unavailable", f"upstream {self.name!r} offers no updates of it"
                )
            if not honored.done():
                honored.set_result(None)
            async for event in subscription:
                if isinstance(event, ResourceUpdated) and event.uri == uri:
                    await on_update()

    async def read_resource(self, uri: str) -> types.ReadResourceResult:
        return await self._exchange(lambda client: client.read_resource(uri))

    async def get_prompt(self, name: str, arguments: dict[str, str] | None) -> types.GetPromptResult:
        return await self._exchange(lambda client: client.get_prompt(name, arguments))

    async def complete(
        self,
        ref: types.ResourceTemplateReference | types.PromptReference,
        argument: dict[str, str],
        context_arguments: dict[str, str] | None,
    ) -> types.CompleteResult:
        return await self._exchange(lambda client: client.complete(ref, argument, context_arguments))

    async def call_tool(
        self,
        tool: str,
        arguments: dict[str, Any],
        output_schema: Mapping[str, Any] | None = None,
        relay: CallRelay | None = None,
        answers: InputRound | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """One tool call as a single exchange (`gateway.upstream_calls`); failures are `UpstreamFailure`."""
        if self.status is UpstreamStatus.DOWN and self._recently_failed():
            raise _unavailable(self.name, "is unavailable")
        try:
            result = await self._caller.call(tool, arguments, output_schema, relay, answers)
        except CallTransportError:
            self._note_call_failure()
            raise _unavailable(self.name, "is unavailable") from None
        except CallRefused as refused:
            if refused.kind == "refused":
                raise _unavailable(self.name, "refused the request") from None
            # Only the kind is logged: the upstream's answer may quote personal data.
            logger.warning("upstream contract violation", extra={"upstream": self.name})
            raise UpstreamFailure(
                "contract_violation", f"upstream {self.name!r} broke its tool contract"
            ) from None
        if self.status is UpstreamStatus.DOWN:
            self.request_connection()  # it answers again: bring the supervised connection back too
        return result

    def _note_call_failure(self) -> None:
        """A failed exchange means the upstream is gone: drop the supervised connection so status,
        readiness and listings see it, and so reconnecting waits for the retry interval."""
        if self._client is not None:
            self._mark_broken(self._client)
        else:
            self._failed_at = time.monotonic()
            self._set_status(UpstreamStatus.DOWN)

    async def aclose(self) -> None:
        await self._caller.aclose()


async def _all_pages(
    client: Client, page: Callable[[Client, str | None], Awaitable[tuple[list[T], str | None]]]
) -> list[T]:
    """Every item of a paginated listing; a listing that keeps paginating is treated as broken."""
    items: list[T] = []
    cursor: str | None = None
    for _ in range(_MAX_LIST_PAGES):
        found, cursor = await page(client, cursor)
        items.extend(found)
        if cursor is None:
            return items
    raise RuntimeError("listing did not terminate")


@dataclass(frozen=True)
class UpstreamPool:
    """All configured upstreams, in configuration order."""

    upstreams: dict[str, Upstream]
    connect_timeout: float

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> UpstreamPool:
        upstreams = {
            name: Upstream(
                name,
                url,
                settings.gateway_upstream_secrets[name],
                timeout=settings.gateway_upstream_timeout_seconds,
                retry_interval=settings.gateway_upstream_retry_seconds,
            )
            for name, url in settings.gateway_upstreams.items()
        }
        return cls(upstreams, settings.gateway_upstream_timeout_seconds)

    def __iter__(self) -> Iterator[Upstream]:
        return iter(self.upstreams.values())

    def get(self, name: str) -> Upstream | None:
        return self.upstreams.get(name)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[UpstreamPool]:
        """Supervise every upstream; wait (bounded) for the first connection attempts so a healthy mesh is
        ready at once, but never fail because an upstream is down."""
        try:
            async with anyio.create_task_group() as group:
                for upstream in self:
                    group.start_soon(upstream.run)
                with anyio.move_on_after(self.connect_timeout):
                    for upstream in self:
                        await upstream.first_attempt_done.wait()
                try:
                    yield self
                finally:
                    group.cancel_scope.cancel()
        finally:
            for upstream in self:
                await upstream.aclose()

    async def ready(self) -> bool:
        """Readiness: every upstream has connected at least once. Asking retries the ones that have not."""
        for upstream in self:
            if not upstream.ever_connected:
                upstream.request_connection()
        return all(upstream.ever_connected for upstream in self)
