"""Card drift: a registered agent's card may only change as a new, higher version.

A publisher that changes what its agent offers bumps the card's version and signs it. A card that differs
from the stored one under the same (or a lower) version is drift: a tampered deployment, a replayed old
card, or a release that forgot to say so. Re-signing alone (a key rotation) is not drift: the signatures
are not part of what is compared.
"""

from __future__ import annotations

import re

from accord.card_signing import unsigned_content
from accord.errors import AccordError
from registry.store import AgentDraft, AgentRecord

_RELEASE = re.compile(r"^v?(\d+(?:\.\d+)*)")


def check_drift(stored: AgentRecord, fresh: AgentDraft) -> None:
    """Raise `card_drift` unless `fresh` is the stored card (re-signed or not) or a newer version of it."""
    if fresh.name != stored.name:
        raise AccordError("card_drift", "the card at the registered URL now names another agent")
    if unsigned_content(fresh.card) == unsigned_content(stored.card):
        return
    old, new = str(stored.card.get("version", "")), str(fresh.card.get("version", ""))
    if not is_newer_version(new, old):
        raise AccordError(
            "card_drift", "the card changed but its version did not increase", stored=old, served=new
        )


def is_newer_version(new: str, old: str) -> bool:
    """Numeric release order (`1.10.0` > `1.9.2`, missing parts count as 0); when either version has no
    numeric release, any different version counts as newer (the signature still has to verify)."""
    new_release, old_release = _release(new), _release(old)
    if new_release is None or old_release is None:
        return new != old
    width = max(len(new_release), len(old_release))
    return _padded(new_release, width) > _padded(old_release, width)


def _release(version: str) -> tuple[int, ...] | None:
    match = _RELEASE.match(version.strip())
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def _padded(release: tuple[int, ...], width: int) -> tuple[int, ...]:
    return release + (0,) * (width - len(release))
