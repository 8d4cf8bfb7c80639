"""Bounded HTTP GETs to checked, pinned addresses, following redirects only through checked hops.

Each hop: parse the URL, resolve its host once (`registry.targets`), check every address, then connect to
the checked address itself with the original `Host` header (and, for https, the original name as SNI and
for certificate checks). A name that resolves differently a moment later (DNS rebinding) therefore cannot
move the connection to an address that was never checked. Redirects (at most `max_redirects`) are taken
one at a time, each new location checked the same way. Environment proxies are ignored: a proxy would
choose the address itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from accord.errors import AccordError
from registry.targets import (
    IPAddress,
    Resolver,
    SystemResolver,
    TargetPolicy,
    embedded_ipv4,
    resolve_checked,
)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Fetched:
    status: int
    body: bytes
    first_address: IPAddress  # where the first hop connected (the card URL's host, as checked)


@dataclass(frozen=True)
class Hop:
    """One checked request target: the URL as given, and the address the connection is pinned to."""

    url: str
    host: str
    port: int
    address: IPAddress

    def pinned_url(self) -> str:
        parts = urlsplit(self.url)
        address = self.address
        literal = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
        return urlunsplit((parts.scheme, f"{literal}:{self.port}", parts.path or "/", parts.query, ""))

    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = _DEFAULT_PORTS[urlsplit(self.url).scheme]
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class PinnedFetcher:
    policy: TargetPolicy
    timeout_s: float
    max_bytes: int
    resolver: Resolver = field(default_factory=SystemResolver)
    max_redirects: int = 5

    async def check(self, url: str) -> Hop:
        """Parse and resolve `url` and check where it leads, without connecting."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise AccordError("invalid_input", "card URLs are absolute http(s) URLs")
        if parts.username is not None or parts.password is not None:
            raise AccordError("invalid_input", "card URLs must not carry credentials")
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError as exc:
            raise AccordError("invalid_input", "card URL has an invalid port") from exc
        host = parts.hostname.lower()
        address = await resolve_checked(host, port, self.policy, self.resolver)
        return Hop(url, host, port, address)

    async def get(
        self,
        url: str,
        accept: str = "application/json",
        read_body: bool = True,
        expect_first: IPAddress | None = None,
    ) -> Fetched:
        """GET `url` (redirects followed through checked hops); the body is read up to `max_bytes`, or
        not at all without `read_body` (a health probe needs the status only). With `expect_first`, the
        first hop must lead to that address (checked before connecting), else `unauthenticated`."""
        try:
            # httpx timeouts bound each read; the outer deadline bounds a server that drips bytes slowly.
            async with (
                asyncio.timeout(self.timeout_s),
                httpx.AsyncHTTPTransport() as transport,
                httpx.AsyncClient(timeout=self.timeout_s, transport=transport, trust_env=False) as client,
            ):
                return await self._follow(client, transport, url, accept, read_body, expect_first)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise AccordError("agent_unavailable", "the agent did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise AccordError("agent_unavailable", "the agent is unreachable") from exc

    async def _follow(
        self,
        client: httpx.AsyncClient,
        transport: httpx.AsyncHTTPTransport,
        url: str,
        accept: str,
        read_body: bool,
        expect_first: IPAddress | None,
    ) -> Fetched:
        first: IPAddress | None = None
        for _ in range(self.max_redirects + 1):
            hop = await self.check(url)
            if first is None:
                if expect_first is not None and not same_host(hop.address, expect_first):
                    raise AccordError("unauthenticated", "the card URL does not lead to the caller's address")
                first = hop.address
            status, location, body = await self._request(client, transport, hop, accept, read_body)
            if status not in _REDIRECTS:
                return Fetched(status, body, first)
            if not location:
                raise AccordError("agent_unavailable", f"the agent answered HTTP {status} without a location")
            url = urljoin(url, location)
        raise AccordError("agent_unavailable", f"more than {self.max_redirects} redirects")

    async def _request(
        self,
        client: httpx.AsyncClient,
        transport: httpx.AsyncHTTPTransport,
        hop: Hop,
        accept: str,
        read_body: bool,
    ) -> tuple[int, str | None, bytes]:
        headers = {"Host": hop.host_header(), "Accept": accept}
        extensions = {"sni_hostname": hop.host} if hop.url.lower().startswith("https:") else {}
        request = client.build_request("GET", hop.pinned_url(), headers=headers, extensions=extensions)
        # Straight to the transport: the client's own redirect handling would parse (and may reject) the
        # location before it is checked here, where every hop is resolved and checked the same way.
        response = await transport.handle_async_request(request)
        try:
            if response.status_code in _REDIRECTS:
                return response.status_code, response.headers.get("location"), b""
            body = await self._read(response) if read_body else b""
            return response.status_code, None, body
        finally:
            await response.aclose()

    async def _read(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise too_large(self.max_bytes)
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self.max_bytes:
                raise too_large(self.max_bytes)
        return bytes(body)


def same_host(a: IPAddress, b: IPAddress) -> bool:
    """One address, however written (an IPv4 peer may show up IPv4-mapped on a dual-stack socket)."""
    return (embedded_ipv4(a) or a) == (embedded_ipv4(b) or b)


def too_large(max_bytes: int) -> AccordError:
    return AccordError("card_invalid", f"card is larger than {max_bytes} bytes")
