"""The registry's REST API (`/v1/agents`, `/v1/agents/{name}:refresh`, `/v1/discover`), calling the same
catalog as gRPC.

`POST /v1/agents` takes `{"card_url"}` plus, from an operator (admin bearer), the AI inventory fields
`owner`, `policy`, `purpose`, `model`, `model_version`, `risk`, `review_date`. Registering and removing
need the admin credential except for an agent's own registration in local mode (`registry.catalog`).
Reading and discovery are open: the orchestrator discovers with no credential.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from accord.errors import AccordError
from accord.service import read_json_object
from registry.access import AdminCredential
from registry.catalog import REGISTER, REMOVE, Caller, Catalog
from registry.store import AgentRecord

INVENTORY_FIELDS = ("owner", "policy", "purpose", "model", "model_version", "risk", "review_date")


def agent_json(record: AgentRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "card_url": record.card_url,
        "card": record.card,
        "status": record.status,
        "skills": list(record.skill_ids),
        "tags": list(record.tags),
        "registered_at": _iso(record.registered_at),
        "updated_at": _iso(record.updated_at),
        "owner": record.owner,
        "inventory": record.inventory.to_json() if record.inventory else None,
    }


def rest_router(catalog: Catalog, admin: AdminCredential | None = None) -> APIRouter:
    router = APIRouter(prefix="/v1")
    credential = admin or AdminCredential()

    async def caller(request: Request, action: str, details: dict[str, Any]) -> Caller:
        peer = request.client.host if request.client else None
        try:
            return credential.caller(request.headers.get("authorization"), peer, "http")
        except AccordError as error:
            await catalog.refused(action, f"http:{peer or 'unknown'}", error, details)
            raise

    @router.post("/agents", status_code=201)
    async def register_agent(request: Request) -> JSONResponse:
        body = await read_json_object(request, max_bytes=16_384)
        card_url = body.get("card_url")
        if not isinstance(card_url, str) or not card_url:
            raise AccordError("invalid_input", "card_url must be a non-empty string")
        unknown = set(body) - {"card_url", *INVENTORY_FIELDS}
        if unknown:
            raise AccordError("invalid_input", f"unknown fields: {sorted(unknown)}")
        fields = {key: body[key] for key in INVENTORY_FIELDS if body.get(key) not in (None, "")}
        who = await caller(request, REGISTER, {"card_url": card_url})
        registration = await catalog.register(card_url, who, fields or None)
        status = 201 if registration.created else 200
        return JSONResponse(agent_json(registration.record), status_code=status)

    # AIP-136 custom method. A refresh that quarantines the agent answers the refusal's reason and status,
    # with `"status": "quarantined"` in the error context.
    @router.post("/agents/{name}:refresh")
    async def refresh_agent(name: str, request: Request) -> dict[str, Any]:
        return agent_json(await catalog.refresh(name, actor=_actor(request)))

    @router.get("/agents")
    async def list_agents() -> dict[str, Any]:
        return {"agents": [agent_json(record) for record in await catalog.all_agents()]}

    # `:path` so any name, even one with a slash, reaches the catalog and gets its reason-coded answer.
    @router.get("/agents/{name:path}")
    async def get_agent(name: str) -> dict[str, Any]:
        return agent_json(await catalog.get(name))

    @router.delete("/agents/{name:path}", status_code=204)
    async def remove_agent(name: str, request: Request) -> Response:
        await catalog.remove(name, await caller(request, REMOVE, {"name": name}))
        return Response(status_code=204)

    @router.get("/discover")
    async def discover(skill: str | None = None, tag: str | None = None) -> dict[str, Any]:
        return {"agents": [agent_json(record) for record in await catalog.discover(skill, tag)]}

    return router


def _actor(request: Request) -> str:
    return f"http:{request.client.host}" if request.client else "http:unknown"


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
