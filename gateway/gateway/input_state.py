"""The state of an `input_required` round, sealed to the call it belongs to.

An upstream that needs input returns its own `request_state`, which the caller echoes on its retry. The
upstream can bind that state only to its caller, which is always the gateway; so before the state leaves
the gateway it is wrapped in an envelope the gateway signs (HMAC-SHA256), bound to the caller's identity
and task grant, the federated tool, the digest of the arguments, the keys the upstream asked, and an
expiry. A retry is forwarded only if its envelope verifies for that same call; its answers may only be to
keys that were asked. So no caller can replay another's state, move it to another tool or other
arguments, or hand an upstream answers it never asked for.

Replicas share the key through `ACCORD_GATEWAY_INPUT_STATE_SECRET`; without it each process draws its own,
and a retry must reach the replica that asked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from accord.errors import AccordError

PREFIX = "accord-input-1"
LIFETIME_S = 600
_MAX_ENVELOPE = 65_536


@dataclass(frozen=True)
class CallBinding:
    """What a round's state is bound to: who asked, under which grant, for which exact call."""

    principal: str
    subject: str | None
    grant_id: str | None
    tool: str
    arguments_sha256: str

    def digest(self) -> str:
        parts = [self.principal, self.subject or "", self.grant_id or "", self.tool, self.arguments_sha256]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class OpenedState:
    """A verified retry: the upstream's own state to forward, and the answers it may carry."""

    upstream_state: str | None
    responses: Mapping[str, Any] | None


class InputStateSeal:
    def __init__(self, secret: bytes | None = None, lifetime_s: int = LIFETIME_S) -> None:
        self._key = secret or secrets.token_bytes(32)
        self._lifetime_s = lifetime_s

    def seal(self, upstream_state: str | None, binding: CallBinding, asked: Iterable[str]) -> str:
        payload = {
            "s": upstream_state,
            "b": binding.digest(),
            "k": sorted(asked),
            "e": int(time.time()) + self._lifetime_s,
        }
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        return f"{PREFIX}.{body}.{self._mac(body)}"

    def open(
        self, envelope: str | None, responses: Mapping[str, Any] | None, binding: CallBinding
    ) -> OpenedState:
        """The retry's state and answers, if its envelope is this gateway's, for this call, unexpired, and
        its answers are to what was asked; `invalid_input` otherwise (and nothing goes upstream)."""
        if envelope is None:
            if responses is not None:
                raise AccordError("invalid_input", "input responses need the request state they answer")
            return OpenedState(None, None)
        payload = self._verified(envelope)
        if not hmac.compare_digest(str(payload.get("b")).encode(), binding.digest().encode()):
            raise AccordError("invalid_input", "the request state belongs to another call")
        expires = payload.get("e")
        if not isinstance(expires, int) or expires < time.time():
            raise AccordError("invalid_input", "the request state has expired")
        asked = payload.get("k")
        if responses is not None and not set(responses) <= set(asked if isinstance(asked, list) else []):
            raise AccordError("invalid_input", "input responses answer something that was not asked")
        state = payload.get("s")
        return OpenedState(state if isinstance(state, str) else None, responses)

    def _verified(self, envelope: str) -> dict[str, Any]:
        prefix, _, rest = envelope.partition(".")
        body, _, mac = rest.partition(".")
        genuine = hmac.compare_digest(mac.encode(), self._mac(body).encode())
        if len(envelope) > _MAX_ENVELOPE or prefix != PREFIX or not genuine:
            raise AccordError("invalid_input", "the request state is not one this gateway issued")
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError:
            raise AccordError("invalid_input", "the request state is malformed") from None
        if not isinstance(payload, dict):
            raise AccordError("invalid_input", "the request state is malformed")
        return payload

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode("utf-8", "replace"), hashlib.sha256).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
