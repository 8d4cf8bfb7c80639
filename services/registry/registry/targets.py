"""Which network addresses the registry may fetch from (SSRF protection), decided on resolved addresses.

A card URL names a host; the registry resolves it once, checks every address it resolved to, and pins the
connection to the checked address (`registry.pinned_fetch`). Hosts written as numbers in any form a
resolver accepts (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`, `[::ffff:127.0.0.1]`) are read the way
`inet_aton` reads them, so they are checked as the address they really are.

Never allowed: unspecified, multicast, link-local (which holds most cloud metadata services), reserved or
otherwise non-routable addresses, and the known metadata addresses. Loopback and private (RFC 1918, ULA,
shared) addresses are allowed only in local mode (`allow_private`), or as an exact `ip:port` the operator
listed in `allowed`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from accord.errors import AccordError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance-metadata and host-agent endpoints; several are outside link-local, so they are named.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server (a public address)
        "192.0.0.192",  # Oracle Cloud (legacy)
        "fd00:ec2::254",  # AWS IMDS over IPv6
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT: private in practice


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> list[str]:
        """Every address `host` resolves to (as text)."""
        ...


class SystemResolver:
    """The operating system's resolver, off the event loop."""

    async def resolve(self, host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class TargetPolicy:
    """`allow_private`: local mode (loopback and private networks reachable). `allowed`: exact `ip:port`
    targets allowed even outside local mode (never metadata, link-local or multicast ones)."""

    allow_private: bool = False
    allowed: frozenset[tuple[IPAddress, int]] = field(default_factory=frozenset)

    @classmethod
    def from_settings(cls, allow_private: bool, allowed: Iterable[str]) -> TargetPolicy:
        return cls(allow_private, frozenset(parse_ip_port(entry) for entry in allowed))

    def check(self, address: IPAddress, port: int) -> None:
        """Raise `target_forbidden` unless the registry may connect to `address:port`."""
        kind = address_kind(address)
        if kind == "public":
            return
        if kind == "private" and (self.allow_private or (address, port) in self.allowed):
            return
        raise AccordError("target_forbidden", f"the card URL leads to a {kind} address", address=str(address))


def address_kind(address: IPAddress) -> str:
    """`public`, `private` (loopback and private networks) or the reason it is never reachable."""
    embedded = embedded_ipv4(address)
    if embedded is not None:
        return address_kind(embedded)
    if address in METADATA_ADDRESSES:
        return "cloud-metadata"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_link_local:
        return "link-local"
    if address.is_loopback:
        return "private"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "private"
    if address.is_private and not address.is_reserved:
        # RFC 1918 and ULA; documentation, benchmarking and other special ranges are `is_private` too.
        return "private" if _is_private_network(address) else "non-routable"
    if address.is_reserved or not address.is_global:
        return "non-routable"
    return "public"


def _is_private_network(address: IPAddress) -> bool:
    networks = (
        ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
        if isinstance(address, ipaddress.IPv4Address)
        else ("fc00::/7",)
    )
    return any(address in ipaddress.ip_network(network) for network in networks)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    packed = address.packed
    # IPv4-compatible (deprecated `::a.b.c.d`); `::` and `::1` keep their own meaning.
    if packed[:12] == bytes(12) and int(address) > 1:
        return ipaddress.IPv4Address(packed[12:])
    return None


def host_address(host: str) -> IPAddress | None:
    """The address a URL host denotes by itself (any numeric form), or None for a name to resolve."""
    if ":" in host:
        if "%" in host:
            # A zone id names an interface, which only link-local addresses need.
            raise AccordError("target_forbidden", "the card URL names a network interface")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise AccordError("invalid_input", "card_url has an invalid IPv6 host") from exc
    return numeric_ipv4(host)


def numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """`inet_aton` reading: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the last part fills
    the remaining bytes. None when `host` is not such a number (a name)."""
    parts = host.rstrip(".").split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        value = _number(part)
        if value is None:
            return None
        values.append(value)
    *leading, last = values
    if any(value > 255 for value in leading) or last >= 256 ** (5 - len(values)):
        raise AccordError("invalid_input", "card_url has an out-of-range numeric host")
    total = 0
    for value in leading:
        total = total * 256 + value
    total = total * 256 ** (5 - len(values)) + last
    return ipaddress.IPv4Address(total)


def _number(part: str) -> int | None:
    text = part.lower()
    try:
        if text.startswith("0x"):
            return int(text[2:] or "0", 16)
        if len(text) > 1 and text.startswith("0"):
            return int(text[1:], 8)
        return int(text, 10) if text.isdigit() else None
    except ValueError:
        return None


def parse_ip_port(entry: str) -> tuple[IPAddress, int]:
    """`127.0.0.1:8443` or `[::1]:8443` -> (address, port)."""
    host, _, port = entry.rpartition(":")
    try:
        return ipaddress.ip_address(host.strip("[]")), int(port)
    except ValueError as exc:
        raise ValueError(f"allowed target {entry!r} is not 'ip:port'") from exc


async def resolve_checked(host: str, port: int, policy: TargetPolicy, resolver: Resolver) -> IPAddress:
    """Resolve `host` once and check every address; the first one is where the connection goes."""
    literal = host_address(host)
    if literal is not None:
        addresses: Sequence[IPAddress] = [literal]
    else:
        try:
            resolved = await resolver.resolve(host, port)
        except OSError as exc:
            raise AccordError("agent_unavailable", "the card URL's host does not resolve") from exc
        addresses = [ipaddress.ip_address(text.split("%")[0]) for text in resolved]
        if not addresses:
            raise AccordError("agent_unavailable", "the card URL's host does not resolve")
    # Every address must pass: a name that also resolves to an internal address is refused, whichever
    # address a client would have tried first.
    for address in addresses:
        policy.check(address, port)
    return addresses[0]
