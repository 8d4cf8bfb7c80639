"""Signing keys, key rings with rotation, and trust stores of public keys.

A `KeyRing` is what an issuer signs with: one active key plus retired keys that stay valid for verification
until their overlap window ends, persisted as private JWKs in a 0600 file. A `TrustStore` is what a verifier
trusts: public keys read from local JWKS documents only. URLs carried inside tokens or cards (`jku`, `x5u`)
are never followed, so a forged token cannot name the key that verifies it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeAlias

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
Clock = Callable[[], float]

# Asymmetric only: a verifier that accepts `none` or HS* can be fooled with an unsigned token or with the
# public key used as an HMAC secret.
SIGNING_ALGORITHMS: frozenset[str] = frozenset({"ES256", "EdDSA", "RS256", "PS256"})
DEFAULT_ALGORITHM = "ES256"
_RSA_MIN_BITS = 2048
_KEY_FILE_VERSION = 1


class KeySource(Protocol):
    """Anything that resolves a key id to a public key it currently trusts."""

    def key_for(self, kid: str) -> PublicKey | None: ...


def check_algorithms(algorithms: Iterable[str]) -> frozenset[str]:
    """The allowlist itself, after refusing anything that is not an asymmetric algorithm we support."""
    allowed = frozenset(algorithms)
    refused = allowed - SIGNING_ALGORITHMS
    if refused:
        raise ValueError(f"algorithms not allowed (asymmetric only): {sorted(refused)}")
    if not allowed:
        raise ValueError("the algorithm allowlist is empty")
    return allowed


def algorithms_for_key(key: PublicKey | PrivateKey) -> frozenset[str]:
    """The algorithms a key may verify, so a token cannot pair a key with an algorithm of another family."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return frozenset({"ES256"}) if isinstance(key.curve, ec.SECP256R1) else frozenset()
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return frozenset({"EdDSA"})
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return frozenset({"RS256", "PS256"}) if key.key_size >= _RSA_MIN_BITS else frozenset()
    return frozenset()


def public_jwk_of(key: PublicKey) -> dict[str, Any]:
    """The bare public JWK (kty and key material only)."""
    return _jwk_of(key)


def _jwk_of(key: PublicKey | PrivateKey) -> dict[str, Any]:
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return dict(ECAlgorithm.to_jwk(key, as_dict=True))
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return dict(OKPAlgorithm.to_jwk(key, as_dict=True))
    return dict(RSAAlgorithm.to_jwk(key, as_dict=True))


_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint: a key id derived from the key itself, stable across restarts."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise ValueError(f"unsupported key type {jwk.get('kty')!r}")
    canonical = json.dumps({m: jwk[m] for m in members}, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def public_key_from_jwk(jwk: Mapping[str, Any]) -> PublicKey:
    """Parse a JWK's public part; private members, if any, are dropped rather than trusted."""
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(str(kty))
    if members is None:
        raise ValueError(f"unsupported key type {kty!r}")
    bare = {m: jwk[m] for m in members if m in jwk}
    if len(bare) != len(members):
        raise ValueError("JWK is missing key material")
    key: Any
    if kty == "EC":
        key = ECAlgorithm.from_jwk(bare)
    elif kty == "OKP":
        key = OKPAlgorithm.from_jwk(bare)
    else:
        key = RSAAlgorithm.from_jwk(bare)
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        raise ValueError("JWK is not a supported public key")
    if not algorithms_for_key(key):
        raise ValueError("key is too weak or of an unsupported curve")
    return key


def _private_key_from_jwk(jwk: Mapping[str, Any]) -> PrivateKey:
    kty = jwk.get("kty")
    key: Any
    if kty == "EC":
        key = ECAlgorithm.from_jwk(dict(jwk))
    elif kty == "OKP":
        key = OKPAlgorithm.from_jwk(dict(jwk))
    elif kty == "RSA":
        key = RSAAlgorithm.from_jwk(dict(jwk))
    else:
        raise ValueError(f"unsupported key type {kty!r}")
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        raise ValueError("JWK is not a private key")
    return key


def generate_private_key(alg: str = DEFAULT_ALGORITHM) -> PrivateKey:
    check_algorithms([alg])
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_MIN_BITS)


@dataclass(frozen=True)
class SigningKey:
    """One private key with its id and algorithm; `not_after` is set once the key is retired."""

    kid: str
    alg: str
    private_key: PrivateKey
    not_after: float | None = None

    def __post_init__(self) -> None:
        check_algorithms([self.alg])
        if self.alg not in algorithms_for_key(self.private_key):
            raise ValueError(f"key does not fit algorithm {self.alg}")

    @classmethod
    def generate(cls, alg: str = DEFAULT_ALGORITHM) -> SigningKey:
        key = generate_private_key(alg)
        return cls(kid=jwk_thumbprint(_jwk_of(key.public_key())), alg=alg, private_key=key)

    @property
    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, Any]:
        return {**public_jwk_of(self.public_key), "kid": self.kid, "alg": self.alg, "use": "sig"}

    def private_jwk(self) -> dict[str, Any]:
        return {**_jwk_of(self.private_key), "kid": self.kid, "alg": self.alg, "use": "sig"}

    @classmethod
    def from_private_jwk(cls, jwk: Mapping[str, Any], not_after: float | None = None) -> SigningKey:
        return cls(
            kid=str(jwk["kid"]),
            alg=str(jwk["alg"]),
            private_key=_private_key_from_jwk(jwk),
            not_after=not_after,
        )

    def usable_at(self, now: float) -> bool:
        return self.not_after is None or now < self.not_after


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes whenever the ring file is replaced (`save` swaps in a new inode), or None if absent."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return (status.st_ino, status.st_mtime_ns, status.st_size)


class KeyRing:
    """The issuer's keys: one active signing key plus retired keys still valid for verification.

    `rotate(overlap_s)` makes a new key active; the old one keeps verifying for `overlap_s` seconds, so
    tokens signed just before the rotation stay valid until they expire. A ring loaded from a file follows
    that file: when another process (`accord keys rotate`) replaces it, the next use reloads it, so a
    running service picks up a rotation without a restart.
    """

    def __init__(
        self,
        active: SigningKey,
        retired: Iterable[SigningKey] = (),
        path: Path | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._active = active
        self._retired = list(retired)
        self._path = path
        self._clock = clock
        self._stamp: tuple[int, int, int] | None = None

    @classmethod
    def generate(cls, alg: str = DEFAULT_ALGORITHM, clock: Clock = time.time) -> KeyRing:
        """An in-memory ring (tests, ephemeral issuers)."""
        return cls(SigningKey.generate(alg), clock=clock)

    @classmethod
    def load_or_create(cls, path: Path, alg: str = DEFAULT_ALGORITHM, clock: Clock = time.time) -> KeyRing:
        """The ring persisted at `path`, created with one fresh key the first time.

        Creation never overwrites: when several processes start on one state dir at once, the first
        file written wins and every process loads it.
        """
        if not path.exists():
            ring = cls(SigningKey.generate(alg), path=path, clock=clock)
            temporary = ring._write_temporary()
            try:
                os.link(temporary, path)
                ring._stamp = _file_stamp(path)
                return ring
            except FileExistsError:
                pass
            finally:
                temporary.unlink()
        return cls._load(path, clock)

    @classmethod
    def _load(cls, path: Path, clock: Clock) -> KeyRing:
        # Stamp before reading: if the file changes in between, the next use sees a new stamp and reloads.
        stamp = _file_stamp(path)
        document = json.loads(path.read_text())
        if document.get("version") != _KEY_FILE_VERSION:
            raise ValueError(f"{path}: unsupported key file version {document.get('version')!r}")
        keys = [SigningKey.from_private_jwk(e["jwk"], e.get("not_after")) for e in document["keys"]]
        active = [k for k in keys if k.kid == document["active"]]
        if len(active) != 1:
            raise ValueError(f"{path}: active key {document['active']!r} not found")
        retired = [k for k in keys if k.kid != document["active"]]
        ring = cls(active[0], retired, path=path, clock=clock)
        ring._stamp = stamp
        return ring

    def _follow_file(self) -> None:
        """Reload the ring when its file was replaced since we last read or wrote it."""
        if self._path is None:
            return
        stamp = _file_stamp(self._path)
        if stamp is None or stamp == self._stamp:
            return
        try:
            fresh = KeyRing._load(self._path, self._clock)
        except (OSError, ValueError, KeyError, TypeError):
            return  # a broken file must not take the keys we hold away; keep serving with them
        self._active, self._retired, self._stamp = fresh._active, fresh._retired, fresh._stamp

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def active(self) -> SigningKey:
        self._follow_file()
        return self._active

    @property
    def retired(self) -> tuple[SigningKey, ...]:
        self._follow_file()
        return tuple(self._retired)

    def rotate(self, overlap_s: float, alg: str | None = None) -> SigningKey:
        """Make a new key active; the previous one verifies for `overlap_s` more seconds."""
        if overlap_s < 0:
            raise ValueError("overlap_s must not be negative")
        self._follow_file()
        now = self._clock()
        successor = SigningKey.generate(alg or self._active.alg)
        self._retired.append(replace(self._active, not_after=now + overlap_s))
        self._active = successor
        self._retired = [k for k in self._retired if k.usable_at(now)]
        self.save()
        return successor

    def verification_keys(self) -> list[SigningKey]:
        self._follow_file()
        now = self._clock()
        return [self._active, *(k for k in self._retired if k.usable_at(now))]

    def public_jwks(self) -> dict[str, Any]:
        """The JWKS to publish: the active key and retired keys still inside their window."""
        return {"keys": [k.public_jwk() for k in self.verification_keys()]}

    def key_for(self, kid: str) -> PublicKey | None:
        for key in self.verification_keys():
            if key.kid == kid:
                return key.public_key
        return None

    def save(self) -> None:
        """Write the ring atomically, readable by the owner only (it holds private keys)."""
        if self._path is not None:
            os.replace(self._write_temporary(), self._path)
            self._stamp = _file_stamp(self._path)

    def _write_temporary(self) -> Path:
        assert self._path is not None
        document = {
            "version": _KEY_FILE_VERSION,
            "active": self._active.kid,
            "keys": [
                {"jwk": k.private_jwk(), "not_after": k.not_after} for k in (self._active, *self._retired)
            ],
        }
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_name(f".{self._path.name}.{uuid.uuid4().hex}.tmp")
        # O_EXCL with mode 0600: the private keys are never readable by others, not even briefly.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(document, handle, indent=2)
        os.chmod(temporary, 0o600)  # the umask may have narrowed the mode further; make it exact
        return temporary


class TrustStore:
    """Public keys a verifier trusts, taken from local JWKS documents only.

    `jku`, `x5u` and embedded `jwk`/`x5c` members are ignored: the configuration decides which keys are
    trusted, never the token or card being verified.
    """

    def __init__(self) -> None:
        self._keys: dict[str, PublicKey] = {}

    @classmethod
    def from_jwks(cls, *documents: Mapping[str, Any]) -> TrustStore:
        store = cls()
        for document in documents:
            store.add_jwks(document)
        return store

    @classmethod
    def from_files(cls, *paths: Path) -> TrustStore:
        store = cls()
        for path in paths:
            store.add_jwks_file(path)
        return store

    def add_jwks(self, document: Mapping[str, Any], strict: bool = True) -> None:
        """Add a JWKS document's signing keys; with `strict=False` unusable keys are skipped, not fatal
        (another issuer's JWKS may hold encryption or unsupported keys next to the ones we need)."""
        keys = document.get("keys")
        if not isinstance(keys, list):
            raise ValueError("a JWKS document needs a 'keys' array")
        for jwk in keys:
            try:
                self._add_jwk(jwk)
            except (ValueError, KeyError, TypeError):
                if strict:
                    raise

    def _add_jwk(self, jwk: object) -> None:
        if not isinstance(jwk, Mapping) or not isinstance(jwk.get("kid"), str) or not jwk["kid"]:
            raise ValueError("every trusted JWK needs a 'kid'")
        if jwk.get("use", "sig") != "sig":
            return
        alg = jwk.get("alg")
        if alg is not None and alg not in SIGNING_ALGORITHMS:
            raise ValueError(f"JWK {jwk['kid']!r} declares algorithm {alg!r}, which is not allowed")
        self.add_key(jwk["kid"], public_key_from_jwk(jwk))

    def add_jwks_file(self, path: Path) -> None:
        self.add_jwks(json.loads(Path(path).read_text()))

    def add_key(self, kid: str, key: PublicKey) -> None:
        if not algorithms_for_key(key):
            raise ValueError("key is too weak or of an unsupported curve")
        self._keys[kid] = key

    def key_for(self, kid: str) -> PublicKey | None:
        return self._keys.get(kid)

    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)
