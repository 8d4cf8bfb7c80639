"""The delegation policy (`deploy/policies/delegation.yaml`): which client may call which agent's skills
through the relay.

```yaml
version: 1
callers:
  orchestrator:                        # a client_id of this gateway's authorization server
    agents:
      sanctions-agent: [sanctions-screening]
      ledger-agent: ["*"]              # every skill the agent's card offers
```

Deny by default: a caller or agent not named here, or a skill not listed, is refused (`policy_denied`)
before the agent is contacted. Task reads (get, cancel, subscribe, list) need the caller to be allowed at
least one skill of that agent. Checked like the tool policy (`accord policy check`) and reloaded when the
file changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from gateway.policy.document import CLIENT_ID, PolicyError, parse_document, read_policy_text

KIND = "delegation policy"
ANY_SKILL = "*"
AGENT_NAME = r"^[a-z][a-z0-9-]{0,63}$"
SKILL_ID = r"^(\*|[a-z0-9][a-z0-9-]{0,63})$"

ClientId = Annotated[str, Field(pattern=CLIENT_ID)]
AgentName = Annotated[str, Field(pattern=AGENT_NAME)]
SkillId = Annotated[str, Field(pattern=SKILL_ID)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _skills_listed_once(skills: list[str]) -> list[str]:
    if not skills:
        raise ValueError("list at least one skill (or remove the agent)")
    if len(set(skills)) != len(skills):
        raise ValueError("a skill is listed more than once")
    if ANY_SKILL in skills and len(skills) > 1:
        raise ValueError("'*' already allows every skill; list nothing beside it")
    return skills


SkillList = Annotated[list[SkillId], AfterValidator(_skills_listed_once)]


class CallerRules(_Strict):
    agents: dict[AgentName, SkillList] = Field(default_factory=dict)


class DelegationDocument(_Strict):
    version: Literal[1]
    callers: dict[ClientId, CallerRules] = Field(default_factory=dict)


@dataclass(frozen=True)
class DelegationVerdict:
    allowed: bool
    rule: str | None = None
    detail: str | None = None


class DelegationPolicy:
    """One loaded delegation document; immutable, so a reload swaps the whole object."""

    def __init__(self, document: DelegationDocument, digest: str, source: str) -> None:
        self.document = document
        self.digest = digest
        self.source = source
        self._rules: Mapping[str, Mapping[str, frozenset[str]]] = {
            caller: {agent: frozenset(skills) for agent, skills in rules.agents.items()}
            for caller, rules in document.callers.items()
        }

    def decide(self, caller: str, agent: str, skill: str | None) -> DelegationVerdict:
        """May `caller` send `agent` a message for `skill` (None: read or cancel that agent's tasks)?"""
        skills = self._rules.get(caller, {}).get(agent)
        if skills is None:
            return DelegationVerdict(False, None, f"the delegation policy does not let {caller} call {agent}")
        rule = f"{caller}:{agent}"
        if skill is None or ANY_SKILL in skills or skill in skills:
            return DelegationVerdict(True, rule)
        return DelegationVerdict(
            False, rule, f"the delegation policy does not let {caller} ask {agent} for {skill}"
        )


def parse_delegation(text: str, source: str) -> DelegationPolicy:
    document, digest = parse_document(text, source, DelegationDocument, KIND, "'version' and 'callers'")
    return DelegationPolicy(document, digest, source)


def load_delegation(path: Path) -> DelegationPolicy:
    """The policy in `path`; `PolicyError` (every problem with its line) when it is invalid."""
    return parse_delegation(read_policy_text(path, KIND), str(path))


__all__ = ["DelegationPolicy", "DelegationVerdict", "PolicyError", "load_delegation", "parse_delegation"]
