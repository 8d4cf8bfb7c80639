"""Who is calling a write endpoint: an operator with the admin bearer credential, or anyone else.

The credential is `Authorization: Bearer <ACCORD_REGISTRY_ADMIN_SECRET>` (gRPC: the `authorization`
metadata key), compared in constant time. A request that presents a wrong credential is refused outright
(`unauthenticated`) rather than treated as anonymous, so a misconfigured operator tool fails loudly.
What an anonymous caller may still do (an agent registering itself in local mode) is the catalog's rule.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from pydantic import SecretStr

from accord.errors import AccordError
from registry.catalog import Caller


@dataclass(frozen=True)
class AdminCredential:
    secret: bytes | None = None

    @classmethod
    def of(cls, secret: SecretStr | None) -> AdminCredential:
        return cls(secret.get_secret_value().encode() if secret is not None else None)

    def caller(self, authorization: str | None, peer: str | None, transport: str) -> Caller:
        """The caller of one request; raises `unauthenticated` for a credential that does not match."""
        actor = f"{transport}:{peer or 'unknown'}"
        if not authorization:
            return Caller(actor, admin=False, peer=peer)
        scheme, _, presented = authorization.partition(" ")
        valid = (
            self.secret is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(presented.strip().encode(), self.secret)
        )
        if not valid:
            raise AccordError("unauthenticated", "the admin credential is not valid")
        return Caller(f"admin@{actor}", admin=True, peer=peer)


def grpc_peer_host(peer: str) -> str | None:
    """The address in a grpc peer string (`ipv4:127.0.0.1:5000`, `ipv6:[::1]:5000`), else None."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or None
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]") or None
    return None
