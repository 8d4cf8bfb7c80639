"""The relay's own bearer towards the agents it calls.

The caller's token never leaves the gateway. Towards an agent the relay presents a short-lived access
token it issues itself: `aud` = `urn:accord:agent:<agent>` (no client can ask the token endpoint for such
an audience), `sub` and `client_id` = the client it relays for, `act` = the relay, scope `a2a:relayed`.
Agents trust the signed envelope of each message; a service that authenticates every call (the
orchestrator, for its A2A surface) accepts this token for reads and cancels of relayed tasks as well.
Tokens are reused per (agent, caller) for half their life, so the hot path signs rarely.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from accord.caller_auth import RELAYED_SCOPE, relay_audience
from accord.keys import Clock, KeyRing
from accord.tokens import issue_access_token

RELAY_ACTOR = "accord-relay"
_MAX_CACHED = 4096


@dataclass(frozen=True)
class _Issued:
    header: str
    renew_at: float


class RelayCredentials:
    def __init__(self, ring: KeyRing, issuer: str, lifetime_s: int = 120, clock: Clock = time.time) -> None:
        self._ring = ring
        self._issuer = issuer
        self._lifetime_s = lifetime_s
        self._clock = clock
        self._issued: dict[tuple[str, str], _Issued] = {}

    def header(self, agent: str, caller: str) -> str:
        """`Bearer <token>` for a call to `agent` on behalf of `caller`."""
        now = self._clock()
        key = (agent, caller)
        issued = self._issued.get(key)
        if issued is None or now >= issued.renew_at:
            if len(self._issued) >= _MAX_CACHED:
                self._issued.clear()
            token = issue_access_token(
                self._ring,
                issuer=self._issuer,
                subject=caller,
                client_id=caller,
                audience=relay_audience(agent),
                scopes=[RELAYED_SCOPE],
                lifetime_s=self._lifetime_s,
                act=[RELAY_ACTOR],
                now=now,
            )
            issued = _Issued(f"Bearer {token}", now + self._lifetime_s / 2)
            self._issued[key] = issued
        return issued.header
