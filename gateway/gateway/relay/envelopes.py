"""Signing what the relay forwards: the message to the agent, and every reply object back to the caller.

Outbound, the message's grant entry is what the relay issued (or none): a caller can never smuggle a grant
or a reply's grant record through. The signature then binds the whole message, grant included, to
iss = this gateway, sub = the caller, aud = the agent, the run, the step and the trace. Inbound, each reply
object (a Task, a Message or a streaming event) is signed for the caller (sub = the agent, aud = the
caller), after the relay wrote the step's grant record into it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from a2a.types import Message

from accord.keys import KeyRing
from accord.message_signing import SIGNED_MESSAGE_EXTENSION, Signable, sign
from accord.payloads import GRANT_METADATA_KEY, GRANT_RECORD_METADATA_KEY, metadata_of, to_struct

# Metadata only the relay may write.
_RELAY_KEYS = (GRANT_METADATA_KEY, GRANT_RECORD_METADATA_KEY, SIGNED_MESSAGE_EXTENSION)


def _with_metadata(obj: Signable, entries: Mapping[str, Any]) -> Signable:
    """A copy whose relay-owned metadata entries are exactly `entries`."""
    duplicate = copy.deepcopy(obj)
    metadata = metadata_of(duplicate)
    for key in _RELAY_KEYS:
        metadata.pop(key, None)
    metadata.update(entries)
    duplicate.ClearField("metadata")
    if metadata:
        duplicate.metadata.CopyFrom(to_struct(metadata))  # type: ignore[attr-defined]
    return duplicate


@dataclass(frozen=True)
class Step:
    """Whose call a relayed object belongs to: the claims its signature carries."""

    caller: str
    agent: str
    wf: str | None = None
    task: str | None = None
    trace_id: str | None = None


class EnvelopeSigner:
    def __init__(self, ring: KeyRing, issuer: str, lifetime_s: int) -> None:
        self._ring = ring
        self._issuer = issuer
        self._lifetime_s = lifetime_s

    def request(self, message: Message, step: Step, grant: str | None) -> Message:
        outbound = _with_metadata(message, {GRANT_METADATA_KEY: grant} if grant else {})
        return self._sign(outbound, step, caller=step.caller, callee=step.agent)

    def reply(self, obj: Signable, step: Step, grant_record: Mapping[str, Any] | None = None) -> Signable:
        record = {GRANT_RECORD_METADATA_KEY: dict(grant_record)} if grant_record else {}
        return self._sign(_with_metadata(obj, record), step, caller=step.agent, callee=step.caller)

    def _sign(self, obj: Signable, step: Step, *, caller: str, callee: str) -> Signable:
        return sign(
            obj,
            self._ring,
            issuer=self._issuer,
            caller=caller,
            callee=callee,
            wf=step.wf,
            task=step.task,
            trace=step.trace_id,
            lifetime_s=self._lifetime_s,
        )
