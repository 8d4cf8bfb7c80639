"""Reconciling facts that several steps report: detect disagreement, resolve it by declared rules, or stop.

A workflow declares each shared fact (e.g. the applicant's address, reported by the bureau and by the
ledger), how two reports are compared, and the rules that may settle a disagreement, in order:

* `prefer_real_time`: a single real-time source wins over batch sources;
* `most_recent`: the report whose `as_of` is latest wins (every report must carry one, and one must be
  strictly latest);
* `prefer_specialist`: a single specialist wins over generalists;
* `prefer_step: <step>`: a field-specific rule naming the source to trust;
* `take: min|max`: for numbers, the more conservative value.

The first rule that applies decides. When none applies the conflict is unresolved: the run waits for a
human instead of guessing. Every conflict, the rules tried and why each did or did not apply are recorded.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.workflows import FactSpec, PreferStep, Rule, SourceSpec, Take, lookup


@dataclass(frozen=True)
class Report:
    """One step's report of a fact."""

    source: SourceSpec
    agent: str | None
    value: Any
    as_of: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.source.step,
            "agent": self.agent,
            "value": self.value,
            "as_of": self.as_of,
            "freshness": self.source.freshness,
            "authority": self.source.authority,
        }


@dataclass(frozen=True)
class Reconciliation:
    facts: dict[str, Any]
    conflicts: list[dict[str, Any]]

    @property
    def unresolved(self) -> list[dict[str, Any]]:
        return [c for c in self.conflicts if c["status"] == "unresolved"]


def reconcile(
    facts: list[FactSpec],
    outputs: Mapping[str, Mapping[str, Any]],
    agents: Mapping[str, str | None],
    decided: Mapping[str, str] | None = None,
) -> Reconciliation:
    """The value of every declared fact, and a record of each disagreement and how it was settled.

    `decided` maps a fact to the step whose report a human reviewer chose; it settles that fact's conflict
    before any rule is tried.
    """
    values: dict[str, Any] = {}
    conflicts: list[dict[str, Any]] = []
    for fact in facts:
        reports = _reports(fact, outputs, agents)
        if not reports:
            continue
        if _agree(fact, reports):
            values[fact.name] = reports[0].value
            continue
        conflict = _resolve(fact, reports, (decided or {}).get(fact.name))
        conflicts.append(conflict)
        if conflict["status"] == "resolved":
            values[fact.name] = conflict["value"]
    return Reconciliation(values, conflicts)


def _reports(
    fact: FactSpec, outputs: Mapping[str, Mapping[str, Any]], agents: Mapping[str, str | None]
) -> list[Report]:
    reports = []
    for source in fact.sources:
        output = outputs.get(source.step)
        if output is None:
            continue
        value, present = lookup(output, source.field)
        if present:
            as_of = lookup(output, source.as_of)[0] if source.as_of else None
            reports.append(Report(source, agents.get(source.step), value, as_of))
    return reports


def _agree(fact: FactSpec, reports: list[Report]) -> bool:
    first = reports[0].value
    return all(_same(fact, first, report.value) for report in reports[1:])


def _same(fact: FactSpec, a: Any, b: Any) -> bool:
    if fact.compare == "address" and isinstance(a, dict) and isinstance(b, dict):
        return normal_address(a) == normal_address(b)
    if fact.compare == "number" and _number(a) is not None and _number(b) is not None:
        return abs(float(a) - float(b)) <= fact.tolerance
    return _canonical(a) == _canonical(b)


def normal_address(address: Mapping[str, Any]) -> tuple[str, ...]:
    """What makes two addresses the same place: line, postcode and country, case and spacing aside."""
    return tuple(
        " ".join(str(address.get(k, "")).casefold().split()) for k in ("line1", "postcode", "country")
    )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _resolve(fact: FactSpec, reports: list[Report], reviewer_choice: str | None) -> dict[str, Any]:
    tried: list[dict[str, Any]] = []
    record: dict[str, Any] = {
        "fact": fact.name,
        "compare": fact.compare,
        "reports": [report.as_dict() for report in reports],
        "rules_tried": tried,
    }
    for rule in fact.rules:
        name = rule_name(rule)
        chosen, why = _RULES[_kind(rule)](rule, reports)
        tried.append({"rule": name, "applies": chosen is not None, "why": why})
        if chosen is not None:
            record.update(
                status="resolved", rule=name, chosen=chosen.source.step, value=chosen.value, detail=why
            )
            return record
    by_reviewer = next((r for r in reports if r.source.step == reviewer_choice), None)
    if by_reviewer is not None:
        detail = f"no rule applies; a reviewer chose the report of {by_reviewer.source.step}"
        step = by_reviewer.source.step
        record.update(
            status="resolved", rule="human_review", chosen=step, value=by_reviewer.value, detail=detail
        )
        return record
    listed = ", ".join(rule_name(rule) for rule in fact.rules) or "none declared"
    detail = f"reports of {fact.name} disagree and no rule applies (rules: {listed})"
    record.update(status="unresolved", rule=None, chosen=None, value=None, detail=detail)
    return record


def rule_name(rule: Rule) -> str:
    if isinstance(rule, PreferStep):
        return f"prefer_step:{rule.prefer_step}"
    if isinstance(rule, Take):
        return f"take:{rule.take}"
    return rule


def _kind(rule: Rule) -> str:
    return "prefer_step" if isinstance(rule, PreferStep) else "take" if isinstance(rule, Take) else rule


Decision = tuple[Report | None, str]


def _single(reports: list[Report], keep: Callable[[Report], bool], label: str, others: str) -> Decision:
    chosen = [report for report in reports if keep(report)]
    if len(chosen) == 1 and len(chosen) < len(reports):
        winner = chosen[0]
        return winner, f"{winner.source.step} is the only {label} source; the others are {others}"
    return None, f"{len(chosen)} of {len(reports)} sources are {label}: no single one to prefer"


def _prefer_real_time(_rule: Rule, reports: list[Report]) -> Decision:
    return _single(reports, lambda r: r.source.freshness == "real-time", "real-time", "batch or unknown")


def _prefer_specialist(_rule: Rule, reports: list[Report]) -> Decision:
    return _single(reports, lambda r: r.source.authority == "specialist", "specialist", "generalists")


def _most_recent(_rule: Rule, reports: list[Report]) -> Decision:
    dated = [(_instant(report.as_of), report) for report in reports]
    if any(when is None for when, _report in dated):
        undated = [r.source.step for when, r in dated if when is None]
        return None, f"no update time from {', '.join(undated)}"
    ordered = sorted(dated, key=lambda pair: pair[0])  # type: ignore[arg-type,return-value]
    (latest, winner), (runner_up, _other) = ordered[-1], ordered[-2]
    if latest == runner_up:
        return None, f"the latest reports are equally recent ({winner.as_of})"
    return winner, f"{winner.source.step} updated it most recently ({winner.as_of})"


def _prefer_step(rule: Rule, reports: list[Report]) -> Decision:
    assert isinstance(rule, PreferStep)
    for report in reports:
        if report.source.step == rule.prefer_step:
            return report, f"the workflow trusts {rule.prefer_step} for this fact"
    return None, f"{rule.prefer_step} did not report it"


def _take(rule: Rule, reports: list[Report]) -> Decision:
    assert isinstance(rule, Take)
    numbers = [(_number(report.value), report) for report in reports]
    if any(value is None for value, _report in numbers):
        return None, "not every report is a number"
    pick = min if rule.take == "min" else max
    value, winner = pick(numbers, key=lambda pair: pair[0])  # type: ignore[arg-type,return-value]
    return winner, f"the {rule.take} of the reported values is {value:g}, from {winner.source.step}"


_RULES: dict[str, Callable[[Rule, list[Report]], Decision]] = {
    "prefer_real_time": _prefer_real_time,
    "most_recent": _most_recent,
    "prefer_specialist": _prefer_specialist,
    "prefer_step": _prefer_step,
    "take": _take,
}


def _instant(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
