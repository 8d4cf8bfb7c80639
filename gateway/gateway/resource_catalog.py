"""Resources and prompts of the upstreams, as the gateway federates them beside their tools.

Resource URIs pass through unchanged (they are the upstream's own identifiers, and clients hold them); a
URI belongs to the first upstream, in configuration order, that lists it, else to the first whose resource
template matches it (RFC 6570 expressions: `{id}` one path segment, `{+path}` and `{#frag}` any characters,
`{?q}` an optional query), matched in one left-to-right pass, so no URI costs more than its length. Prompts
are named like tools, `<upstream>.<prompt>` (`gateway.federated_names`). Reading a resource needs the scope
`resources:<upstream>` and the policy naming the upstream among the client's `resources`; getting a prompt,
`prompts:<upstream>` and the client's `prompts`; listings show each caller only what both allow. An upstream
that does not answer a listing (it offers no resources or prompts, or is down) is not asked again for as
long as a listing is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import mcp_types as types

from accord.errors import AccordError
from gateway.federated_names import FederatedNames, federated_name
from gateway.listings import UpstreamListings
from gateway.policy import prompts_scope, resources_scope
from gateway.upstreams import Upstream, UpstreamPool


@dataclass(frozen=True)
class UpstreamResources:
    resources: list[types.Resource]
    templates: list[types.ResourceTemplate]


_EXPRESSION = re.compile(r"\{([+#./;?&]?)([^{}]*)\}")
_SEGMENT_STOPS = "/?#"
MAX_EXPRESSIONS = 16


@dataclass(frozen=True)
class _Part:
    literal: str | None = None
    operator: str = ""


@lru_cache(maxsize=1024)
def _template_parts(template: str) -> tuple[_Part, ...] | None:
    """The template as literals and expressions; None for one too complex to be a real template."""
    parts: list[_Part] = []
    position = 0
    for found in _EXPRESSION.finditer(template):
        if found.start() > position:
            parts.append(_Part(literal=template[position : found.start()]))
        parts.append(_Part(operator=found.group(1)))
        position = found.end()
    if position < len(template):
        parts.append(_Part(literal=template[position:]))
    return tuple(parts) if sum(1 for p in parts if p.literal is None) <= MAX_EXPRESSIONS else None


def template_matches(template: str, uri: str) -> bool:
    """Whether `uri` is an expansion of `template`. Each expression takes the text up to the next
    occurrence of the literal after it (the shortest match, no backtracking): linear in the URI."""
    parts = _template_parts(template)
    if parts is None:
        return False
    position = 0
    for index, part in enumerate(parts):
        if part.literal is not None:
            if not uri.startswith(part.literal, position):
                return False
            position += len(part.literal)
            continue
        following = next((p.literal for p in parts[index + 1 :] if p.literal is not None), None)
        if part.operator in ("?", "&"):
            if position < len(uri) and uri[position] in "?&":
                end = uri.find("#", position)
                position = len(uri) if end == -1 else end
            continue
        end = len(uri) if following is None else uri.find(following, position + 1)
        if end == -1 or end == position:
            return False
        value = uri[position:end]
        if part.operator not in ("+", "#") and any(stop in value for stop in _SEGMENT_STOPS):
            return False
        position = end
    return position == len(uri)


async def _fetch_resources(upstream: Upstream) -> UpstreamResources:
    return UpstreamResources(await upstream.list_resources(), await upstream.list_resource_templates())


async def _fetch_prompts(upstream: Upstream) -> list[types.Prompt]:
    return await upstream.list_prompts()


class ResourceCatalog:
    """The resources and resource templates of every upstream, and which upstream owns a URI."""

    def __init__(self, pool: UpstreamPool, ttl: float) -> None:
        self._pool = pool
        self._listings = UpstreamListings(pool, ttl, _fetch_resources, failure_ttl=ttl)

    async def resources(self) -> list[tuple[str, types.Resource]]:
        return [(u.name, r) for u, listing in await self._listings.answering() for r in listing.resources]

    async def templates(self) -> list[tuple[str, types.ResourceTemplate]]:
        return [(u.name, t) for u, listing in await self._listings.answering() for t in listing.templates]

    async def owner(self, uri: str) -> Upstream:
        """The upstream a URI belongs to: the first that lists it, else the first whose template matches it;
        `AccordError('unknown_resource')` when none does."""
        upstreams = list(self._pool)
        listings = [(u, await self._listings.of(u)) for u in upstreams]
        for upstream, listing in listings:
            if listing is not None and any(str(r.uri) == uri for r in listing.resources):
                return upstream
        for upstream, listing in listings:
            if listing is not None and any(template_matches(t.uri_template, uri) for t in listing.templates):
                return upstream
        raise AccordError("unknown_resource", "no upstream offers this resource", uri=uri)


class PromptCatalog:
    """The prompts of every upstream, under their federated names."""

    def __init__(self, pool: UpstreamPool, ttl: float, names: FederatedNames) -> None:
        self._pool = pool
        self._names = names
        self._listings = UpstreamListings(pool, ttl, _fetch_prompts, failure_ttl=ttl)

    async def prompts(self) -> list[tuple[str, types.Prompt]]:
        """(upstream, prompt named as callers see it) for every upstream that answers now."""
        return [
            (u.name, p.model_copy(update={"name": self._names.shown(federated_name(u.name, p.name))}))
            for u, listing in await self._listings.answering()
            for p in listing
        ]

    async def resolve(self, name: str) -> tuple[Upstream, str]:
        """The upstream and its own prompt name behind a caller's name; `AccordError('unknown_prompt')`
        when there is none."""
        qualified = self._names.qualified(name)
        upstream_name, _, prompt = qualified.partition(".")
        upstream = self._pool.get(upstream_name)
        listing = await self._listings.of(upstream) if upstream is not None else None
        if upstream is None or listing is None or not any(p.name == prompt for p in listing):
            raise AccordError("unknown_prompt", f"no prompt is named {name[:128]!r}")
        return upstream, prompt


@dataclass(frozen=True)
class ReadTarget:
    """What a resource read, prompt get or completion reaches: its upstream, the resource URI, full prompt
    name or completion reference there, and the scope it needs."""

    upstream: str
    target: str
    scope: str


READ_METHODS = frozenset({"resources/read", "resources/subscribe", "prompts/get", "completion/complete"})
_MAX_TARGET = 2048


class ServerFeatures:
    """The resources and prompts of every upstream, and where each read goes."""

    def __init__(self, pool: UpstreamPool, ttl: float, names: FederatedNames) -> None:
        self.resources = ResourceCatalog(pool, ttl)
        self.prompts = PromptCatalog(pool, ttl, names)

    async def target(self, method: str, params: object) -> ReadTarget:
        """Where a read goes; `AccordError` (`unknown_resource`, `unknown_prompt`, `invalid_input`) when
        it names nothing the gateway federates."""
        if not isinstance(params, dict):
            raise AccordError("invalid_input", f"{method} needs params")
        if method in ("resources/read", "resources/subscribe"):
            return await self._resource(_text(params.get("uri"), "uri"))
        if method == "prompts/get":
            return await self._prompt(_text(params.get("name"), "name"))
        if method == "completion/complete":
            ref = params.get("ref")
            ref = ref if isinstance(ref, dict) else {}
            if ref.get("type") == "ref/prompt":
                return await self._prompt(_text(ref.get("name"), "ref.name"))
            if ref.get("type") == "ref/resource":
                return await self._template(_text(ref.get("uri"), "ref.uri"))
            raise AccordError("invalid_input", "a completion's ref is ref/prompt or ref/resource")
        raise AccordError("invalid_input", f"{method[:64]} reads nothing")

    async def _resource(self, uri: str) -> ReadTarget:
        upstream = await self.resources.owner(uri)
        return ReadTarget(upstream.name, uri, resources_scope(upstream.name))

    async def _prompt(self, name: str) -> ReadTarget:
        upstream, prompt = await self.prompts.resolve(name)
        return ReadTarget(upstream.name, federated_name(upstream.name, prompt), prompts_scope(upstream.name))

    async def _template(self, template: str) -> ReadTarget:
        for upstream, listed in await self.resources.templates():
            if listed.uri_template == template:
                return ReadTarget(upstream, template, resources_scope(upstream))
        raise AccordError("unknown_resource", "no upstream offers this resource template", uri=template)


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_TARGET:
        raise AccordError("invalid_input", f"{name} must be a string of 1 to {_MAX_TARGET} characters")
    return value
