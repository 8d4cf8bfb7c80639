"""Model usage as agents report it and the orchestrator counts and prices it: reports are untrusted data
(bounded, well-formed, or a broken contract), a step is held to its allowance, and cost comes from the
operator's catalog, with an unknown model priced at the catalog's default rather than free."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from a2a.types import AgentCard, Artifact, Task, TaskState, TaskStatus

from accord.errors import AccordError
from accord.payloads import RESULT_ARTIFACT, data_part, to_struct
from accord.registry_client import RegisteredAgent
from accord.topology import repo_root
from accord.usage import USAGE_METADATA_KEY, ModelUsage, Usage, UsageMeter, allowance_from_budget
from orchestrator.dispatch import reported_usage
from orchestrator.prices import PriceCatalog, PriceCatalogError


def report(models: dict[str, Any]) -> dict[str, Any]:
    return {"models": models}


def test_a_report_round_trips_and_adds_up_by_model() -> None:
    usage = Usage.from_json(report({"small-chat": {"input_tokens": 10.0, "output_tokens": 5}}))
    assert usage == Usage({"small-chat": ModelUsage(10, 5)})
    both = usage.plus(Usage({"small-chat": ModelUsage(1, 1), "large-chat": ModelUsage(2, 0)}))
    assert (both.input_tokens, both.output_tokens, both.total_tokens) == (13, 6, 19)
    assert Usage.from_json(both.to_json()) == both


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {"models": {}, "cost": 0},  # an agent does not state its cost
        report({"m": {"input_tokens": -1}}),
        report({"m": {"input_tokens": True}}),
        report({"m": {"input_tokens": 1.5}}),
        report({"m": {"input_tokens": 10**10}}),
        report({"m": {"input_tokens": 1, "cost_usd": 0}}),
        report({"": {"input_tokens": 1}}),
        report({"bad name\n": {"input_tokens": 1}}),
        report({f"m{i}": {"input_tokens": 1} for i in range(17)}),
        report({"m": [1, 2]}),
    ],
)
def test_a_malformed_report_is_a_broken_contract(bad: object) -> None:
    with pytest.raises(AccordError) as refused:
        Usage.from_json(bad)
    assert refused.value.reason == "contract_violation"


def test_a_meter_counts_every_report_and_refuses_one_past_the_allowance() -> None:
    meter = UsageMeter(allowance=100)
    meter.record("small-chat", 40, 20)
    assert meter.tokens_left == 40
    with pytest.raises(AccordError) as over:
        meter.record("small-chat", 30, 20)
    assert over.value.reason == "budget_exceeded"
    assert meter.usage.total_tokens == 110, "what was spent is still counted"
    assert meter.tokens_left == 0
    assert UsageMeter().tokens_left is None


def test_the_allowance_is_read_from_the_steps_budget_and_ignored_when_malformed() -> None:
    assert allowance_from_budget({"tokens": 250.0, "tool_calls": 3}) == 250
    for bad in (None, [], {"tokens": -1}, {"tokens": "many"}, {"tokens": True}, {"tool_calls": 3}):
        assert allowance_from_budget(bad) is None


def test_the_catalog_prices_known_models_and_charges_unknown_ones_the_default() -> None:
    catalog = PriceCatalog.load(repo_root() / "deploy" / "policies" / "model-prices.yaml")
    small, default = catalog.models["small-chat"], catalog.default
    assert catalog.cost(Usage({"small-chat": ModelUsage(1_000_000, 1_000_000)})) == small.input + small.output
    unknown = catalog.cost(Usage({"made-up-model": ModelUsage(1_000_000, 0)}))
    assert unknown == default.input > 0
    assert catalog.cost(Usage()) == 0


def test_an_unusable_catalog_stops_the_orchestrator_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "prices.yaml"
    bad.write_text("version: 1\ndefault: {input: 1, output: 2}\nmodels:\n  m: {input: -3, output: 1}\n")
    with pytest.raises(PriceCatalogError, match=r"prices.yaml:4: models.m.input"):
        PriceCatalog.load(bad)
    bad.write_text("version: 1\nmodels: {}\n")
    with pytest.raises(PriceCatalogError, match="default"):
        PriceCatalog.load(bad)
    with pytest.raises(PriceCatalogError, match="cannot read"):
        PriceCatalog.load(tmp_path / "missing.yaml")


def agent_task(state: int, *, artifact_meta: dict[str, Any] | None = None, error_usage: Any = None) -> Task:
    task = Task(id="t", context_id="c", status=TaskStatus(state=state))
    if state == TaskState.TASK_STATE_COMPLETED:
        artifact = Artifact(artifact_id="a", name=RESULT_ARTIFACT, parts=[data_part({"v": 1})])
        if artifact_meta is not None:
            artifact.metadata.CopyFrom(to_struct(artifact_meta))
        task.artifacts.append(artifact)
    else:
        body: dict[str, Any] = {"error": {"reason": "budget_exceeded", "message": "over"}}
        if error_usage is not None:
            body["usage"] = error_usage
        task.status.message.parts.append(data_part(body))
    return task


def test_the_orchestrator_reads_usage_from_an_answer_or_a_failure_and_refuses_a_bad_one() -> None:
    agent = RegisteredAgent("model-agent", "http://127.0.0.1:1/card", AgentCard(), "active", ("work",))
    good = report({"small-chat": {"input_tokens": 7, "output_tokens": 3}})
    done = agent_task(TaskState.TASK_STATE_COMPLETED, artifact_meta={USAGE_METADATA_KEY: good})
    assert reported_usage(agent, done) == Usage({"small-chat": ModelUsage(7, 3)})
    failed = agent_task(TaskState.TASK_STATE_FAILED, error_usage=good)
    assert reported_usage(agent, failed).total_tokens == 10
    assert reported_usage(agent, agent_task(TaskState.TASK_STATE_COMPLETED)) == Usage()
    lying = agent_task(
        TaskState.TASK_STATE_COMPLETED,
        artifact_meta={USAGE_METADATA_KEY: report({"small-chat": {"input_tokens": -5}})},
    )
    with pytest.raises(AccordError) as refused:
        reported_usage(agent, lying)
    assert refused.value.reason == "contract_violation"
    assert "model-agent" in refused.value.detail
