"""The credit-risk demo: a few sample applicants through the orchestrator's public REST endpoint, called as
the mesh's operator (an OAuth client with a token for the orchestrator's API)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from accord.topology import repo_root

WORKFLOW_INPUT_FIELDS = ("applicant_id", "account_id", "name", "birth_date", "country", "requested_amount")


def sample_applicants(count: int) -> list[dict[str, Any]]:
    """One applicant per scenario first, so a short demo still shows every kind of case."""
    applicants: list[dict[str, Any]] = json.loads((repo_root() / "data" / "applicants.json").read_text())
    first_of_each = list({a["scenario"]: a for a in reversed(applicants)}.values())[::-1]
    rest = [a for a in applicants if a not in first_of_each]
    return (first_of_each + rest)[:count]


def run_demo(orchestrator_url: str, auth: httpx.Auth, count: int, echo: Callable[[str], None]) -> bool:
    ok = True
    with httpx.Client(base_url=orchestrator_url, auth=auth, timeout=60.0) as client:
        for applicant in sample_applicants(count):
            body = {k: applicant[k] for k in WORKFLOW_INPUT_FIELDS if k in applicant}
            try:
                response = client.post("/v1/workflows/credit-risk/runs", params={"wait": 30}, json=body)
                run = response.json()
            except (httpx.HTTPError, ValueError) as error:
                echo(f"\n{applicant['name']}: no answer from the orchestrator ({type(error).__name__})")
                ok = False
                continue
            if response.status_code != 201 or run.get("status") not in ("completed", "waiting_approval"):
                echo(f"\n{applicant['name']}: run did not complete ({response.status_code}): {run}")
                ok = False
                continue
            echo(render_run(applicant, run))
    return ok


def render_run(applicant: dict[str, Any], run: dict[str, Any]) -> str:
    result = run["result"]
    # A run waiting for approval has not finished: its wall time is up to its last step's end.
    ended = run.get("finished_at") or max(
        (step["finished_at"] for step in run["steps"] if step.get("finished_at")), default=run["created_at"]
    )
    wall_ms = (ended - run["created_at"]) * 1000
    lines = [
        "",
        f"{applicant['name']} ({applicant['scenario']}), asks {applicant['requested_amount']:,.0f}",
        f"  decision: {result['decision'].upper()}   run {run['id'][:8]}  wall {wall_ms:.0f} ms",
    ]
    lines += [f"  - [{r['effect']}] {r['rule']}: {r['detail']}" for r in result["reasons"]]
    latencies = ", ".join(
        f"{step['agent'] or step['skill']} {step['latency_ms']:.0f} ms"
        if step["latency_ms"] is not None
        else f"{step['skill']} {step['status']}"
        for step in run["steps"]
    )
    lines.append(f"  agents: {latencies}")
    for gate, state in (run.get("approvals") or {}).items():
        if state.get("status") == "pending":
            lines.append(f"  waits for approval: accord approve {run['id']} {gate} [--reject] --reason ...")
    return "\n".join(lines)
