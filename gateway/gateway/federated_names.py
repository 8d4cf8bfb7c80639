"""How the gateway names what it federates.

Tools and prompts are offered as `<upstream>.<name>`: one namespace per upstream, so names of different
upstreams never collide, and every scope, policy rule and audit record names the upstream. One upstream may
also be offered under its own names (`ACCORD_GATEWAY_UNPREFIXED_UPSTREAM`), as a client talking to that
server directly would see them, for clients built against that server. Its names are only a way of
addressing: authorization, policy, audit and routing always work on the full name.
"""

from __future__ import annotations

from collections.abc import Iterable

SEPARATOR = "."


def federated_name(upstream: str, name: str) -> str:
    return f"{upstream}{SEPARATOR}{name}"


class FederatedNames:
    """Full names from what callers send, and what callers are shown for full names."""

    def __init__(self, upstreams: Iterable[str], unprefixed: str | None = None) -> None:
        self._upstreams = frozenset(upstreams)
        if unprefixed is not None and unprefixed not in self._upstreams:
            raise ValueError(f"the unprefixed upstream {unprefixed!r} is not a configured upstream")
        self.unprefixed = unprefixed

    def qualified(self, name: str) -> str:
        """The full name a caller's name stands for: itself when it names a configured upstream, else
        the unprefixed upstream's name, if there is one (else itself, which then resolves to nothing)."""
        upstream, separator, rest = name.partition(SEPARATOR)
        if separator and rest and upstream in self._upstreams:
            return name
        return federated_name(self.unprefixed, name) if self.unprefixed is not None else name

    def shown(self, qualified: str) -> str:
        """The name a listing shows for a full name (the full name when the short one would address
        something else: a name of the unprefixed upstream that starts like another upstream's)."""
        upstream, separator, rest = qualified.partition(SEPARATOR)
        if separator and upstream == self.unprefixed and self.qualified(rest) == qualified:
            return rest
        return qualified

    @staticmethod
    def upstream_of(qualified: str) -> str:
        return qualified.partition(SEPARATOR)[0]
