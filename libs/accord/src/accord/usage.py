"""Model usage: the tokens a skill spent, by model, as an agent reports it and the orchestrator counts it.

An agent that calls a language model reports each call's tokens (`ToolBox.report_usage`); the agent SDK
sends the step's total with its answer, in the result artifact's metadata (`accord.usage`) or, when the
step failed, next to the error. The orchestrator charges it to the run's budget and prices it.

What arrives from an agent is untrusted data: `Usage.from_json` accepts only a bounded number of
well-named models with whole, non-negative, bounded counts, and refuses anything else as a broken contract.

A step may be given an allowance (`accord.budget.tokens` in its message): the tokens the run has left for
it. `UsageMeter` records every report, and a report that takes the step past its allowance fails the step
with `budget_exceeded`: the work is done (the tokens are spent, and counted) but nothing more of it is used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from accord.errors import AccordError

USAGE_METADATA_KEY = "accord.usage"
MAX_MODELS = 16
# Far above any one step's real usage; a larger count is an agent's bug or a lie.
MAX_TOKENS = 10**9
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")


@dataclass(frozen=True)
class ModelUsage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens

    def plus(self, other: ModelUsage) -> ModelUsage:
        return ModelUsage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)


@dataclass(frozen=True)
class Usage:
    """Tokens by model (empty: no model was used)."""

    by_model: Mapping[str, ModelUsage] = field(default_factory=dict)

    @property
    def input_tokens(self) -> int:
        return sum(u.input_tokens for u in self.by_model.values())

    @property
    def output_tokens(self) -> int:
        return sum(u.output_tokens for u in self.by_model.values())

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def plus(self, other: Usage) -> Usage:
        merged = dict(self.by_model)
        for model, usage in other.by_model.items():
            merged[model] = merged.get(model, ModelUsage()).plus(usage)
        return Usage(merged)

    def to_json(self) -> dict[str, Any]:
        return {
            "models": {
                model: {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens}
                for model, u in sorted(self.by_model.items())
            }
        }

    @classmethod
    def from_record(cls, models: Mapping[str, Mapping[str, Any]] | None) -> Usage:
        """Usage as a run record keeps it (`models`, written by the orchestrator from checked reports, so
        read without the checks a report gets)."""
        return cls(
            {
                model: ModelUsage(int(counts.get("input_tokens", 0)), int(counts.get("output_tokens", 0)))
                for model, counts in (models or {}).items()
            }
        )

    @classmethod
    def from_json(cls, value: object) -> Usage:
        """An agent's report, checked; `AccordError("contract_violation")` when it is malformed."""
        if not isinstance(value, Mapping) or set(value) != {"models"}:
            raise _broken("usage must be an object with only `models`")
        models = value["models"]
        if not isinstance(models, Mapping) or len(models) > MAX_MODELS:
            raise _broken(f"usage.models must be an object of at most {MAX_MODELS} models")
        by_model: dict[str, ModelUsage] = {}
        for model, counts in models.items():
            if not isinstance(model, str) or not _MODEL_NAME.match(model):
                raise _broken("usage names a model with an invalid name")
            if not isinstance(counts, Mapping) or not set(counts) <= {"input_tokens", "output_tokens"}:
                raise _broken("usage per model is {input_tokens, output_tokens}")
            by_model[model] = ModelUsage(
                _count(counts.get("input_tokens", 0)), _count(counts.get("output_tokens", 0))
            )
        return cls(by_model)


def _count(value: object) -> int:
    # JSON numbers cross protobuf Struct as doubles: a whole one is a count.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        raise _broken(f"token counts are whole numbers from 0 to {MAX_TOKENS}")
    return value


def _broken(detail: str) -> AccordError:
    return AccordError("contract_violation", detail)


class UsageMeter:
    """One step's usage as its skill reports it, held to the step's allowance of tokens (None: none set)."""

    def __init__(self, allowance: int | None = None) -> None:
        self.allowance = allowance
        self._usage = Usage()

    @property
    def usage(self) -> Usage:
        return self._usage

    @property
    def tokens_left(self) -> int | None:
        """What the step may still spend (cap a model call's `max_tokens` with it); None: no limit."""
        if self.allowance is None:
            return None
        return max(0, self.allowance - self._usage.total_tokens)

    def record(self, model: str, input_tokens: int, output_tokens: int) -> None:
        """Count one model call; `budget_exceeded` once the step has spent more than its allowance."""
        reported = Usage.from_json(
            {"models": {model: {"input_tokens": input_tokens, "output_tokens": output_tokens}}}
        )
        self._usage = self._usage.plus(reported)
        if self.allowance is not None and self._usage.total_tokens > self.allowance:
            raise AccordError(
                "budget_exceeded",
                f"the step spent {self._usage.total_tokens} tokens of its allowance of {self.allowance}",
                limit="tokens",
            )


def allowance_from_budget(budget: object) -> int | None:
    """The step's token allowance from its message's `accord.budget` (None when it sets none or is bad:
    the orchestrator enforces the run's budget either way)."""
    if not isinstance(budget, Mapping):
        return None
    tokens = budget.get("tokens")
    if isinstance(tokens, float) and tokens.is_integer():
        tokens = int(tokens)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        return None
    return tokens
