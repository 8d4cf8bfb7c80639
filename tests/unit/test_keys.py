"""Signing keys, key rings with rotation windows, and trust stores fed only by local JWKS documents."""

from __future__ import annotations

import json
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from accord.keys import (
    SIGNING_ALGORITHMS,
    KeyRing,
    SigningKey,
    TrustStore,
    check_algorithms,
    jwk_thumbprint,
    public_jwk_of,
)

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}


class FakeClock:
    """A settable clock so rotation windows can be crossed without sleeping."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("alg", sorted(SIGNING_ALGORITHMS))
def test_a_generated_key_publishes_only_public_members_with_kid_alg_and_use(alg: str) -> None:
    key = SigningKey.generate(alg)
    jwk = key.public_jwk()
    assert jwk["kid"] == key.kid
    assert jwk["alg"] == alg
    assert jwk["use"] == "sig"
    assert not PRIVATE_MEMBERS & set(jwk)
    assert key.kid == jwk_thumbprint(jwk)


def test_the_default_algorithm_is_es256() -> None:
    assert KeyRing.generate().active.alg == "ES256"


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512", "ES384"])
def test_symmetric_none_and_unsupported_algorithms_are_refused(alg: str) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        check_algorithms([alg])
    with pytest.raises(ValueError, match="not allowed"):
        SigningKey.generate(alg)


def test_a_key_must_fit_its_algorithm() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        SigningKey(kid="k", alg="RS256", private_key=ec.generate_private_key(ec.SECP256R1()))


def test_a_key_ring_is_persisted_owner_only_and_reloads_the_same_keys(tmp_path: Path) -> None:
    path = tmp_path / "state" / "gateway-keys.json"
    ring = KeyRing.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["active"] == ring.active.kid
    assert "d" in document["keys"][0]["jwk"]

    reloaded = KeyRing.load_or_create(path)
    assert reloaded.active.kid == ring.active.kid
    assert reloaded.public_jwks() == ring.public_jwks()


def test_processes_starting_together_on_one_state_dir_share_one_ring(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    with ThreadPoolExecutor(max_workers=8) as pool:
        rings = list(pool.map(lambda _: KeyRing.load_or_create(path), range(8)))
    assert len({ring.active.kid for ring in rings}) == 1
    assert KeyRing.load_or_create(path).active.kid == rings[0].active.kid
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]


def test_rotation_keeps_the_old_key_verifying_only_inside_its_overlap_window(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "keys.json"
    ring = KeyRing.load_or_create(path, clock=clock)
    old = ring.active

    new = ring.rotate(overlap_s=60)

    assert ring.active.kid == new.kid != old.kid
    assert {k["kid"] for k in ring.public_jwks()["keys"]} == {old.kid, new.kid}
    assert ring.key_for(old.kid) is not None
    reloaded = KeyRing.load_or_create(path, clock=clock)
    assert reloaded.key_for(old.kid) is not None

    clock.now += 61
    assert ring.key_for(old.kid) is None
    assert ring.key_for(new.kid) is not None
    assert [k["kid"] for k in ring.public_jwks()["keys"]] == [new.kid]
    assert reloaded.key_for(old.kid) is None


def test_a_second_rotation_drops_retired_keys_whose_window_has_ended(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "keys.json"
    ring = KeyRing.load_or_create(path, clock=clock)
    first = ring.active.kid
    ring.rotate(overlap_s=10)
    clock.now += 11
    ring.rotate(overlap_s=10)

    kids_on_disk = {entry["jwk"]["kid"] for entry in json.loads(path.read_text())["keys"]}
    assert first not in kids_on_disk
    assert len(kids_on_disk) == 2


def test_negative_overlap_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        KeyRing.generate().rotate(overlap_s=-1)


def test_a_trust_store_keeps_only_the_public_part_of_a_jwk() -> None:
    key = SigningKey.generate("ES256")
    store = TrustStore.from_jwks({"keys": [key.private_jwk()]})
    trusted = store.key_for(key.kid)
    assert isinstance(trusted, ec.EllipticCurvePublicKey)
    assert public_jwk_of(trusted) == public_jwk_of(key.public_key)


def test_a_trust_store_reads_jwks_files_and_ignores_url_members(tmp_path: Path) -> None:
    key = SigningKey.generate("EdDSA")
    document = {
        "keys": [{**key.public_jwk(), "x5u": "http://127.0.0.1:9/evil"}],
        "jku": "http://127.0.0.1:9/jwks",
    }
    path = tmp_path / "trusted.json"
    path.write_text(json.dumps(document))
    store = TrustStore.from_files(path)
    assert store.kids() == {key.kid}


def test_a_trust_store_refuses_symmetric_weak_and_kidless_keys_in_strict_mode() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()  # noqa: S505 (the point)
    weak_jwk = {**public_jwk_of(weak), "kid": "weak"}
    symmetric = {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}
    kidless = {k: v for k, v in SigningKey.generate().public_jwk().items() if k != "kid"}
    hs_alg = {**SigningKey.generate().public_jwk(), "alg": "HS256"}
    for bad in (weak_jwk, symmetric, kidless, hs_alg):
        with pytest.raises(ValueError, match=r"kid|weak|unsupported|not allowed"):
            TrustStore.from_jwks({"keys": [bad]})


def test_a_lenient_trust_store_skips_unusable_keys_and_keeps_the_good_ones() -> None:
    good = SigningKey.generate("RS256")
    store = TrustStore()
    store.add_jwks(
        {
            "keys": [
                {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
                good.public_jwk(),
                {"kid": "enc", "use": "enc"},
            ]
        },
        strict=False,
    )
    assert store.kids() == {good.kid}
