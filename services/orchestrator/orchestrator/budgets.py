"""A run's budget: what it may spend, what it has spent, and the stop when a limit is reached.

Limits come from the workflow (`budget:`) and may be tightened, never loosened, per request: the REST
header `Accord-Budget: tasks=50, tool_calls=100, wall_s=30` or, on A2A, the message metadata
`accord.budget` (`{"tasks": 50, "wall_s": 30}`).

* Agent tasks are reserved before each dispatch (every try counts; a try a restarted orchestrator resumes
  was counted when it was first sent), so a fan-out asking for 1,000 tasks under a budget of 50 sends at
  most 50.
* Wall time runs from the run's creation.
* Tool calls are counted where they happen, at the gateway: every step message carries the run's limit
  (`accord.budget`), the relay writes it into the step's task grant, and the gateway refuses the run's
  tool calls beyond it (`budget_exceeded`), whatever an agent does between two checks of the orchestrator.

When the tasks or wall-time limit is reached no new work starts, the steps under way are cancelled, and
the run ends `budget_exceeded` with what it spent. What was spent is part of the run's checkpoint, so a
resumed run keeps counting where it stopped.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from accord.errors import AccordError
from orchestrator.workflows import BudgetSpec

BUDGET_HEADER = "accord-budget"
_MEMBER = re.compile(r"^\s*([a-z_]+)\s*=\s*([0-9]+(?:\.[0-9]+)?)\s*$")
_MAX_HEADER = 256


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
    if "tasks" in value and isinstance(value["tasks"], float) and value["tasks"].is_integer():
        value = {**value, "tasks": int(value["tasks"])}
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

    def reserve_task(self) -> None:
        """Count one more agent task, or raise `BudgetExceeded` when that would pass the limit."""
        limit = self.limits.tasks
        if limit is not None and self.tasks >= limit:
            raise self.trip("tasks", f"the run's budget of {limit} agent tasks is spent")
        self.check_wall()
        self.tasks += 1

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
            "spent": {"tasks": self.tasks, "wall_s": round(wall, 3)},
            "exceeded": self.exceeded,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any] | None, started_at: float) -> RunBudget:
        record = record or {}
        limits = BudgetSpec.model_validate(record.get("limits") or {})
        spent = int((record.get("spent") or {}).get("tasks") or 0)
        return cls(limits, started_at, spent, record.get("exceeded"))
