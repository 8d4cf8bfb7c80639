"""What the authorization server needs to know about itself: its issuer URL, its resources, lifetimes."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

METADATA_PATH = "/.well-known/oauth-authorization-server"
JWKS_PATH = "/.well-known/jwks.json"
TOKEN_PATH = "/oauth/token"  # noqa: S105 (a path, not a secret)
AUTHORIZE_PATH = "/oauth/authorize"
ADMIN_CLIENTS_PATH = "/admin/clients"


def _check_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{name} must be an absolute http(s) URL without query or fragment: {url!r}")


@dataclass(frozen=True)
class OAuthConfig:
    """`issuer` is the gateway's base URL; `mcp_resource` its MCP endpoint URL (the audience of JIT tokens).

    `extra_resources` are other resource indicators clients may ask tokens for (e.g. the orchestrator API).
    """

    issuer: str
    mcp_resource: str
    extra_resources: frozenset[str] = field(default_factory=frozenset)
    admin_secret: str | None = None
    access_token_lifetime_s: int = 300
    client_token_lifetime_s: int = 600
    max_grant_lifetime_s: int = 900
    max_assertion_lifetime_s: int = 300
    leeway_s: int = 30
    # RFC 8414 wants an https issuer; plain http is tolerated outside production (loopback, compose DNS).
    allow_http: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "issuer", self.issuer.rstrip("/"))
        _check_url("issuer", self.issuer)
        if urlsplit(self.issuer).path:
            raise ValueError("the issuer must be the server's base URL (metadata lives at its root)")
        for resource in self.resources:
            _check_url("resource", resource)
        lifetimes = (
            self.access_token_lifetime_s,
            self.client_token_lifetime_s,
            self.max_grant_lifetime_s,
            self.max_assertion_lifetime_s,
        )
        if min(lifetimes) <= 0 or self.leeway_s < 0:
            raise ValueError("lifetimes must be positive and the leeway not negative")
        if self.admin_secret is not None and len(self.admin_secret) < 16:
            raise ValueError("the admin secret needs at least 16 characters")

    @property
    def resources(self) -> frozenset[str]:
        return frozenset({self.mcp_resource}) | self.extra_resources

    @property
    def token_endpoint(self) -> str:
        return self.issuer + TOKEN_PATH

    @property
    def jwks_uri(self) -> str:
        return self.issuer + JWKS_PATH

    @property
    def authorization_endpoint(self) -> str:
        return self.issuer + AUTHORIZE_PATH

    @property
    def metadata_url(self) -> str:
        return self.issuer + METADATA_PATH
