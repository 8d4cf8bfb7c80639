"""How deep a request is in a chain of delegations, carried with the request like trace context.

An orchestrator can be a step of another orchestrator's workflow, and a workflow's step can name a skill
that, somewhere, delegates back. To stop such a loop, every A2A request an orchestrator sends on behalf of
a run carries that run's depth + 1 in message metadata (`accord.delegation`); an orchestrator refuses a
request deeper than its limit. Like a trace context, the depth lives in a context variable: the run sets
it once (`delegating`), and every message built in that context (`accord.payloads.skill_request`) carries
it, whichever transport or relay sends it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, MutableMapping
from typing import Any

from a2a.types import Message

DELEGATION_METADATA_KEY = "accord.delegation"
# A top-level request is depth 0; each delegating hop adds one.
DEFAULT_MAX_DEPTH = 3

_outgoing: contextvars.ContextVar[int] = contextvars.ContextVar("accord_delegation_depth", default=0)


@contextlib.contextmanager
def delegating(depth: int) -> Iterator[None]:
    """Requests sent within the block carry `depth` (the depth of the run sending them, plus one)."""
    token = _outgoing.set(depth)
    try:
        yield
    finally:
        _outgoing.reset(token)


def inject(metadata: MutableMapping[str, Any]) -> None:
    """Add the current depth to an outgoing message's metadata (nothing outside a delegating run)."""
    depth = _outgoing.get()
    if depth > 0:
        metadata[DELEGATION_METADATA_KEY] = {"depth": depth}


def depth_of(message: Message | None) -> int:
    """The depth a received message declares (0 when it declares none)."""
    from accord.payloads import from_struct

    if message is None or not message.HasField("metadata"):
        return 0
    entry = from_struct(message.metadata).get(DELEGATION_METADATA_KEY)
    depth = entry.get("depth") if isinstance(entry, dict) else None
    if isinstance(depth, int) and not isinstance(depth, bool) and depth >= 0:
        return depth
    # Anything else is treated as the deepest request there can be, so a forged value cannot reset it.
    return DEFAULT_MAX_DEPTH + 1 if entry is not None else 0
