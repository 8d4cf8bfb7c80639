"""The gateway's signing keys as its JWKS endpoint publishes them: what agents and the orchestrator verify
relayed messages with.

The URL comes from configuration (`<gateway_url>/.well-known/jwks.json`), never from a message. Keys are
cached; a message signed with a key id the cache does not hold makes the cache refetch at once, or as soon
as the minimum interval between fetches allows (waiting for it rather than refusing), so a message signed
with a freshly rotated key verifies on its first delivery. A retired key is published with `exp`, the end
of its overlap window, and stops verifying then even if the cache is not refreshed again. A verifier learns
of a retirement when it next fetches the JWKS: on the first message signed with the new key (the relay
signs with it at once), and in any case once the cached document is older than `max_age_s` (60 s, the
`Cache-Control` the gateway publishes it with).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx

from accord.keys import Clock, PublicKey, TrustStore
from accord.trust_files import EXPIRY_MEMBER

logger = logging.getLogger(__name__)

GATEWAY_JWKS_PATH = "/.well-known/jwks.json"


class GatewayKeys:
    """A refreshing key source (`accord.tokens.RefreshingKeySource`) over one gateway's JWKS.

    `max_age_s` bounds how long a fetched document is used before a known key triggers a refetch;
    `min_refresh_interval_s` is the least time between two fetches, so unknown key ids cannot make the
    verifier hammer the gateway.
    """

    def __init__(
        self,
        gateway_url: str,
        http: httpx.AsyncClient | None = None,
        *,
        max_age_s: float = 60.0,
        min_refresh_interval_s: float = 1.0,
        timeout_s: float = 5.0,
        clock: Clock = time.time,
    ) -> None:
        self.jwks_url = gateway_url.rstrip("/") + GATEWAY_JWKS_PATH
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._max_age_s = max_age_s
        self._min_interval_s = min_refresh_interval_s
        self._clock = clock
        self._store = TrustStore()
        self._expiry: dict[str, float] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    def key_for(self, kid: str) -> PublicKey | None:
        expiry = self._expiry.get(kid)
        if expiry is not None and self._clock() >= expiry:
            return None
        return self._store.key_for(kid)

    async def prepare(self, kid: str) -> None:
        """Make sure the cache can answer for `kid`: refetch when it is unknown or the cache is old."""
        arrived = self._clock()
        if self._usable(kid):
            return
        async with self._lock:
            if self._usable(kid) or (self._attempted_at is not None and self._attempted_at >= arrived):
                return  # someone fetched while we queued: one fetch per waiter at most
            if self._attempted_at is not None:
                wait = self._attempted_at + self._min_interval_s - self._clock()
                if wait > 0:
                    if self.key_for(kid) is not None:
                        return  # known but old: keep serving it rather than wait
                    await asyncio.sleep(wait)
            try:
                await self.refresh()
            except (httpx.HTTPError, ValueError) as exc:
                failure = {"url": self.jwks_url, "error": type(exc).__name__}
                logger.warning("gateway JWKS fetch failed", extra=failure)

    def _usable(self, kid: str) -> bool:
        fresh = self._fetched_at is not None and self._clock() - self._fetched_at < self._max_age_s
        return fresh and self.key_for(kid) is not None

    async def refresh(self) -> None:
        """Fetch the JWKS now; raises on failure (the keys already held stay)."""
        self._attempted_at = self._clock()
        self.fetches += 1
        response = await self._http.get(self.jwks_url, headers={"Accept": "application/json"})
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict):
            raise ValueError("the JWKS is not a JSON object")
        store = TrustStore()
        store.add_jwks(document, strict=False)
        self._store, self._expiry = store, _expiries(document)
        self._fetched_at = self._clock()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()


def _expiries(document: Mapping[str, Any]) -> dict[str, float]:
    found: dict[str, float] = {}
    for jwk in document.get("keys", []):
        if isinstance(jwk, Mapping) and isinstance(jwk.get("kid"), str):
            exp = jwk.get(EXPIRY_MEMBER)
            if isinstance(exp, int | float) and not isinstance(exp, bool):
                found[jwk["kid"]] = float(exp)
    return found
