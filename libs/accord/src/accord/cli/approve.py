"""`accord approve <run> <gate> [--reject] --reason ...`: a person's decision on an approval gate.

It calls the orchestrator's API (`POST /v1/runs/{id}/approvals/{gate}`) as the operator, with a token that
carries `runs:review`; the decision is recorded with the operator's identity and the reason. Exit status 1
on a refusal, with its reason code on stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from accord.cli.agents import run_or_exit
from accord.cli.runs import OrchestratorUrl, PortOffset, RunSource, StateDir, state_dir_or_default
from accord.errors import ERROR_TABLE, AccordError
from accord.operator_credentials import operator_bearer


def approve(
    run_id: Annotated[str, typer.Argument(help="The run waiting for approval.")],
    gate: Annotated[str, typer.Argument(help="The approval gate's id (the run record lists them).")],
    reason: Annotated[str, typer.Option("--reason", help="Why: recorded with your identity.")],
    reject: Annotated[bool, typer.Option("--reject", help="Reject instead of approving.")] = False,
    state_dir: Path | None = StateDir,
    orchestrator_url: str | None = OrchestratorUrl,
    port_offset: int = PortOffset,
) -> None:
    """Approve (or reject) one approval gate of a run."""
    source = RunSource.locate(state_dir_or_default(state_dir), orchestrator_url, None, port_offset)
    decision = "reject" if reject else "approve"

    async def work() -> Any:
        if source.orchestrator_url is None or source.gateway_url is None:
            raise AccordError("upstream_unavailable", "no orchestrator to ask (is the mesh up?)")
        base = source.orchestrator_url.rstrip("/")
        auth = operator_bearer(source.gateway_url, base, source.state_dir)
        if auth is None:
            raise AccordError("unauthenticated", "no operator credentials (ACCORD_OPERATOR_CLIENT_SECRET)")
        async with httpx.AsyncClient(timeout=30.0, auth=auth) as http:
            try:
                response = await http.post(
                    f"{base}/v1/runs/{run_id}/approvals/{gate}", json={"decision": decision, "reason": reason}
                )
            except httpx.HTTPError as exc:
                raise AccordError("upstream_unavailable", "the orchestrator is unreachable") from exc
        body = response.json() if response.content else {}
        if response.status_code >= 400:
            error = body.get("error") or {}
            found = error.get("reason")
            raise AccordError(found if found in ERROR_TABLE else "internal_error", error.get("message"))
        return body

    run = run_or_exit(work)
    state = (run.get("approvals") or {}).get(gate, {})
    typer.echo(
        f"{gate}: {state.get('status', decision)} by {state.get('decided_by', '?')}; run {run['status']}"
    )
