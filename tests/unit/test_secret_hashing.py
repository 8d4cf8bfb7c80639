"""Client secret checks: a verified secret is remembered for a while (scrypt once), a wrong one always
costs the full scrypt, a rotated secret is checked afresh."""

from __future__ import annotations

import pytest

from gateway.oauth import secret_hashing
from gateway.oauth.secret_hashing import SecretCheck, hash_secret

RIGHT, WRONG = "right-secret-0123456789", "wrong-secret-0123456789"  # test values


async def test_a_verified_secret_is_remembered_and_a_wrong_one_always_pays_the_full_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stored = hash_secret(RIGHT)
    now = [0.0]
    check = SecretCheck(ttl_s=300, clock=lambda: now[0])
    scrypts: list[str] = []
    original = secret_hashing.verify_secret

    def counting(secret: str, stored_hash: str) -> bool:
        scrypts.append(secret)
        return original(secret, stored_hash)

    monkeypatch.setattr(secret_hashing, "verify_secret", counting)
    assert await check.matches(RIGHT, stored)
    assert await check.matches(RIGHT, stored)
    assert not await check.matches(WRONG, stored)
    assert not await check.matches(WRONG, stored)
    assert scrypts == [RIGHT, WRONG, WRONG]
    now[0] += 301  # remembered for the ttl only
    assert await check.matches(RIGHT, stored)
    assert len(scrypts) == 4
    assert not await check.matches(RIGHT, hash_secret("a-rotated-secret-0123456789"))
    assert len(scrypts) == 5
