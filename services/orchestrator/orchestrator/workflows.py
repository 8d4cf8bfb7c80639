"""Workflow definitions as data: a graph of steps that name skills, never agents.

A file is read with the line of every value (`located_yaml`), validated against the JSON Schema
`deploy/workflows/workflow.schema.json`, then checked as a graph: every reference names a step defined
before it (so the graph has no cycle), route branches name later steps, critic blocks only use their own
references, facts name real steps, and no workflow delegates to itself through the others. Every problem is
reported as `file:line: where: what`.

References (strings starting with `$`): `$input.<path>`, `$steps.<step>[.<path>]`; inside a critic block
also `$draft.<path>` (the output being critiqued), `$review.<path>` (the critic's last output),
`$loop.iteration` and `$loop.feedback`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator
from pydantic import ValidationError as ModelError

from accord.located_yaml import LocatedYamlError, line_of, load_located
from accord.located_yaml import Path as Location
from accord.topology import repo_root
from orchestrator.synthesis import SYNTHESIZERS

SCHEMA_FILE = "workflow.schema.json"
STEP_ROOTS = ("input", "steps")
CRITIC_ROOTS = ("draft", "review", "loop")
LOOP_FIELDS = ("iteration", "feedback")


class Condition(BaseModel):
    """One test of an output field; the workflow, not an agent, holds the threshold."""

    model_config = ConfigDict(extra="forbid")

    field: str
    equals: Any = None
    at_least: float | None = None
    at_most: float | None = None

    def holds(self, output: Mapping[str, Any]) -> bool:
        value, present = lookup(output, self.field)
        if not present:
            return False
        if "equals" in self.model_fields_set:
            return bool(value == self.equals)
        if not _is_number(value):
            return False
        if self.at_least is not None:
            return bool(value >= self.at_least)
        return self.at_most is not None and bool(value <= self.at_most)

    def describe(self) -> str:
        if "equals" in self.model_fields_set:
            return f"{self.field} == {json.dumps(self.equals)}"
        if self.at_least is not None:
            return f"{self.field} >= {self.at_least:g}"
        return f"{self.field} <= {self.at_most:g}"


class RouteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str
    branches: dict[str, list[str]]

    def gated_steps(self) -> set[str]:
        return {step for steps in self.branches.values() for step in steps}


class FeedbackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = Field(alias="from")
    keep: list[str] | None = None

    def project(self, review: Mapping[str, Any]) -> list[Any]:
        items, present = lookup(review, self.source)
        if not present or not isinstance(items, list):
            return []
        if self.keep is None:
            return list(items)
        return [
            {key: item[key] for key in self.keep if key in item} if isinstance(item, dict) else item
            for item in items
        ]


class CriticSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skill: str
    input: dict[str, Any]
    timeout_s: float | None = Field(default=None, gt=0)
    accept: list[Condition]
    max_iterations: int
    feedback: FeedbackSpec | None = None
    revise: dict[str, Any] = Field(default_factory=dict)
    on_max_iterations: Literal["accept", "review"] = "accept"


class StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    skill: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    description: str = ""
    input: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0)
    retries: int = Field(default=0, ge=0, le=5)
    min_confidence: float | None = Field(default=None, ge=0, le=1)
    confidence_field: str = "confidence"
    on_low_confidence: Literal["review", "critic", "fail"] = "review"
    route: RouteSpec | None = None
    critic: CriticSpec | None = None

    def dependencies(self) -> set[str]:
        """Steps whose outputs this step (or its critic) reads: it starts once they have completed."""
        mappings: list[Any] = [self.input]
        if self.critic is not None:
            mappings += [self.critic.input, self.critic.revise]
        return {ref.step for mapping in mappings for ref in references(mapping) if ref.step is not None}


class BudgetSpec(BaseModel):
    """Per-run limits (None: unlimited). A request may tighten them (`tightened`), never loosen them."""

    model_config = ConfigDict(extra="forbid")

    tasks: int | None = Field(default=None, ge=1)
    # Counted and enforced by the gateway: the relay writes the limit into each step's task grant.
    tool_calls: int | None = Field(default=None, ge=0)
    wall_s: float | None = Field(default=None, gt=0)
    # Model tokens (input and output) the agents report, and what they cost (USD, priced by the
    # orchestrator's catalog); each step is given its share of what is left (`accord.budget.tokens`).
    tokens: int | None = Field(default=None, ge=0)
    cost: float | None = Field(default=None, ge=0)
    # How deep the run's delegations may go: 0 lets no step hand work to another orchestrator's run.
    depth: int | None = Field(default=None, ge=0)

    def tightened(self, request: BudgetSpec | None) -> BudgetSpec:
        """Each limit as the lower of the workflow's and the request's."""
        if request is None:
            return self
        limits = {}
        for name in type(self).model_fields:
            mine, theirs = getattr(self, name), getattr(request, name)
            limits[name] = theirs if mine is None else mine if theirs is None else min(mine, theirs)
        return BudgetSpec(**limits)

    def limits(self) -> dict[str, float]:
        return {name: value for name, value in self.model_dump().items() if value is not None}


SYNTHESIS = "synthesis"


class ApprovalSpec(BaseModel):
    """A human approval gate: after a step (its output) or after synthesis (the result), when `when` holds
    (always without it). The step's dependents, or the run's completion, wait for a person's decision; an
    unanswered gate takes `on_expiry` after `expires_after_s`."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)
    after: str
    when: Condition | None = None
    description: str = ""
    expires_after_s: float = Field(default=86_400.0, gt=0)
    on_expiry: Literal["approve", "reject"] = "reject"

    def applies(self, output: Mapping[str, Any] | None) -> bool:
        return self.when is None or (output is not None and self.when.holds(output))


class PartialSpec(BaseModel):
    """A partial result the workflow accepts (k of n): with at least `at_least` of `steps` completed the
    run still synthesizes, its result marked `degraded`; with fewer it fails `insufficient_results`."""

    model_config = ConfigDict(extra="forbid")

    steps: list[str] = Field(min_length=1)
    at_least: int = Field(ge=1)


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: str
    field: str
    as_of: str | None = None
    freshness: Literal["real-time", "batch"] | None = None
    authority: Literal["specialist", "generalist"] | None = None


class PreferStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prefer_step: str


class Take(BaseModel):
    model_config = ConfigDict(extra="forbid")

    take: Literal["min", "max"]


Rule = Literal["prefer_real_time", "most_recent", "prefer_specialist"] | PreferStep | Take


class FactSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    compare: Literal["exact", "address", "number"] = "exact"
    tolerance: float = 0.0
    sources: list[SourceSpec]
    rules: list[Rule]


class WorkflowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    version: int = Field(ge=1)
    description: str
    input_schema: dict[str, Any]
    steps: list[StepSpec] = Field(min_length=1)
    facts: list[FactSpec] = Field(default_factory=list)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    partial: PartialSpec | None = None
    approvals: list[ApprovalSpec] = Field(default_factory=list)
    synthesis: str

    @model_validator(mode="after")
    def _graph_is_sound(self, info: ValidationInfo) -> WorkflowSpec:
        """The graph rules; with a `located` context (a file being parsed) problems are collected there
        with their lines, otherwise they are raised."""
        located = (info.context or {}).get("located")
        if isinstance(located, _Located):
            _check_graph(self, located)
            return self
        standalone = _Located("workflow", {})
        _check_graph(self, standalone)
        if standalone.problems:
            raise ValueError("; ".join(p.split(": ", 1)[1] for p in standalone.problems))
        return self

    def approval(self, gate: str) -> ApprovalSpec | None:
        return next((spec for spec in self.approvals if spec.id == gate), None)

    def approval_after(self, where: str) -> ApprovalSpec | None:
        """The gate after a step, or after synthesis (`SYNTHESIS`)."""
        return next((spec for spec in self.approvals if spec.after == where), None)

    def step(self, step_id: str) -> StepSpec:
        return next(step for step in self.steps if step.id == step_id)

    def routers(self) -> dict[str, str]:
        """Each gated step and the router step whose output decides whether it runs."""
        return {gated: step.id for step in self.steps if step.route for gated in step.route.gated_steps()}

    def patterns(self) -> list[str]:
        """The orchestration patterns this workflow uses (for listings)."""
        found = []
        if sum(1 for step in self.steps if not step.dependencies()) > 1:
            found.append("fan-out")
        if any(step.route for step in self.steps):
            found.append("router")
        if any(step.critic for step in self.steps):
            found.append("critic-loop")
        if self.facts:
            found.append("conflict-rules")
        if any(step.min_confidence is not None for step in self.steps):
            found.append("confidence-gate")
        return found


# --- references -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    root: str
    step: str | None
    path: tuple[str, ...]


def parse_reference(text: str) -> Reference:
    """`$root.a.b` -> Reference; raises ValueError for a malformed one."""
    parts = text[1:].split(".")
    root = parts[0]
    if root not in (*STEP_ROOTS, *CRITIC_ROOTS) or any(not part for part in parts):
        raise ValueError(
            f"{text!r} is not a reference ($input.., $steps.<step>.., $draft.., $review.., $loop..)"
        )
    if root == "steps":
        if len(parts) < 2:
            raise ValueError(f"{text!r} names no step")
        return Reference(root, parts[1], tuple(parts[2:]))
    if root == "loop" and (len(parts) != 2 or parts[1] not in LOOP_FIELDS):
        raise ValueError(f"{text!r}: the loop offers only $loop.iteration and $loop.feedback")
    return Reference(root, None, tuple(parts[1:]))


def references(value: Any) -> Iterator[Reference]:
    """Every well-formed reference in a mapping value, at any depth."""
    for _where, text in _reference_strings(value, ()):
        try:
            yield parse_reference(text)
        except ValueError:
            continue


def _reference_strings(value: Any, where: Location) -> Iterator[tuple[Location, str]]:
    if isinstance(value, str) and value.startswith("$"):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _reference_strings(item, (*where, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _reference_strings(item, (*where, index))


@dataclass
class Scope:
    """What references resolve against."""

    run_input: Mapping[str, Any]
    outputs: Mapping[str, Any]
    draft: Mapping[str, Any] | None = None
    review: Mapping[str, Any] | None = None
    loop: Mapping[str, Any] = field(default_factory=dict)

    def find(self, ref: Reference) -> tuple[Any, bool]:
        if ref.root == "input":
            return lookup(self.run_input, ref.path)
        if ref.root == "steps":
            assert ref.step is not None
            if ref.step not in self.outputs:
                return None, False
            return lookup(self.outputs[ref.step], ref.path)
        if ref.root == "loop":
            return lookup(self.loop, ref.path)
        source = self.draft if ref.root == "draft" else self.review
        return (None, False) if source is None else lookup(source, ref.path)


_ABSENT = object()


def resolve(value: Any, scope: Scope) -> Any:
    """A mapping value with its references replaced; absent optional values are left out."""
    resolved = _resolve(value, scope)
    return None if resolved is _ABSENT else resolved


def _resolve(value: Any, scope: Scope) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        found, present = scope.find(parse_reference(value))
        return found if present else _ABSENT
    if isinstance(value, dict):
        items = ((key, _resolve(item, scope)) for key, item in value.items())
        return {key: item for key, item in items if item is not _ABSENT}
    if isinstance(value, list):
        return [item for item in (_resolve(item, scope) for item in value) if item is not _ABSENT]
    return value


def resolve_input(
    mapping: dict[str, Any], run_input: dict[str, Any], outputs: dict[str, Any]
) -> dict[str, Any]:
    """A step's input from the workflow input and earlier outputs; absent optional values are left out."""
    resolved: dict[str, Any] = resolve(mapping, Scope(run_input, outputs))
    return resolved


def lookup(data: Any, path: str | Iterable[str]) -> tuple[Any, bool]:
    """The value at a dotted path, and whether it is there (a present null counts as absent)."""
    current = data
    for part in path.split(".") if isinstance(path, str) else path:
        if not isinstance(current, Mapping) or part not in current:
            return None, False
        current = current[part]
    return current, current is not None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --- loading and checking -------------------------------------------------------------------------------


class WorkflowError(ValueError):
    """Workflow files that cannot be used; `problems` are `file:line: where: what` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class _Located:
    source: str
    lines: dict[Location, int]
    found: list[tuple[int, str]] = field(default_factory=list)

    def add(self, where: Location, message: str) -> None:
        line = line_of(self.lines, where) or 1
        self.found.append((line, f"{self.source}:{line}: {format_location(where)}: {message}"))

    @property
    def problems(self) -> list[str]:
        """In file order, so they read top to bottom like the file."""
        return [text for _line, text in sorted(self.found, key=lambda item: item[0])]


def format_location(where: Location) -> str:
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def schema_path() -> Path:
    return repo_root() / "deploy" / "workflows" / SCHEMA_FILE


@cache
def _schema_validator() -> Draft202012Validator:
    schema = json.loads(schema_path().read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def parse_workflow(text: str, source: str, expected_name: str | None = None) -> WorkflowSpec:
    """One workflow from YAML text; raises WorkflowError listing every problem with its line."""
    try:
        raw, lines = load_located(text)
    except LocatedYamlError as exc:
        where = f"{source}:{exc.line}" if exc.line else source
        raise WorkflowError([f"{where}: {exc.message}"]) from None
    located = _Located(source, lines)
    for error in _schema_validator().iter_errors(raw):
        _schema_problem(located, error)
    if located.problems:
        raise WorkflowError(located.problems)
    try:
        spec = WorkflowSpec.model_validate(raw, context={"located": located})
    except ModelError as exc:
        for problem in exc.errors():
            located.add(tuple(problem["loc"]), problem["msg"])
        raise WorkflowError(located.problems) from None
    if expected_name is not None and spec.name != expected_name:
        located.add(("name",), f"the file {expected_name}.yaml must declare workflow {expected_name!r}")
    if located.problems:
        raise WorkflowError(located.problems)
    return spec


def _schema_problem(located: _Located, error: ValidationError) -> None:
    if error.context:
        # oneOf/anyOf: the alternative that came closest says what is wrong.
        error = best_match(error.context)
    where: Location = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        for key in error.instance:
            if key not in allowed:
                located.add((*where, key), f"unknown field {key!r} (allowed: {', '.join(sorted(allowed))})")
        return
    located.add(where, error.message)


def _check_graph(spec: WorkflowSpec, located: _Located) -> None:
    try:
        Draft202012Validator.check_schema(spec.input_schema)
    except SchemaError as exc:
        located.add(("input_schema", *exc.absolute_path), f"not a valid JSON Schema: {exc.message}")
    if spec.synthesis not in SYNTHESIZERS:
        known = ", ".join(sorted(SYNTHESIZERS))
        located.add(("synthesis",), f"unknown synthesizer {spec.synthesis!r} (known: {known})")
    order = {step.id: index for index, step in enumerate(spec.steps)}
    seen: set[str] = set()
    gated: dict[str, str] = {}
    for index, step in enumerate(spec.steps):
        at: Location = ("steps", index)
        if step.id in seen:
            located.add((*at, "id"), f"step ids must be unique: {step.id!r} is used twice")
        seen.add(step.id)
        _check_references(located, (*at, "input"), step.input, order, index, STEP_ROOTS)
        _check_confidence(located, at, step)
        if step.route is not None:
            _check_route(located, at, step, order, index, gated)
        if step.critic is not None:
            for key in ("input", "revise"):
                mapping = getattr(step.critic, key)
                roots = (*STEP_ROOTS, *CRITIC_ROOTS)
                _check_references(located, (*at, "critic", key), mapping, order, index, roots)
            if step.critic.feedback is None and any(
                ref.root == "loop" and ref.path == ("feedback",)
                for ref in references([step.critic.input, step.critic.revise])
            ):
                located.add((*at, "critic"), "$loop.feedback needs a feedback block")
    _check_facts(spec, located, order)
    if spec.partial is not None:
        _check_partial(spec.partial, located, order)
    _check_approvals(spec.approvals, located, order)


def _check_approvals(approvals: list[ApprovalSpec], located: _Located, order: dict[str, int]) -> None:
    ids: set[str] = set()
    places: set[str] = set()
    for index, gate in enumerate(approvals):
        at: Location = ("approvals", index)
        if gate.id in ids:
            located.add((*at, "id"), f"approval ids must be unique: {gate.id!r} is used twice")
        if gate.after != SYNTHESIS and gate.after not in order:
            located.add((*at, "after"), f"names neither a step nor {SYNTHESIS!r}: {gate.after!r}")
        if gate.after in places:
            located.add((*at, "after"), f"one gate per place: {gate.after!r} has two")
        ids.add(gate.id)
        places.add(gate.after)


def _check_partial(partial: PartialSpec, located: _Located, order: dict[str, int]) -> None:
    for index, step in enumerate(partial.steps):
        if step not in order:
            located.add(("partial", "steps", index), f"names no step of this workflow: {step!r}")
    if partial.at_least > len(partial.steps):
        located.add(
            ("partial", "at_least"), f"at_least {partial.at_least} exceeds the {len(partial.steps)} steps"
        )


def _check_references(
    located: _Located,
    at: Location,
    mapping: Any,
    order: dict[str, int],
    index: int,
    roots: tuple[str, ...],
) -> None:
    for where, text in _reference_strings(mapping, at):
        try:
            ref = parse_reference(text)
        except ValueError as exc:
            located.add(where, str(exc))
            continue
        if ref.root not in roots:
            located.add(where, f"{text!r}: ${ref.root} is only available inside a critic block")
        elif ref.step is not None and order.get(ref.step, len(order)) >= index:
            located.add(
                where, f"reads {[ref.step]} before they are defined (a step reads earlier steps only)"
            )


def _check_confidence(located: _Located, at: Location, step: StepSpec) -> None:
    explicit = "on_low_confidence" in step.model_fields_set
    if explicit and step.min_confidence is None:
        located.add((*at, "on_low_confidence"), "on_low_confidence needs min_confidence")
    if step.on_low_confidence == "critic" and step.critic is None:
        located.add((*at, "on_low_confidence"), "on_low_confidence: critic needs a critic block")


def _check_route(
    located: _Located,
    at: Location,
    step: StepSpec,
    order: dict[str, int],
    index: int,
    gated: dict[str, str],
) -> None:
    assert step.route is not None
    for value, targets in step.route.branches.items():
        for position, target in enumerate(targets):
            where = (*at, "route", "branches", value, position)
            if target not in order:
                located.add(where, f"branch {value!r} names unknown step {target!r}")
            elif order[target] <= index:
                located.add(where, f"branch {value!r} names step {target!r}, which is not after the router")
            elif gated.get(target, step.id) != step.id:
                located.add(where, f"step {target!r} is already a branch of router {gated[target]!r}")
            gated[target] = step.id


def _check_facts(spec: WorkflowSpec, located: _Located, order: dict[str, int]) -> None:
    names: set[str] = set()
    for index, fact in enumerate(spec.facts):
        at: Location = ("facts", index)
        if fact.name in names:
            located.add((*at, "name"), f"fact {fact.name!r} is declared twice")
        names.add(fact.name)
        steps = [source.step for source in fact.sources]
        for position, source in enumerate(fact.sources):
            if source.step not in order:
                located.add((*at, "sources", position, "step"), f"unknown step {source.step!r}")
        for position, rule in enumerate(fact.rules):
            if isinstance(rule, PreferStep) and rule.prefer_step not in steps:
                located.add(
                    (*at, "rules", position), f"prefers {rule.prefer_step!r}, not a source of the fact"
                )
        if fact.compare != "number" and any(isinstance(rule, Take) for rule in fact.rules):
            located.add((*at, "rules"), "take: min|max needs compare: number")


def load_workflow_file(path: Path) -> WorkflowSpec:
    return parse_workflow(path.read_text(), str(path), expected_name=path.stem)


def load_workflows(directory: Path) -> dict[str, WorkflowSpec]:
    """Every `*.yaml` workflow of a directory; raises WorkflowError with every problem of every file."""
    workflows: dict[str, WorkflowSpec] = {}
    problems: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            workflows[path.stem] = load_workflow_file(path)
        except WorkflowError as exc:
            problems += exc.problems
    problems += delegation_cycles(workflows)
    if problems:
        raise WorkflowError(problems)
    return workflows


def delegation_cycles(workflows: Mapping[str, WorkflowSpec]) -> list[str]:
    """Workflows that would delegate to themselves through steps whose skill is one of these workflows.

    Across orchestrators the delegation depth carried in each request stops a loop; within one set of
    files the loop is visible before anything runs, so it is refused here.
    """
    calls = {
        name: {skill for step in spec.steps for skill in _skills_of(step) if skill in workflows}
        for name, spec in workflows.items()
    }
    problems = []
    for name in sorted(workflows):
        path = _path_back(name, calls)
        if path:
            problems.append(f"{name}: delegates to itself through {' -> '.join([name, *path])}")
    return problems


def _skills_of(step: StepSpec) -> list[str]:
    return [step.skill] + ([step.critic.skill] if step.critic else [])


def _path_back(start: str, calls: Mapping[str, set[str]]) -> list[str]:
    stack: list[tuple[str, list[str]]] = [(callee, [callee]) for callee in sorted(calls[start])]
    visited: set[str] = set()
    while stack:
        current, path = stack.pop()
        if current == start:
            return path
        if current in visited:
            continue
        visited.add(current)
        stack.extend((callee, [*path, callee]) for callee in sorted(calls.get(current, ())))
    return []
