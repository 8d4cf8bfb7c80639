"""Client secrets at rest: salted scrypt hashes (memory-hard; argon2 is not a dependency here).

scrypt costs tens of milliseconds of CPU by design, and every agent authenticates at the token endpoint for
each step it runs (its grant exchange). `SecretCheck` pays it once per client secret and `ttl_s`: a secret
that verified is remembered as an HMAC under a key that lives only in this process, and compared in
constant time; a wrong secret always costs the full scrypt, so timing tells nothing about it, and a
rotated secret (a new stored hash) is checked afresh.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

_SCHEME = "scrypt"
_N, _R, _P = 2**14, 8, 1
_MAX_N = 2**17  # refuses stored parameters that would make one check cost too much memory
_DKLEN = 32
_SALT_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=_DKLEN, maxmem=256 * 1024 * 1024)


def hash_secret(secret: str) -> str:
    """`scrypt$n$r$p$salt$hash`, safe to store and to put in configuration files."""
    salt = secrets.token_bytes(_SALT_BYTES)
    return f"{_SCHEME}${_N}${_R}${_P}${_b64(salt)}${_b64(_derive(secret, salt, _N, _R, _P))}"


def check_hash_format(stored: str) -> None:
    """Raise ValueError unless `stored` is a hash this module can verify."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _SCHEME:
        raise ValueError("secret hash must look like scrypt$n$r$p$salt$hash")
    n, r, p = (int(value) for value in parts[1:4])
    if not (2 <= n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= 16 and 1 <= p <= 4):
        raise ValueError("secret hash parameters are out of range")
    if len(_unb64(parts[5])) != _DKLEN:
        raise ValueError("secret hash has the wrong length")


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time check of `secret` against a stored hash; malformed hashes never match."""
    try:
        check_hash_format(stored)
    except ValueError:
        return False
    _, n, r, p, salt, expected = stored.split("$")
    derived = _derive(secret, _unb64(salt), int(n), int(r), int(p))
    return hmac.compare_digest(derived, _unb64(expected))


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


@functools.cache
def decoy_hash() -> str:
    """Checked against when the client is unknown, so unknown and known ids take about the same time."""
    return hash_secret(secrets.token_urlsafe(16))


class SecretCheck:
    """`verify_secret` off the event loop, with a memory of recent successes (see the module doc)."""

    def __init__(
        self, ttl_s: float = 300.0, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._key = secrets.token_bytes(32)
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._verified: dict[str, tuple[bytes, float]] = {}  # stored hash -> (tag of the secret, when)

    async def matches(self, secret: str, stored: str) -> bool:
        tag = hmac.new(self._key, secret.encode(), hashlib.sha256).digest()
        known = self._verified.get(stored)
        if (
            known is not None
            and self._clock() - known[1] < self._ttl_s
            and hmac.compare_digest(known[0], tag)
        ):
            return True
        if not await asyncio.to_thread(verify_secret, secret, stored):
            return False
        if len(self._verified) >= self._max_entries:
            self._verified.clear()
        self._verified[stored] = (tag, self._clock())
        return True
