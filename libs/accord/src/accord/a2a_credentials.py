"""A2A clients that authenticate the standard way: the a2a-sdk's `AuthInterceptor` reads the security
requirements of the card (the orchestrator's names its OAuth scheme) and asks a `CredentialService` for a
credential per scheme; `GatewayCredentials` answers with this client's token from the gateway.
"""

from __future__ import annotations

import httpx
from a2a.client import AuthInterceptor, ClientCallContext, CredentialService

from accord.gateway_client import GatewayBearer


class GatewayCredentials(CredentialService):
    """Every scheme the card requires is answered with `bearer`'s token for its resource."""

    def __init__(self, bearer: GatewayBearer, http: httpx.AsyncClient) -> None:
        self._bearer = bearer
        self._http = http

    async def get_credentials(self, security_scheme_name: str, context: ClientCallContext | None) -> str:
        return await self._bearer.token(self._http)


def gateway_auth(bearer: GatewayBearer, http: httpx.AsyncClient) -> AuthInterceptor:
    """The interceptor to pass to `ClientFactory.create(card, interceptors=[...])`."""
    return AuthInterceptor(GatewayCredentials(bearer, http))
