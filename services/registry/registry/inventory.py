"""The AI inventory entry of a registered agent: who owns it, why it exists, what data it can reach, which
model it runs, how risky it is and when it is reviewed next.

Data access is not declared by the registrant: it is read from the gateway's tool policy
(`deploy/policies/tools.yaml`), as the scopes (`tool:<upstream>.<tool>`, or `tool:<upstream>.*`) that the
agent's policy entry grants. The file is read with the policy schema's shape (version 1, `clients` mapping
client ids to `tools` rules); constraints inside a rule do not change which tools it names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from accord.errors import AccordError

# EU AI Act tiers an operator can register; `unacceptable` systems are prohibited, so never registered.
RISK_CATEGORIES = ("minimal", "limited", "high")
UNASSESSED = "unassessed"  # self-registered agents, until an operator registers them with a category
OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$")
_TEXT_LIMITS = {"purpose": 2000, "model": 200, "model_version": 100}
_TOOL = re.compile(r"^[a-z][a-z0-9-]*\.(\*|[A-Za-z0-9_][A-Za-z0-9_.-]*)$")


@dataclass(frozen=True)
class Inventory:
    owner: str
    policy: str  # the tools.yaml client entry that bounds the agent's tool access
    purpose: str = ""
    model: str = ""
    model_version: str = ""
    risk: str = UNASSESSED
    review_date: date | None = None
    data_access: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "policy": self.policy,
            "purpose": self.purpose,
            "model": self.model,
            "model_version": self.model_version,
            "risk": self.risk,
            "review_date": self.review_date.isoformat() if self.review_date else None,
            "data_access": list(self.data_access),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Inventory:
        review = data.get("review_date")
        return cls(
            owner=str(data["owner"]),
            policy=str(data.get("policy", "")),
            purpose=str(data.get("purpose", "")),
            model=str(data.get("model", "")),
            model_version=str(data.get("model_version", "")),
            risk=str(data.get("risk", UNASSESSED)),
            review_date=date.fromisoformat(review) if review else None,
            data_access=tuple(str(scope) for scope in data.get("data_access", ())),
        )


def requested_inventory(fields: dict[str, Any], today: date) -> Inventory:
    """An operator's registration fields, validated; `data_access` is filled in from the policy later."""
    owner, policy = fields.get("owner"), fields.get("policy")
    if not isinstance(owner, str) or not OWNER.match(owner):
        raise AccordError("invalid_input", "owner must be 1-128 letters, digits or '._@:-'")
    if not isinstance(policy, str) or not policy:
        raise AccordError("invalid_input", "policy must name the agent's client entry in tools.yaml")
    texts: dict[str, str] = {}
    for name, limit in _TEXT_LIMITS.items():
        value = fields.get(name) or ""
        if not isinstance(value, str) or len(value) > limit:
            raise AccordError("invalid_input", f"{name} must be text of at most {limit} characters")
        texts[name] = value.strip()
    risk = fields.get("risk") or "minimal"
    if risk not in RISK_CATEGORIES:
        raise AccordError("invalid_input", f"risk must be one of {list(RISK_CATEGORIES)}")
    return Inventory(
        owner=owner,
        policy=policy,
        purpose=texts["purpose"],
        model=texts["model"],
        model_version=texts["model_version"],
        risk=risk,
        review_date=_review_date(fields, today),
    )


def _review_date(fields: dict[str, Any], today: date) -> date:
    value = fields.get("review_date")
    if value is None or value == "":
        # A yearly review cadence unless the operator sets an earlier (or later) date.
        return replace_year(today, today.year + 1)
    try:
        review = date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        review = None
    if review is None:
        raise AccordError("invalid_input", "review_date must be a date, YYYY-MM-DD")
    if review < today:
        raise AccordError("invalid_input", "review_date is in the past: the agent is overdue for review")
    return review


def replace_year(day: date, year: int) -> date:
    return day.replace(year=year, day=28) if (day.month, day.day) == (2, 29) else day.replace(year=year)


class PolicyScopes:
    """The scopes each client's tool-policy entry grants, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: tuple[float, dict[str, tuple[str, ...]]] | None = None

    def known(self, client_id: str) -> bool:
        return client_id in self._clients()

    def scopes(self, client_id: str) -> tuple[str, ...]:
        return self._clients().get(client_id, ())

    def with_access(self, inventory: Inventory) -> Inventory:
        return replace(inventory, data_access=self.scopes(inventory.policy))

    def _clients(self) -> dict[str, tuple[str, ...]]:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return {}
        if self._cache is None or self._cache[0] != mtime:
            self._cache = (mtime, read_policy_scopes(self.path))
        return self._cache[1]


def read_policy_scopes(path: Path) -> dict[str, tuple[str, ...]]:
    """client id -> granted scopes; a file that does not have the policy's shape grants nothing."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    if not isinstance(document, dict) or document.get("version") != 1:
        return {}
    clients = document.get("clients") or {}
    if not isinstance(clients, dict):
        return {}
    return {str(client): _granted(entry) for client, entry in clients.items()}


def _granted(entry: Any) -> tuple[str, ...]:
    rules = entry.get("tools") if isinstance(entry, dict) else None
    if not isinstance(rules, list):
        return ()
    tools = [rule.get("tool") for rule in rules if isinstance(rule, dict)]
    return tuple(f"tool:{tool}" for tool in tools if isinstance(tool, str) and _TOOL.match(tool))
