"""The grant API: the orchestrator asks for a task grant when it dispatches a step, and revokes it when
the step's task ends.

* `POST /v1/grants` `{"agent", "skill", "wf", "task", "scopes", "deadline", "bindings"}` -> 201
  `{"grant_id", "grant", "scopes", "dropped_scopes", "expires_at"}`: scopes the agent's tool policy does not
  allow are dropped (and reported), never granted; none left is `policy_denied`.
* `DELETE /v1/grants/{grant_id}` -> 204: the grant and every token exchanged from it stop working at once
  (on every replica when Redis is configured). Only the orchestrator that obtained a grant may revoke it.

Both need `Authorization: Bearer <access token of this gateway with scope grants:issue>` (a client
credentials token of a client registered as kind `orchestrator`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from accord.audit import AuditEvent, AuditLog
from accord.bearer import MissingToken, bearer_token
from accord.errors import AccordError
from accord.service import read_json_object
from accord.tokens import AccessClaims, TokenError, TokenVerifier
from accord.trace_context import trace_id_from
from gateway.oauth.grants import MAX_BINDINGS, GrantAuthority

GRANTS_SCOPE = "grants:issue"
_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$"
Identifier = Annotated[str, Field(pattern=_ID)]
Scope = Annotated[str, Field(pattern=r"^[\x21\x23-\x5b\x5d-\x7e]{1,200}$")]
BindingValue = StrictStr | StrictInt | StrictFloat | StrictBool


class GrantRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: Identifier
    skill: Identifier
    wf: Identifier
    task: Identifier
    scopes: list[Scope] = Field(min_length=1, max_length=64)
    deadline: StrictFloat | StrictInt
    bindings: dict[str, BindingValue] = Field(default_factory=dict, max_length=MAX_BINDINGS)


class _Unauthorized(Exception):
    def __init__(self, error: AccordError, challenge: str) -> None:
        super().__init__(error.reason)
        self.error = error
        self.challenge = challenge


def _refusal(exc: _Unauthorized) -> JSONResponse:
    return JSONResponse(
        exc.error.to_body(),
        status_code=exc.error.kind.http_status,
        headers={"WWW-Authenticate": exc.challenge, "Cache-Control": "no-store"},
    )


def grants_router(
    grants: GrantAuthority, verifiers: list[TokenVerifier], audit: AuditLog, mcp_resource: str
) -> APIRouter:
    """`verifiers` accept this gateway's own tokens for the audiences the API answers to; grants unlock
    `mcp_resource` (the audience of the tokens exchanged from them)."""
    router = APIRouter(prefix="/v1/grants", tags=["grants"])

    async def orchestrator(request: Request) -> AccessClaims:
        try:
            token = bearer_token(request.headers)
        except MissingToken as exc:
            raise _Unauthorized(
                AccordError("unauthenticated", str(exc)), 'Bearer error="invalid_token"'
            ) from None
        claims: AccessClaims | None = None
        failure: TokenError | None = None
        for verifier in verifiers:
            try:
                claims = await verifier.verify_async(token)
                break
            except TokenError as exc:
                failure = exc if failure is None or exc.cause != "wrong_audience" else failure
        if claims is None:
            assert failure is not None
            raise _Unauthorized(
                failure, f'Bearer error="invalid_token", error_description="{failure.detail}"'
            )
        if GRANTS_SCOPE not in claims.scopes:
            error = AccordError("insufficient_scope", f"the token lacks the scope {GRANTS_SCOPE}")
            raise _Unauthorized(error, f'Bearer error="insufficient_scope", scope="{GRANTS_SCOPE}"')
        return claims

    async def record_refusal(request: Request, action: str, error: AccordError) -> None:
        await audit.append(
            AuditEvent(
                actor="unknown",
                action=action,
                outcome="denied",
                reason=error.reason,
                trace_id=trace_id_from(None, request.headers),
                details={"detail": error.detail},
            )
        )

    @router.post("", status_code=201)
    async def issue(request: Request) -> Response:
        try:
            caller = await orchestrator(request)
        except _Unauthorized as exc:
            await record_refusal(request, "oauth.grant.issue", exc.error)
            return _refusal(exc)
        try:
            body = GrantRequest.model_validate(await read_json_object(request, max_bytes=64 * 1024))
        except ValidationError as exc:
            problems = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors(include_input=False)]
            raise AccordError(
                "invalid_input", "grant request does not match the schema", problems=problems
            ) from None
        issued = await grants.issue_grant(
            agent=body.agent,
            scopes=body.scopes,
            wf=body.wf,
            task=body.task,
            deadline=float(body.deadline),
            audience=mcp_resource,
            delegated_by=caller.client_id,
            skill=body.skill,
            bindings=body.bindings,
        )
        view: dict[str, Any] = {
            "grant_id": issued.grant.grant_id,
            "grant": issued.token,
            "scopes": sorted(issued.grant.scopes),
            "dropped_scopes": sorted(issued.dropped_scopes),
            "expires_at": issued.grant.expires_at,
        }
        return JSONResponse(view, status_code=201, headers={"Cache-Control": "no-store"})

    @router.delete("/{grant_id}", status_code=204)
    async def revoke(request: Request, grant_id: str) -> Response:
        try:
            caller = await orchestrator(request)
        except _Unauthorized as exc:
            await record_refusal(request, "oauth.grant.revoke", exc.error)
            return _refusal(exc)
        grant = await grants.get(grant_id[:64])
        if grant is None:
            raise AccordError("not_found", "no such grant")
        if grant.delegated_by != caller.client_id:
            await record_refusal(request, "oauth.grant.revoke", AccordError("policy_denied"))
            raise AccordError("policy_denied", "only the orchestrator that obtained a grant can revoke it")
        await grants.revoke(grant.grant_id, actor=caller.client_id)
        return Response(status_code=204)

    return router
