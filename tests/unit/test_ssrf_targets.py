"""SSRF protection of card fetches: every numeric spelling of an address is read as that address, internal
and metadata addresses are refused, redirects are checked hop by hop, and the connection goes to the
address that was checked (resolved once), with the original Host header.

Only loopback is ever connected to: refused targets are refused before any connection is attempted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from accord.errors import AccordError
from registry.pinned_fetch import PinnedFetcher
from registry.targets import TargetPolicy, address_kind, host_address, parse_ip_port
from tests.registry_harness import free_port, running

LOOPBACK = ipaddress.ip_address("127.0.0.1")


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),  # decimal
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("0x7f.0.0.1", "127.0.0.1"),  # hex parts
        ("0x7f000001", "127.0.0.1"),  # one hex number
        ("127.1", "127.0.0.1"),  # short form
        ("017700000001", "127.0.0.1"),  # one octal number
        ("2852039166", "169.254.169.254"),  # metadata, decimal
        ("0251.0376.0251.0376", "169.254.169.254"),  # metadata, octal
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
        ("10.0.0.1", "10.0.0.1"),
    ],
)
def test_numeric_hosts_are_read_as_the_address_a_resolver_would_use(host: str, address: str) -> None:
    assert host_address(host) == ipaddress.ip_address(address)


def test_names_are_left_to_the_resolver() -> None:
    assert host_address("localhost") is None
    assert host_address("agent.example") is None
    assert host_address("1.example") is None


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "private"),
        ("127.9.9.9", "private"),
        ("::1", "private"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12::1", "private"),
        ("100.64.0.1", "private"),
        ("169.254.169.254", "cloud-metadata"),
        ("100.100.100.200", "cloud-metadata"),
        ("fd00:ec2::254", "cloud-metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("192.0.2.10", "non-routable"),
        ("240.0.0.1", "non-routable"),
        ("::ffff:127.0.0.1", "private"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "cloud-metadata"),
        ("::127.0.0.1", "private"),  # IPv4-compatible
        ("2002:7f00:1::", "private"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "cloud-metadata"),  # NAT64 around 169.254.169.254
        ("93.184.216.34", "public"),
        ("2606:4700::1111", "public"),
    ],
)
def test_addresses_are_classified_including_ipv4_inside_ipv6(address: str, kind: str) -> None:
    assert address_kind(ipaddress.ip_address(address)) == kind


def test_local_mode_opens_private_networks_but_never_metadata_link_local_or_multicast() -> None:
    strict, local = TargetPolicy(), TargetPolicy(allow_private=True)
    for address in ("127.0.0.1", "10.0.0.1", "::1"):
        with pytest.raises(AccordError) as refused:
            strict.check(ipaddress.ip_address(address), 80)
        assert refused.value.reason == "target_forbidden"
        local.check(ipaddress.ip_address(address), 80)
    for address in ("169.254.169.254", "169.254.10.10", "224.0.0.1", "0.0.0.0"):
        with pytest.raises(AccordError) as refused:
            local.check(ipaddress.ip_address(address), 80)
        assert refused.value.reason == "target_forbidden"


def test_an_allowed_target_is_exactly_one_address_and_port() -> None:
    policy = TargetPolicy.from_settings(False, ["127.0.0.1:8443"])
    policy.check(LOOPBACK, 8443)
    with pytest.raises(AccordError):
        policy.check(LOOPBACK, 8444)
    with pytest.raises(AccordError):
        TargetPolicy.from_settings(False, ["169.254.169.254:80"]).check(
            ipaddress.ip_address("169.254.169.254"), 80
        )
    assert parse_ip_port("[::1]:9") == (ipaddress.ip_address("::1"), 9)


class FlippingResolver:
    """A DNS stand-in that answers `first` once and `later` afterwards (DNS rebinding), counting lookups."""

    def __init__(self, first: str, later: str) -> None:
        self.answers = [first]
        self.later = later
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return [self.answers.pop(0)] if self.answers else [self.later]


def card_app(closed_port: int) -> Starlette:
    async def card(request: Request) -> Response:
        return JSONResponse({"host": request.headers.get("host")})

    targets = {
        "metadata": "http://169.254.169.254/latest/meta-data/",
        "decimal": f"http://2130706433:{closed_port}/card.json",
        "octal": f"http://0177.0.0.1:{closed_port}/card.json",
        "mapped": f"http://[::ffff:127.0.0.1]:{closed_port}/card.json",
        "local-card": "/card.json",
    }
    routes = [Route("/card.json", card)]
    for name, target in targets.items():
        routes.append(Route(f"/to/{name}", lambda _r, t=target: RedirectResponse(t, status_code=302)))
    routes.append(Route("/loop", lambda _r: RedirectResponse("/loop", status_code=307)))
    return Starlette(routes=routes)


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[tuple[str, int, int]]:
    closed = free_port()
    async with running(card_app(closed)) as base_url:
        yield base_url, int(base_url.rsplit(":", 1)[1]), closed


def fetcher(port: int, resolver: FlippingResolver | None = None) -> PinnedFetcher:
    policy = TargetPolicy.from_settings(False, [f"127.0.0.1:{port}"])
    if resolver is None:
        return PinnedFetcher(policy, timeout_s=5, max_bytes=10_000)
    return PinnedFetcher(policy, timeout_s=5, max_bytes=10_000, resolver=resolver)


async def test_a_name_is_resolved_once_and_the_connection_pinned_to_the_checked_address(
    server: tuple[str, int, int],
) -> None:
    _, port, _ = server
    # Rebinding: any second lookup would answer the metadata address.
    resolver = FlippingResolver("127.0.0.1", "169.254.169.254")

    fetched = await fetcher(port, resolver).get(f"http://card.test:{port}/card.json")

    assert fetched.status == 200
    assert fetched.first_address == LOOPBACK
    assert resolver.lookups == ["card.test"]
    # The checked address was dialled with the original Host header.
    assert fetched.body == f'{{"host":"card.test:{port}"}}'.encode()


@pytest.mark.parametrize("target", ["metadata", "decimal", "octal", "mapped"])
async def test_a_redirect_to_an_internal_address_is_refused_at_that_hop(
    server: tuple[str, int, int], target: str
) -> None:
    base_url, port, _ = server
    with pytest.raises(AccordError) as refused:
        await fetcher(port).get(f"{base_url}/to/{target}")
    assert refused.value.reason == "target_forbidden"


async def test_a_name_that_resolves_to_an_internal_address_is_refused_before_connecting(
    server: tuple[str, int, int],
) -> None:
    _, port, closed = server
    resolver = FlippingResolver("169.254.169.254", "127.0.0.1")
    with pytest.raises(AccordError) as refused:
        await fetcher(port, resolver).get(f"http://metadata.test:{closed}/")
    assert refused.value.reason == "target_forbidden"
    assert refused.value.context["address"] == "169.254.169.254"


async def test_redirects_within_allowed_targets_are_followed_and_loops_are_cut(
    server: tuple[str, int, int],
) -> None:
    base_url, port, _ = server
    followed = await fetcher(port).get(f"{base_url}/to/local-card")
    assert followed.status == 200
    with pytest.raises(AccordError) as looping:
        await fetcher(port).get(f"{base_url}/loop")
    assert looping.value.reason == "agent_unavailable"


async def test_the_first_hop_must_lead_to_the_expected_address_for_self_registration(
    server: tuple[str, int, int],
) -> None:
    base_url, port, _ = server
    with pytest.raises(AccordError) as refused:
        await fetcher(port).get(f"{base_url}/card.json", expect_first=ipaddress.ip_address("127.0.0.2"))
    assert refused.value.reason == "unauthenticated"
    fetched = await fetcher(port).get(f"{base_url}/card.json", expect_first=LOOPBACK)
    assert fetched.status == 200
