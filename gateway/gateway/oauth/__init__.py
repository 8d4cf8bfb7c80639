"""The gateway's OAuth 2.1 authorization server: client credentials, RFC 8693 token exchange of task grants,
RFC 8414 metadata, JWKS, and the client admin API."""

from gateway.oauth.clients import ClientRegistry, OAuthClient, new_client
from gateway.oauth.config import OAuthConfig
from gateway.oauth.deps import OAuthDeps, build_oauth
from gateway.oauth.grants import (
    GRANT_TOKEN_TYPE,
    GrantAuthority,
    IssuedGrant,
    MemoryRevocationList,
    RedisRevocationList,
    RegisteredGrantScopes,
    RevocationList,
    ScopeBound,
    TaskGrant,
)
from gateway.oauth.server import create_oauth_router

__all__ = [
    "GRANT_TOKEN_TYPE",
    "ClientRegistry",
    "GrantAuthority",
    "IssuedGrant",
    "MemoryRevocationList",
    "OAuthClient",
    "OAuthConfig",
    "OAuthDeps",
    "RedisRevocationList",
    "RegisteredGrantScopes",
    "RevocationList",
    "ScopeBound",
    "TaskGrant",
    "build_oauth",
    "create_oauth_router",
    "new_client",
]
