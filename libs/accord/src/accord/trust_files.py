"""Trust kept in local JWKS files that are replaced while services run.

A `TrustDirectory` trusts the keys of every `*.jwks.json` file in one directory and notices when a file is
added, replaced or removed, so a verifier picks up a rotation (`accord keys rotate` rewrites the file)
without a restart. Nothing here ever follows a URL: the directory is the whole configuration.

A JWK may carry `exp` (seconds since the epoch, a private member that other JOSE libraries ignore): a
retired key is published with the end of its overlap window, and stops being trusted then, even if
nobody rewrites the file.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accord.keys import Clock, KeyRing, PublicKey, TrustStore

logger = logging.getLogger(__name__)

TRUST_FILE_SUFFIX = ".jwks.json"
EXPIRY_MEMBER = "exp"

_Stamp = tuple[tuple[str, int, int, int], ...]


def trust_jwks(ring: KeyRing) -> dict[str, Any]:
    """The ring's public JWKS for trust files: retired keys carry the end of their window as `exp`."""
    keys: list[dict[str, Any]] = []
    for key in ring.verification_keys():
        jwk = key.public_jwk()
        if key.not_after is not None:
            jwk[EXPIRY_MEMBER] = int(key.not_after)
        keys.append(jwk)
    return {"keys": keys}


def write_jwks(path: Path, document: Mapping[str, Any]) -> bool:
    """Write a public JWKS atomically (readers never see half a file); False when it was already so."""
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    temporary.write_text(text)
    os.chmod(temporary, 0o644)  # public keys: readable by the verifying services' users
    os.replace(temporary, path)
    return True


@dataclass(frozen=True)
class _Loaded:
    store: TrustStore
    expiry: dict[str, float]


class TrustDirectory:
    """A key source over the JWKS files in `directory`, re-read whenever one of them changes."""

    def __init__(self, directory: Path, clock: Clock = time.time) -> None:
        self.directory = directory
        self._clock = clock
        self._stamp: _Stamp | None = None
        self._loaded = _Loaded(TrustStore(), {})

    def key_for(self, kid: str) -> PublicKey | None:
        loaded = self._current()
        expiry = loaded.expiry.get(kid)
        if expiry is not None and self._clock() >= expiry:
            return None
        return loaded.store.key_for(kid)

    def kids(self) -> frozenset[str]:
        loaded = self._current()
        now = self._clock()
        return frozenset(k for k in loaded.store.kids() if loaded.expiry.get(k, now + 1) > now)

    def _current(self) -> _Loaded:
        stamp = self._scan()
        if stamp != self._stamp:
            self._loaded = self._load([name for name, *_ in stamp])
            self._stamp = stamp
        return self._loaded

    def _scan(self) -> _Stamp:
        try:
            entries = [e for e in os.scandir(self.directory) if e.name.endswith(TRUST_FILE_SUFFIX)]
        except FileNotFoundError:
            return ()
        stamp = []
        for entry in entries:
            try:
                status = entry.stat()
            except FileNotFoundError:
                continue  # removed between the listing and the stat
            if not entry.name.startswith("."):
                stamp.append((entry.name, status.st_ino, status.st_mtime_ns, status.st_size))
        return tuple(sorted(stamp))

    def _load(self, names: list[str]) -> _Loaded:
        store = TrustStore()
        expiry: dict[str, float] = {}
        for name in names:
            try:
                document = json.loads((self.directory / name).read_text())
                store.add_jwks(document, strict=False)
            except (OSError, ValueError, TypeError, AttributeError):
                # One broken file must not take every other publisher's trust away.
                logger.warning("trust file skipped", extra={"file": name})
                continue
            expiry.update(_expiries(document))
        return _Loaded(store, expiry)


def _expiries(document: Any) -> dict[str, float]:
    found: dict[str, float] = {}
    for jwk in document.get("keys", []) if isinstance(document, Mapping) else []:
        if isinstance(jwk, Mapping) and isinstance(jwk.get("kid"), str):
            exp = jwk.get(EXPIRY_MEMBER)
            if isinstance(exp, int | float) and not isinstance(exp, bool):
                found[jwk["kid"]] = float(exp)
    return found
