"""Credit-risk across containers wired as docker-compose.yml wires them, each in its own network namespace.

The agents can reach only the gateway and the registry, the tool servers only the gateway, the orchestrator
only the gateway and the registry: the run has to take the paths DESIGN.md draws. Then one agent is cut off
the network and the next run degrades as the workflow says (the missing step makes the decision `refer`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accord.topology import repo_root
from tests.deploy.netns_lab import unavailable_reason
from tests.deploy.netns_mesh import ComposeInNamespaces, interpreter, missing_tools

# Credit-risk's agents, plus what they stand on. The gateway is ready only when every upstream it
# federates answers, so all tool servers run; the other workflows' agents do not.
CREDIT_RISK = [
    "sanctions-tools", "bureau-tools", "ledger-tools", "support-tools", "compliance-tools", "keys-init",
    "postgres", "redis", "registry", "gateway", "sanctions-agent", "bureau-agent", "ledger-agent",
    "orchestrator",
]  # fmt: skip
STEP_AGENTS = {"sanctions": "sanctions-agent", "bureau": "bureau-agent", "ledger": "ledger-agent"}
CLIENT_SCRIPT = Path(__file__).with_name("netns_client.py")
INPUT_FIELDS = ("applicant_id", "account_id", "name", "birth_date", "country", "requested_amount")

pytestmark = pytest.mark.timeout(420)


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the network namespace test must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def mesh(
    compose_file: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComposeInNamespaces]:
    reason = unavailable_reason() or missing_tools()
    if reason:
        skip_or_fail(reason)
    mesh = ComposeInNamespaces(compose_file, CREDIT_RISK, tmp_path_factory.mktemp("netns"))
    try:
        mesh.build()
        mesh.up(timeout_s=240)
        yield mesh
    except BaseException:
        print(mesh.logs())
        raise
    finally:
        mesh.down()


def applicant(scenario: str) -> dict[str, Any]:
    applicants = json.loads((repo_root() / "data" / "applicants.json").read_text())
    chosen = next(a for a in applicants if a["scenario"] == scenario)
    return {key: chosen[key] for key in INPUT_FIELDS if key in chosen}


def run_credit_risk(mesh: ComposeInNamespaces, data: dict[str, Any]) -> dict[str, Any]:
    orchestrator = mesh.service("orchestrator")["environment"]["ACCORD_PUBLIC_URL"]
    credentials = {
        "ACCORD_GATEWAY_URL": mesh.service("gateway")["environment"]["ACCORD_PUBLIC_URL"],
        "ACCORD_OPERATOR_CLIENT_SECRET": mesh.variables["OPERATOR_CLIENT_SECRET"],
    }
    answer = mesh.call(
        [interpreter(), str(CLIENT_SCRIPT), orchestrator, "credit-risk", json.dumps(data)], 150, credentials
    )
    assert answer["status"] in (200, 201), answer
    return answer["run"]  # type: ignore[no-any-return]


def reasons(run: dict[str, Any]) -> set[str]:
    return {reason["rule"] for reason in run["result"]["reasons"]}


def answered(run: dict[str, Any]) -> dict[str, str]:
    return {step["id"]: step["agent"] for step in run["steps"] if step["status"] == "completed"}


def test_credit_risk_runs_across_namespaces_wired_like_compose(mesh: ComposeInNamespaces) -> None:
    run = run_credit_risk(mesh, applicant("strong_clean"))
    assert run["status"] in ("completed", "waiting_review", "waiting_approval"), run["status"]
    assert answered(run) == STEP_AGENTS, run["steps"]
    assert run["result"]["decision"] in ("approve", "decline", "refer")
    assert not any(rule.endswith("_unavailable") for rule in reasons(run)), run["result"]


def test_an_agent_cut_off_the_network_makes_the_run_refer_as_the_workflow_says(
    mesh: ComposeInNamespaces,
) -> None:
    mesh.lab.cut("ledger-agent")
    run = run_credit_risk(mesh, applicant("strong_clean"))
    assert run["result"]["decision"] == "refer", run["result"]
    assert "ledger_unavailable" in reasons(run)
    assert answered(run) == {"sanctions": "sanctions-agent", "bureau": "bureau-agent"}
    (ledger,) = (step for step in run["steps"] if step["id"] == "ledger")
    assert ledger["status"] == "failed"
    assert ledger["error"]["reason"] in ("timeout", "agent_unavailable"), ledger["error"]
