"""Who may call the orchestrator, and how its card tells them (`accord.caller_auth` does the checking).

Tokens come from the gateway's authorization server, verified with the gateway's JWKS (`GatewayKeys`, the
URL from configuration), or from another OIDC issuer trusted by its JWKS URL. Their audience is this API's
resource URL, or, for the gateway's relay delegating a workflow step here, `urn:accord:agent:<card name>`.
The card advertises the OAuth 2.0 client-credentials flow at the gateway (`security_schemes`) and requires
`runs:start` (`security_requirements`), so an A2A client with an auth interceptor knows what to send.
"""

from __future__ import annotations

from a2a.types import (
    AgentCard,
    ClientCredentialsOAuthFlow,
    OAuth2SecurityScheme,
    OAuthFlows,
    OpenIdConnectSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)

from accord.audit import AuditLog
from accord.bearer import CachedTokenVerifier, keys_still_trusted
from accord.caller_auth import RUNS_START, CallerAuthenticator, RelayTrust, relay_audience
from accord.gateway_keys import GatewayKeys
from accord.keys import KeySource
from accord.tokens import RemoteJwksTrust, TokenVerifier
from orchestrator.settings import OrchestratorSettings

SCHEME = "accord-oauth"
_SCOPE_DESCRIPTIONS = {
    "runs:start": "start workflow runs (REST) and call the orchestrator as an A2A agent",
    "runs:read": "read runs, their steps and workflows",
    "runs:review": "decide runs waiting for human review",
}
TOKEN_PATH = "/oauth/token"  # noqa: S105 (a path, not a secret)
AS_METADATA_PATH = "/.well-known/oauth-authorization-server"
OIDC_METADATA_PATH = "/.well-known/openid-configuration"


class CallerTrust:
    """The key sources of every trusted issuer; `aclose` releases the remote ones."""

    def __init__(self, settings: OrchestratorSettings, gateway_keys: GatewayKeys | None) -> None:
        self.remote = {
            issuer: RemoteJwksTrust(url)
            for issuer, url in settings.token_issuers().items()
            if url is not None
        }
        self.sources: dict[str, KeySource] = dict(self.remote)
        if settings.gateway_url is not None and gateway_keys is not None:
            self.sources[settings.gateway_url.rstrip("/")] = gateway_keys
        if not self.sources:
            raise ValueError(
                "the orchestrator authenticates every caller: set ACCORD_GATEWAY_URL (its authorization "
                "server) or ACCORD_TRUSTED_ISSUERS"
            )

    def authenticator(
        self, settings: OrchestratorSettings, audit: AuditLog, name: str
    ) -> CallerAuthenticator:
        """Tokens for this API's resource, and the gateway relay's tokens for this agent by card name."""
        gateway = settings.gateway_url.rstrip("/") if settings.gateway_url else None
        relay = RelayTrust(gateway, relay_audience(name)) if gateway else None
        audiences = (settings.resource, *([relay.audience] if relay else []))
        verifier = TokenVerifier(
            dict(self.sources), issuers=self.sources, audience=audiences, leeway_s=settings.token_leeway_s
        )
        cached = CachedTokenVerifier(
            verifier,
            own_issuer=gateway or "",
            leeway_s=settings.token_leeway_s,
            key_trusted=keys_still_trusted(self.sources),
        )
        return CallerAuthenticator(cached, settings.resource, relay, audit, "orchestrator")

    async def aclose(self) -> None:
        for trust in self.remote.values():
            await trust.aclose()


def advertise_security(card: AgentCard, settings: OrchestratorSettings) -> None:
    """Say on the card how to get a token and which scope an A2A call needs."""
    if settings.gateway_url is not None:
        gateway = settings.gateway_url.rstrip("/")
        flow = ClientCredentialsOAuthFlow(token_url=gateway + TOKEN_PATH, scopes=_SCOPE_DESCRIPTIONS)
        scheme = SecurityScheme(
            oauth2_security_scheme=OAuth2SecurityScheme(
                description=f"OAuth 2.0 client credentials at the gateway, resource={settings.resource}",
                flows=OAuthFlows(client_credentials=flow),
                oauth2_metadata_url=gateway + AS_METADATA_PATH,
            )
        )
    else:
        issuer = next(iter(settings.trusted_issuers))
        scheme = SecurityScheme(
            open_id_connect_security_scheme=OpenIdConnectSecurityScheme(
                open_id_connect_url=issuer.rstrip("/") + OIDC_METADATA_PATH
            )
        )
    card.security_schemes[SCHEME].CopyFrom(scheme)
    del card.security_requirements[:]
    card.security_requirements.append(SecurityRequirement(schemes={SCHEME: StringList(list=[RUNS_START])}))


__all__ = ["CallerTrust", "advertise_security"]
