"""A run's budget: what it may spend, what it has spent, and the stop when a limit is reached.

Limits come from the workflow (`budget:`) and may be tightened, never loosened, per request: the REST
header `Accord-Budget: tasks=50, tool_calls=100, wall_s=30, tokens=20000, cost=0.5, depth=1` or, on A2A,
the message metadata `accord.budget` (`{"tasks": 50, "wall_s": 30}`).

* Agent tasks are reserved before each dispatch (every try counts; a try a restarted orchestrator resumes
  was counted when it was first sent), so a fan-out asking for 1,000 tasks under a budget of 50 sends at
  most 50.
* Wall time runs from the run's creation.
* Tool calls are counted where they happen, at the gateway: every step message carries the run's limit
  (`accord.budget`), the relay writes it into the step's task grant, and the gateway refuses the run's
  tool calls beyond it (`budget_exceeded`), whatever an agent does between two checks of the orchestrator.

* Model tokens and their cost are reported by the agents with each answer (`accord.usage`) and priced here
  (`orchestrator.prices`). Before a step is sent it reserves its share of the tokens left: what nobody has
  reserved, split evenly among the steps still to be sent; the agent SDK holds the step to that allowance
  (`accord.budget.tokens`). What an answer reports replaces the reservation (a try that timed out keeps
  it: its agent may have spent it); a step that needs more than its share fails, and an answer that takes
  the run past its tokens or cost stops the run at once.
* Delegation depth: a request deeper than the run's `depth` is refused before the run exists, and every
  step carries the limit on, so another orchestrator's run for a step is held to it too.

When a limit is reached no new work starts, the steps under way are cancelled, and
the run ends `budget_exceeded` with what it spent. What was spent is part of the run's checkpoint, so a
resumed run keeps counting where it stopped.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from accord.errors import AccordError
from accord.usage import Usage
from orchestrator.workflows import BudgetSpec

BUDGET_HEADER = "accord-budget"
_MEMBER = re.compile(r"^\s*([a-z_]+)\s*=\s*([0-9]+(?:\.[0-9]+)?)\s*$")
_MAX_HEADER = 256
_COUNTS = frozenset({"tasks", "tool_calls", "tokens", "depth"})
_WALL_MARGIN_S = 0.25


class BudgetExceeded(AccordError):
    """A limit of the run's budget is reached (`limit` names it)."""

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__("budget_exceeded", detail, limit=limit)
        self.limit = limit


def budget_from_header(value: str | None) -> BudgetSpec | None:
    """`tasks=50, wall_s=30` (a structured-field dictionary of numbers); None without the header."""
    if value is None:
        return None
    if len(value) > _MAX_HEADER:
        raise AccordError("invalid_input", "the Accord-Budget header is too long")
    members: dict[str, float] = {}
    for item in value.split(","):
        match = _MEMBER.match(item)
        if match is None:
            raise AccordError("invalid_input", "Accord-Budget is a list of name=number (tasks=50, wall_s=30)")
        members[match.group(1)] = float(match.group(2))
    return budget_from_object(members)


def budget_from_object(value: object) -> BudgetSpec | None:
    """A request's budget as an object (A2A metadata); None when it names none."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise AccordError("invalid_input", "the budget must be an object of limits")
    # Counts cross protobuf Struct (A2A metadata) and the header as doubles: a whole one is a count.
    value = {
        k: int(v) if k in _COUNTS and isinstance(v, float) and v.is_integer() else v for k, v in value.items()
    }
    try:
        return BudgetSpec.model_validate(value)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise AccordError("invalid_input", f"invalid budget: {problems}") from None


@dataclass
class RunBudget:
    """The limits of one run and what it has spent of them."""

    limits: BudgetSpec
    started_at: float
    tasks: int = 0
    exceeded: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    # Tokens held for steps sent and not yet answered, by their dispatch key.
    reserved: dict[str, int] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def reserve_task(self) -> None:
        """Count one more agent task, or raise `BudgetExceeded` when that would pass the limit."""
        limit = self.limits.tasks
        if limit is not None and self.tasks >= limit:
            raise self.trip("tasks", f"the run's budget of {limit} agent tasks is spent")
        self.check_wall()
        self.check_spend()
        self.tasks += 1

    def check_spend(self) -> None:
        """Raise `BudgetExceeded` when the run's tokens or cost are spent."""
        tokens, cost = self.limits.tokens, self.limits.cost
        if tokens is not None and self.tokens >= tokens:
            raise self.trip("tokens", f"the run's budget of {tokens} tokens is spent ({self.tokens} used)")
        if cost is not None and self.cost >= cost:
            raise self.trip("cost", f"the run's budget of ${cost:g} is spent (${self.cost:g} used)")

    def reserve_tokens(self, key: str, steps_to_send: int) -> int | None:
        """Hold the allowance of the step sent under `key`: an even share, among `steps_to_send` (this one
        included), of the tokens nobody has spent or reserved; None when the run has no token limit."""
        if self.limits.tokens is None:
            return None
        self.reserved.pop(key, None)
        free = max(0, self.limits.tokens - self.tokens - sum(self.reserved.values()))
        allowance = free // max(1, steps_to_send)
        self.reserved[key] = allowance
        return allowance

    def charge(self, key: str, usage: Usage, cost: float) -> None:
        """Replace the step's reservation with what it reports it spent; `BudgetExceeded` when that takes
        the run past its tokens or cost (the step's work is kept, no new work starts)."""
        self.reserved.pop(key, None)
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cost = round(self.cost + cost, 6)
        tokens, limit = self.limits.tokens, self.limits.cost
        if tokens is not None and self.tokens > tokens:
            raise self.trip("tokens", f"the run spent {self.tokens} tokens of its budget of {tokens}")
        if limit is not None and self.cost > limit:
            raise self.trip("cost", f"the run spent ${self.cost:g} of its budget of ${limit:g}")

    def release(self, key: str) -> None:
        """A step that ended without reporting usage gives its reservation back."""
        self.reserved.pop(key, None)

    def spent_out(self) -> bool:
        """True once a limit has stopped the run, or its wall time is over (the stop is on its way: the
        loop's timer and this clock may differ by a little, hence the margin)."""
        left = self.wall_left()
        return self.exceeded is not None or (left is not None and left <= _WALL_MARGIN_S)

    def check_wall(self) -> None:
        left = self.wall_left()
        if left is not None and left <= 0:
            raise self.trip("wall_s", f"the run's budget of {self.limits.wall_s:g}s of wall time is spent")

    def wall_left(self) -> float | None:
        if self.limits.wall_s is None:
            return None
        return self.started_at + self.limits.wall_s - time.time()

    def trip(self, limit: str, detail: str) -> BudgetExceeded:
        self.exceeded = self.exceeded or limit
        return BudgetExceeded(limit, detail)

    def record(self) -> dict[str, Any]:
        """The run record's `budget`: limits, what was spent, which limit stopped the run."""
        wall = time.time() - self.started_at
        return {
            "limits": self.limits.limits(),
            "spent": {
                "tasks": self.tasks,
                "wall_s": round(wall, 3),
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "tokens": self.tokens,
                "cost": self.cost,
            },
            "exceeded": self.exceeded,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any] | None, started_at: float) -> RunBudget:
        record = record or {}
        limits = BudgetSpec.model_validate(record.get("limits") or {})
        spent = record.get("spent") or {}
        return cls(
            limits,
            started_at,
            int(spent.get("tasks") or 0),
            record.get("exceeded"),
            int(spent.get("input_tokens") or 0),
            int(spent.get("output_tokens") or 0),
            float(spent.get("cost") or 0.0),
        )
