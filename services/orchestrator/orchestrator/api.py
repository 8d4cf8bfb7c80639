"""The orchestrator's REST API.

`GET /v1/runs/{id}` returns the whole run: every step's status, output, timings, attempts and grant; the
conflicts between facts and how each was settled; the decision rationale; the pending human review, if any;
the budget (limits, spent, which limit stopped it). `POST /v1/workflows/{name}/runs` takes the workflow's
input as its body and may tighten the workflow's budget with `Accord-Budget: tasks=50, wall_s=30`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from accord.caller_auth import AuthenticatedCaller
from accord.errors import AccordError
from accord.service import read_json_object
from orchestrator.budgets import BUDGET_HEADER, budget_from_header
from orchestrator.runs import RunService
from orchestrator.workflows import WorkflowSpec


def create_api_router(runs: RunService, wait_max_s: float) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/workflows")
    async def list_workflows() -> dict[str, Any]:
        return {"workflows": [_workflow_summary(spec) for spec in runs.workflows.values()]}

    @router.get("/workflows/{name}")
    async def get_workflow(name: str) -> dict[str, Any]:
        spec = runs.workflows.get(name)
        if spec is None:
            raise AccordError("unknown_workflow", f"no workflow named {name[:64]!r}")
        return {**_workflow_summary(spec), "definition": spec.model_dump(mode="json", by_alias=True)}

    @router.post("/workflows/{name}/runs")
    async def start_run(
        name: str, request: Request, wait: float = Query(default=0.0, ge=0.0, le=3600.0)
    ) -> JSONResponse:
        actor = _actor(request)
        try:
            data = await read_json_object(request)
            budget = budget_from_header(request.headers.get(BUDGET_HEADER))
        except AccordError as error:
            await runs.refuse(name, error, actor)
            raise
        spec = await runs.admit(name, data, actor, budget=budget)
        run_id = await runs.start(spec, data, actor, budget=budget)
        run = await runs.wait(run_id, min(wait, wait_max_s)) if wait else await runs.get(run_id)
        status = 202 if run["status"] == "running" else 201
        return JSONResponse(run, status_code=status, headers={"Location": f"/v1/runs/{run_id}"})

    @router.get("/runs")
    async def list_runs(limit: int = Query(default=20, ge=1, le=500)) -> dict[str, Any]:
        return {"runs": await runs.recent(limit)}

    @router.get("/runs/{run_id}")
    async def get_run(run_id: str, wait: float = Query(default=0.0, ge=0.0, le=3600.0)) -> dict[str, Any]:
        return await runs.wait(run_id, min(wait, wait_max_s)) if wait else await runs.get(run_id)

    @router.post("/runs/{run_id}/review")
    async def review_run(run_id: str, request: Request) -> JSONResponse:
        """A human decision on a run in `waiting_review`: `{"decision": "accept"|"reject", "facts", "note"}`
        (see `RunService.review`)."""
        decision = await read_json_object(request)
        run = await runs.review(run_id, decision, _actor(request))
        return JSONResponse(run, status_code=202)

    @router.post("/runs/{run_id}/approvals/{gate}")
    async def decide_approval(run_id: str, gate: str, request: Request) -> JSONResponse:
        """A person's decision on one approval gate: `{"decision": "approve"|"reject", "reason": "..."}`."""
        body = await read_json_object(request)
        run = await runs.decide(run_id, gate, body.get("decision"), body.get("reason"), _actor(request))
        return JSONResponse(run, status_code=202 if run["status"] == "running" else 200)

    return router


def _workflow_summary(spec: WorkflowSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "version": spec.version,
        "description": spec.description,
        "skills": [step.skill for step in spec.steps],
        "patterns": spec.patterns(),
    }


def _actor(request: Request) -> str:
    """Who acts, as the caller guard authenticated them (every `/v1` route is behind it)."""
    caller = request.scope.get("user")
    if isinstance(caller, AuthenticatedCaller):
        return f"rest:{caller.identity}"
    return f"rest:{request.client.host if request.client else 'unknown'}"
