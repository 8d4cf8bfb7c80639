"""Registered OAuth clients: agents, the orchestrator and outside callers.

A client authenticates with a secret (stored only as a salted hash) or with `private_key_jwt` (a registered
public JWK). `scopes` bound what it may get through client credentials; `grant_scopes` bound the task grants
an agent may receive (its tool policy). Clients come from a configuration file and from the admin API, and
are stored in the gateway database.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import yaml
from sqlalchemy import JSON, Column, Float, MetaData, RowMapping, String, Table, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from accord.errors import AccordError
from accord.keys import (
    SIGNING_ALGORITHMS,
    algorithms_for_key,
    jwk_thumbprint,
    public_jwk_of,
    public_key_from_jwk,
)
from gateway.oauth.secret_hashing import check_hash_format, hash_secret

ClientKind = Literal["agent", "orchestrator", "external"]
CLIENT_KINDS: tuple[ClientKind, ...] = ("agent", "orchestrator", "external")
SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post"})
PRIVATE_KEY_JWT = "private_key_jwt"

_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
# RFC 6749 §3.3 scope-token characters.
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,200}$")
_CONFIG_KEYS = frozenset(
    {
        "client_id",
        "kind",
        "scopes",
        "grant_scopes",
        "description",
        "secret",
        "secret_env",
        "secret_hash",
        "jwk",
    }
)

_metadata = MetaData()
clients_table = Table(
    "oauth_clients",
    _metadata,
    Column("client_id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("grant_scopes", JSON, nullable=False),
    Column("secret_hash", String(256), nullable=True),
    Column("public_jwk", JSON, nullable=True),
    Column("description", String(512), nullable=False),
    Column("created_at", Float, nullable=False),
)


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    kind: ClientKind
    scopes: frozenset[str] = frozenset()
    grant_scopes: frozenset[str] = frozenset()
    secret_hash: str | None = None
    public_jwk: Mapping[str, Any] | None = None
    description: str = ""
    created_at: float = field(default_factory=time.time)

    @property
    def auth_methods(self) -> frozenset[str]:
        return frozenset({PRIVATE_KEY_JWT}) if self.public_jwk is not None else SECRET_METHODS

    def public_view(self) -> dict[str, Any]:
        """What the admin API shows: never the secret hash."""
        return {
            "client_id": self.client_id,
            "kind": self.kind,
            "scopes": sorted(self.scopes),
            "grant_scopes": sorted(self.grant_scopes),
            "token_endpoint_auth_methods": sorted(self.auth_methods),
            "jwk": dict(self.public_jwk) if self.public_jwk is not None else None,
            "description": self.description,
            "created_at": self.created_at,
        }


def _invalid(detail: str) -> AccordError:
    return AccordError("invalid_input", detail)


def _scope_set(values: object, name: str) -> frozenset[str]:
    if values is None:
        return frozenset()
    if not isinstance(values, list | tuple | set | frozenset) or not all(isinstance(v, str) for v in values):
        raise _invalid(f"{name} must be a list of strings")
    bad = [v for v in values if not _SCOPE_TOKEN.match(v)]
    if bad:
        raise _invalid(f"{name} holds invalid scope tokens")
    return frozenset(cast(Iterable[str], values))


def registered_jwk(jwk: object) -> dict[str, Any]:
    """A client's public JWK as we store it: public members only, with `kid` and an allowed `alg`."""
    if not isinstance(jwk, Mapping):
        raise _invalid("jwk must be a JSON object")
    if any(member in jwk for member in ("d", "p", "q", "dp", "dq", "qi", "k")):
        raise _invalid("register the public key only; the JWK holds private material")
    try:
        key = public_key_from_jwk(jwk)
    except (ValueError, TypeError) as exc:
        raise _invalid("jwk is not a supported public key") from exc
    fitting = algorithms_for_key(key)
    alg = jwk.get("alg") or min(fitting)
    if alg not in SIGNING_ALGORITHMS or alg not in fitting:
        raise _invalid(f"jwk algorithm must be one of {sorted(fitting & SIGNING_ALGORITHMS)}")
    bare = public_jwk_of(key)
    return {**bare, "kid": str(jwk.get("kid") or jwk_thumbprint(bare)), "alg": alg, "use": "sig"}


def new_client(
    client_id: str,
    kind: str,
    scopes: object = None,
    grant_scopes: object = None,
    secret: str | None = None,
    secret_hash: str | None = None,
    jwk: object = None,
    description: str = "",
) -> OAuthClient:
    """Validate a registration; exactly one credential (a secret, its hash, or a public JWK) is required."""
    if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
        raise _invalid("client_id must be 1-128 characters of letters, digits and ._:@-")
    if kind not in CLIENT_KINDS:
        raise _invalid(f"kind must be one of {list(CLIENT_KINDS)}")
    if sum(value is not None for value in (secret, secret_hash, jwk)) != 1:
        raise _invalid("give exactly one of secret, secret_hash or jwk")
    if secret is not None:
        if not isinstance(secret, str) or len(secret) < 16:
            raise _invalid("a client secret needs at least 16 characters")
        secret_hash = hash_secret(secret)
    elif secret_hash is not None:
        try:
            check_hash_format(secret_hash)
        except ValueError as exc:
            raise _invalid(str(exc)) from exc
    if not isinstance(description, str) or len(description) > 512:
        raise _invalid("description must be a string of at most 512 characters")
    return OAuthClient(
        client_id=client_id,
        kind=kind,
        scopes=_scope_set(scopes, "scopes"),
        grant_scopes=_scope_set(grant_scopes, "grant_scopes"),
        secret_hash=secret_hash,
        public_jwk=registered_jwk(jwk) if jwk is not None else None,
        description=description,
    )


def client_from_config(entry: object, env: Mapping[str, str]) -> OAuthClient:
    """One entry of the clients file; `secret_env` names an environment variable holding the secret."""
    if not isinstance(entry, Mapping):
        raise _invalid("each client entry must be a mapping")
    unknown = set(entry) - _CONFIG_KEYS
    if unknown:
        raise _invalid(f"unknown client keys: {sorted(unknown)}")
    secret = entry.get("secret")
    if "secret_env" in entry:
        secret = env.get(str(entry["secret_env"]))
        if secret is None:
            raise _invalid(f"environment variable {entry['secret_env']} is not set")
    return new_client(
        client_id=entry.get("client_id", ""),
        kind=entry.get("kind", ""),
        scopes=entry.get("scopes"),
        grant_scopes=entry.get("grant_scopes"),
        secret=secret,
        secret_hash=entry.get("secret_hash"),
        jwk=entry.get("jwk"),
        description=entry.get("description", ""),
    )


def _from_row(row: RowMapping) -> OAuthClient:
    return OAuthClient(
        client_id=row["client_id"],
        kind=row["kind"],
        scopes=frozenset(row["scopes"]),
        grant_scopes=frozenset(row["grant_scopes"]),
        secret_hash=row["secret_hash"],
        public_jwk=row["public_jwk"],
        description=row["description"],
        created_at=row["created_at"],
    )


def _to_row(client: OAuthClient) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "kind": client.kind,
        "scopes": sorted(client.scopes),
        "grant_scopes": sorted(client.grant_scopes),
        "secret_hash": client.secret_hash,
        "public_jwk": dict(client.public_jwk) if client.public_jwk is not None else None,
        "description": client.description,
        "created_at": client.created_at,
    }


class ClientRegistry:
    """Clients in the gateway database (SQLite or PostgreSQL), shared by every gateway replica."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def initialize(self) -> None:
        async with self._engine.begin() as conn:
            await conn.run_sync(_metadata.create_all)

    async def register(self, client: OAuthClient, replace: bool = False) -> OAuthClient:
        """Store a client; an existing id is a `conflict` unless `replace` (configuration reloads)."""
        try:
            async with self._engine.begin() as conn:
                if replace:
                    await conn.execute(
                        delete(clients_table).where(clients_table.c.client_id == client.client_id)
                    )
                await conn.execute(clients_table.insert().values(**_to_row(client)))
        except IntegrityError as exc:
            raise AccordError("conflict", f"client {client.client_id} already exists") from exc
        return client

    async def get(self, client_id: str) -> OAuthClient | None:
        query = select(clients_table).where(clients_table.c.client_id == client_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _from_row(row._mapping) if row is not None else None

    async def list_all(self) -> list[OAuthClient]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(clients_table).order_by(clients_table.c.client_id))
            return [_from_row(row._mapping) for row in rows]

    async def delete(self, client_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(clients_table).where(clients_table.c.client_id == client_id))
        return bool(result.rowcount)

    async def load_config(self, path: Path, env: Mapping[str, str] | None = None) -> list[OAuthClient]:
        """Register every client of a YAML or JSON file `{clients: [...]}`; the file wins over stored ones."""
        document = yaml.safe_load(await asyncio.to_thread(Path(path).read_text))
        entries = document.get("clients") if isinstance(document, Mapping) else None
        if not isinstance(entries, list):
            raise _invalid(f"{path}: expected a mapping with a 'clients' list")
        clients = [client_from_config(entry, os.environ if env is None else env) for entry in entries]
        for client in clients:
            await self.register(client, replace=True)
        return clients
