"""Client secrets at rest: salted scrypt hashes (memory-hard; argon2 is not a dependency here)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

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
