"""Trust and key files followed while services run: trust directories, key rings, `accord keys`."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from typer.testing import CliRunner

from accord.card_signing import CardSigner, publisher_key_file, publisher_trust_file
from accord.cli.main import app
from accord.keys import KeyRing
from accord.trust_files import TrustDirectory, trust_jwks, write_jwks


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_missing_trust_directory_trusts_nothing_until_a_file_appears(tmp_path: Path) -> None:
    trust = TrustDirectory(tmp_path / "trust")
    ring = KeyRing.generate()
    assert trust.key_for(ring.active.kid) is None

    write_jwks(tmp_path / "trust" / "acme.jwks.json", ring.public_jwks())

    assert trust.key_for(ring.active.kid) is not None
    assert trust.kids() == {ring.active.kid}


def test_a_replaced_trust_file_is_re_read_and_a_removed_one_forgotten(tmp_path: Path) -> None:
    trust = TrustDirectory(tmp_path)
    first, second = KeyRing.generate(), KeyRing.generate()
    write_jwks(tmp_path / "acme.jwks.json", first.public_jwks())
    assert trust.key_for(first.active.kid) is not None

    write_jwks(tmp_path / "acme.jwks.json", second.public_jwks())
    assert trust.key_for(first.active.kid) is None
    assert trust.key_for(second.active.kid) is not None

    (tmp_path / "acme.jwks.json").unlink()
    assert trust.kids() == frozenset()


def test_a_retired_key_is_trusted_until_its_exp_and_not_after(tmp_path: Path) -> None:
    clock = FakeClock()
    ring = KeyRing.generate(clock=clock)
    old = ring.active.kid
    new = ring.rotate(overlap_s=30).kid
    write_jwks(tmp_path / "acme.jwks.json", trust_jwks(ring))
    trust = TrustDirectory(tmp_path, clock=clock)

    assert trust.key_for(old) is not None
    assert trust.key_for(new) is not None
    clock.now += 31
    assert trust.key_for(old) is None, "the file still lists it, but its window has ended"
    assert trust.key_for(new) is not None


def test_a_broken_trust_file_is_skipped_and_the_others_still_count(tmp_path: Path) -> None:
    good = KeyRing.generate()
    write_jwks(tmp_path / "good.jwks.json", good.public_jwks())
    (tmp_path / "broken.jwks.json").write_text("{not json")
    (tmp_path / "notes.json").write_text(json.dumps(KeyRing.generate().public_jwks()))

    trust = TrustDirectory(tmp_path)

    assert trust.kids() == {good.active.kid}, "only *.jwks.json files, and only readable ones"


def test_private_key_members_in_a_trust_file_are_never_used_or_published(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    write_jwks(tmp_path / "leaky.jwks.json", {"keys": [ring.active.private_jwk()]})
    assert TrustDirectory(tmp_path).key_for(ring.active.kid) == ring.active.public_key
    assert all("d" not in jwk for jwk in trust_jwks(ring)["keys"])


def test_a_ring_follows_its_file_when_another_process_rotates_it(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    service = KeyRing.load_or_create(path)
    old = service.active.kid

    new = KeyRing.load_or_create(path).rotate(overlap_s=60).kid

    assert service.active.kid == new
    assert {k["kid"] for k in service.public_jwks()["keys"]} == {old, new}


def test_a_ring_keeps_its_keys_when_its_file_is_replaced_by_garbage(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    service = KeyRing.load_or_create(path)
    kid = service.active.kid
    path.write_text("garbage")
    assert service.active.kid == kid


def test_rotate_publishes_old_and_new_keys_then_switches_the_signers(tmp_path: Path) -> None:
    signer = CardSigner.local(tmp_path)
    old = signer.ring.active.kid
    gateway = KeyRing.load_or_create(tmp_path / "gateway-keys.json")
    gateway_old = gateway.active.kid

    result = CliRunner().invoke(app, ["keys", "rotate", "--overlap", "120", "--state-dir", str(tmp_path)])

    assert result.exit_code == 0, result.output
    new = signer.ring.active.kid
    assert new != old
    published = {jwk["kid"]: jwk for jwk in json.loads(publisher_trust_file(tmp_path).read_text())["keys"]}
    assert set(published) == {old, new}
    assert "exp" in published[old]
    assert "exp" not in published[new]
    assert gateway.active.kid != gateway_old, "the gateway's ring was rotated too and is followed"
    assert stat.S_IMODE(publisher_key_file(tmp_path).stat().st_mode) == 0o600
    assert f"publisher: active key {new}; {old} verifies until" in result.output


def test_rotate_can_target_one_ring(tmp_path: Path) -> None:
    publisher = CardSigner.local(tmp_path).ring
    before = publisher.active.kid

    result = CliRunner().invoke(app, ["keys", "rotate", "--gateway", "--state-dir", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert publisher.active.kid == before
    assert (tmp_path / "gateway-keys.json").exists()


def test_show_prints_the_public_jwks_and_fails_for_a_missing_ring(tmp_path: Path) -> None:
    ring = CardSigner.local(tmp_path).ring
    runner = CliRunner()

    shown = runner.invoke(app, ["keys", "show", "--publisher", "--state-dir", str(tmp_path)])
    missing = runner.invoke(app, ["keys", "show", "--gateway", "--state-dir", str(tmp_path)])

    assert shown.exit_code == 0
    assert json.loads(shown.stdout) == trust_jwks(ring)
    assert missing.exit_code == 1
    assert not (tmp_path / "gateway-keys.json").exists(), "show never creates keys"
