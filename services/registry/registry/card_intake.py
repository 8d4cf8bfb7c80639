"""Taking in an Agent Card from its URL: a bounded fetch, the A2A parse, the signature, the origin.

Every failure is reason-coded:
- a URL leading to an address the registry may not reach (private, loopback, link-local, metadata, ...
  outside local mode; checked at every redirect): `target_forbidden`;
- a URL that cannot be fetched, or an agent whose A2A endpoint does not answer: `agent_unavailable`;
- content that is not a usable card (not JSON, too large, missing required fields): `card_invalid`;
- a signature that does not verify against the trust store: `card_unsigned`, `card_signature_invalid`,
  `card_signer_unknown` or `card_algorithm_not_allowed`;
- interfaces that are not at the card URL's origin (a card copied to, or served from, somewhere else):
  `card_origin_mismatch`.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from a2a.types import AgentCard
from a2a.utils.constants import TransportProtocol
from google.protobuf.json_format import ParseError

from accord.card_signing import CardVerifier
from accord.cards import card_from_dict, card_to_dict
from accord.errors import AccordError
from registry.pinned_fetch import PinnedFetcher, too_large
from registry.store import AgentDraft, SkillOffer
from registry.targets import IPAddress, Resolver, SystemResolver, TargetPolicy

# Names become URL path segments and log fields, so they stay plain.
AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class CardIntake:
    """Fetches, validates and verifies cards; one short-lived HTTP client per fetch (registrations are rare).

    Only `card_url` is ever requested (and, when asked to, the agent's own A2A endpoint as a health check):
    URLs inside the card (`jku` included) are never followed. Every request goes through `targets`
    (SSRF protection, `registry.targets`), pinned to the address that was checked.
    """

    timeout_s: float
    max_bytes: int
    verifier: CardVerifier
    targets: TargetPolicy = field(default_factory=TargetPolicy)
    resolver: Resolver = field(default_factory=SystemResolver)

    @property
    def fetcher(self) -> PinnedFetcher:
        return PinnedFetcher(self.targets, self.timeout_s, self.max_bytes, self.resolver)

    async def take(
        self, card_url: str, expect_address: IPAddress | None = None, probe: bool = False
    ) -> AgentDraft:
        """The verified card at `card_url`. `expect_address`: the card URL must lead there (self-registration
        from that address). `probe`: the agent's A2A endpoint must answer too (a health check)."""
        check_card_url(card_url)
        fetched = await self.fetcher.get(card_url, expect_first=expect_address)
        if fetched.status != 200:
            raise AccordError("agent_unavailable", f"card URL answered HTTP {fetched.status}")
        card = parse_card(fetched.body, self.max_bytes)
        signer = self.verifier.verify(card)
        check_origin(card, card_url)
        if probe:
            await self.health_check(card)
        return draft_from_card(card, card_url, signer)

    async def health_check(self, card: AgentCard) -> None:
        """The agent's first HTTP interface must answer (any status below 500: a GET on a JSON-RPC or REST
        endpoint is typically 404 or 405, which still proves a live A2A server)."""
        http = [i.url for i in card.supported_interfaces if i.protocol_binding != TransportProtocol.GRPC]
        if not http:
            return
        try:
            answer = await self.fetcher.get(http[0], accept="*/*", read_body=False)
        except AccordError as error:
            if error.reason != "agent_unavailable":
                raise
            raise AccordError("agent_unavailable", "the agent's A2A endpoint does not answer") from error
        if answer.status >= 500:
            raise AccordError("agent_unavailable", f"the agent's A2A endpoint answered HTTP {answer.status}")


def check_card_url(card_url: str) -> None:
    parts = urlsplit(card_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AccordError("invalid_input", "card_url must be an absolute http(s) URL")
    if parts.username is not None or parts.password is not None:
        # Credentials in a stored, audited URL would leak; cards are public documents anyway.
        raise AccordError("invalid_input", "card_url must not carry credentials")


def check_origin(card: AgentCard, card_url: str) -> None:
    """Every interface must live where the card is served: HTTP ones at the card URL's origin, gRPC on its
    host. A genuine signed card replayed from another server therefore does not register there."""
    origin = _origin(card_url)
    for i, interface in enumerate(card.supported_interfaces):
        if interface.protocol_binding == TransportProtocol.GRPC:
            same = _grpc_host(interface.url) == origin[1]
        else:
            same = _origin(interface.url) == origin
        if not same:
            raise AccordError(
                "card_origin_mismatch",
                f"supported_interfaces[{i}] is not at the card URL's origin",
                interface=interface.url,
            )


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = -1  # an unparsable port matches nothing
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _grpc_host(address: str) -> str:
    # gRPC interfaces are `host:port` targets, sometimes written with a scheme.
    return (urlsplit(address if "://" in address else f"//{address}").hostname or "").lower()


def parse_card(body: bytes, max_bytes: int) -> AgentCard:
    if len(body) > max_bytes:
        raise too_large(max_bytes)
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AccordError("card_invalid", "card is not JSON") from exc
    if not isinstance(data, dict):
        raise AccordError("card_invalid", "card is not a JSON object")
    try:
        # The SDK's parser rewrites legacy (A2A 0.3) fields in place; keep the caller's dict intact.
        card = card_from_dict(copy.deepcopy(data))
    except (ParseError, ValueError, TypeError, AttributeError) as exc:
        raise AccordError("card_invalid", "card does not match the A2A AgentCard schema") from exc
    problems = card_problems(card)
    if problems:
        raise AccordError("card_invalid", "card lacks required A2A fields", problems=problems)
    return card


def card_problems(card: AgentCard) -> list[str]:
    """The A2A required fields the registry relies on, in the order a reader fixes them."""
    problems: list[str] = []
    if not AGENT_NAME.match(card.name):
        problems.append("name must be 1-128 letters, digits, '.', '_' or '-'")
    for required in ("description", "version"):
        if not getattr(card, required).strip():
            problems.append(f"{required} is required")
    if not card.supported_interfaces:
        problems.append("supported_interfaces must not be empty")
    for i, interface in enumerate(card.supported_interfaces):
        if not interface.url or not interface.protocol_binding:
            problems.append(f"supported_interfaces[{i}] needs url and protocol_binding")
    if not card.skills:
        problems.append("skills must not be empty")
    seen: set[str] = set()
    for i, skill in enumerate(card.skills):
        if not skill.id or not skill.name:
            problems.append(f"skills[{i}] needs id and name")
        elif skill.id in seen:
            problems.append(f"skills[{i}] repeats id {skill.id!r}")
        seen.add(skill.id)
    return problems


def draft_from_card(card: AgentCard, card_url: str, signer: str | None = None) -> AgentDraft:
    skills = tuple(SkillOffer(skill.id, tuple(dict.fromkeys(skill.tags))) for skill in card.skills)
    return AgentDraft(
        name=card.name, card_url=card_url, card=card_to_dict(card), skills=skills, signer=signer
    )
