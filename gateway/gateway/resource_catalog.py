"""Resources and prompts of the upstreams, as the gateway federates them beside their tools.

Resource URIs pass through unchanged (they are the upstream's own identifiers, and clients hold them); a
URI belongs to the upstream that lists it, or whose resource template matches it (RFC 6570 expressions:
`{id}` one path segment, `{+path}` and `{#frag}` any characters, `{?q}` a query). Prompts are named like
tools, `<upstream>.<prompt>` (`gateway.federated_names`). Reading a resource needs the scope
`resources:<upstream>`, getting a prompt `prompts:<upstream>`; listings show each caller only what it
holds the scope for. Nothing here is cached longer than the tool catalog is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import mcp_types as types

from accord.errors import AccordError
from gateway.federated_names import FederatedNames, federated_name
from gateway.listings import UpstreamListings
from gateway.upstreams import Upstream, UpstreamPool

RESOURCES_SCOPE_PREFIX = "resources:"
PROMPTS_SCOPE_PREFIX = "prompts:"


def resources_scope(upstream: str) -> str:
    return f"{RESOURCES_SCOPE_PREFIX}{upstream}"


def prompts_scope(upstream: str) -> str:
    return f"{PROMPTS_SCOPE_PREFIX}{upstream}"


@dataclass(frozen=True)
class UpstreamResources:
    resources: list[types.Resource]
    templates: list[types.ResourceTemplate]


@lru_cache(maxsize=1024)
def _template_pattern(template: str) -> re.Pattern[str]:
    """A regular expression matching the URIs an RFC 6570 template expands to."""
    parts: list[str] = []
    position = 0
    for expression in re.finditer(r"\{([+#./;?&]?)([^}]*)\}", template):
        parts.append(re.escape(template[position : expression.start()]))
        operator = expression.group(1)
        if operator in ("+", "#"):
            parts.append(".+")
        elif operator in ("?", "&"):
            parts.append(r"(?:[?&][^#]*)?")
        else:
            parts.append(r"[^/?#]+")
        position = expression.end()
    parts.append(re.escape(template[position:]))
    return re.compile("".join(parts))


def template_matches(template: str, uri: str) -> bool:
    return _template_pattern(template).fullmatch(uri) is not None


async def _fetch_resources(upstream: Upstream) -> UpstreamResources:
    return UpstreamResources(await upstream.list_resources(), await upstream.list_resource_templates())


async def _fetch_prompts(upstream: Upstream) -> list[types.Prompt]:
    return await upstream.list_prompts()


class ResourceCatalog:
    """The resources and resource templates of every upstream, and which upstream owns a URI."""

    def __init__(self, pool: UpstreamPool, ttl: float) -> None:
        self._pool = pool
        self._listings = UpstreamListings(pool, ttl, _fetch_resources)

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
        self._listings = UpstreamListings(pool, ttl, _fetch_prompts)

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


READ_METHODS = frozenset({"resources/read", "prompts/get", "completion/complete"})
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
        if method == "resources/read":
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
