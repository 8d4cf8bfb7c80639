"""The shared async client of the registry's REST API.

Error responses become `AccordError`s with the registry's reason code, so callers branch on reasons, not
on HTTP statuses. Operators pass `admin_secret` (the registry's `ACCORD_REGISTRY_ADMIN_SECRET`) to
register agents with their AI inventory entry and to remove them; reads need no credential.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from a2a.types import AgentCard

from accord.cards import card_from_dict
from accord.errors import ERROR_TABLE, AccordError


@dataclass(frozen=True)
class InventoryEntry:
    """An agent's AI inventory entry: what an operator registers (data access is read from the policy)."""

    owner: str
    policy: str
    purpose: str = ""
    model: str = ""
    model_version: str = ""
    risk: str = ""
    review_date: str = ""  # YYYY-MM-DD
    data_access: tuple[str, ...] = field(default=())

    def request_fields(self) -> dict[str, str]:
        """The registration body's inventory fields (data access is the registry's to fill in)."""
        values = asdict(self)
        values.pop("data_access")
        return {key: value for key, value in values.items() if value}

    @classmethod
    def from_json(cls, data: Any) -> InventoryEntry | None:
        if not isinstance(data, dict):
            return None
        return cls(
            owner=str(data.get("owner", "")),
            policy=str(data.get("policy", "")),
            purpose=str(data.get("purpose") or ""),
            model=str(data.get("model") or ""),
            model_version=str(data.get("model_version") or ""),
            risk=str(data.get("risk") or ""),
            review_date=str(data.get("review_date") or ""),
            data_access=tuple(str(scope) for scope in data.get("data_access") or ()),
        )


@dataclass(frozen=True)
class RegisteredAgent:
    """One agent as the registry knows it; `card` is its current A2A Agent Card."""

    name: str
    card_url: str
    card: AgentCard
    status: str
    skills: tuple[str, ...]
    tags: tuple[str, ...] = ()
    inventory: InventoryEntry | None = None

    @property
    def owner(self) -> str:
        return self.inventory.owner if self.inventory else ""

    @classmethod
    def from_json(cls, data: Any) -> RegisteredAgent:
        try:
            return cls(
                name=str(data["name"]),
                card_url=str(data["card_url"]),
                card=card_from_dict(dict(data["card"])),
                status=str(data["status"]),
                skills=tuple(str(skill) for skill in data["skills"]),
                tags=tuple(str(tag) for tag in data.get("tags", ())),
                inventory=InventoryEntry.from_json(data.get("inventory")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise AccordError("contract_violation", "registry answered an unexpected agent body") from exc


class RegistryClient:
    """Async client of one registry (`base_url` such as `http://127.0.0.1:8701`)."""

    def __init__(self, base_url: str, timeout: float = 5.0, admin_secret: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {admin_secret}"} if admin_secret else None
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, headers=headers)

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def register(self, card_url: str, inventory: InventoryEntry | None = None) -> RegisteredAgent:
        """Register (or refresh) the agent whose card is at `card_url`; with `inventory` (operators
        only), record or replace its AI inventory entry."""
        body = {"card_url": card_url, **(inventory.request_fields() if inventory else {})}
        return RegisteredAgent.from_json(await self._call("POST", "/v1/agents", json=body))

    async def discover(self, skill: str | None = None, tag: str | None = None) -> list[RegisteredAgent]:
        """Active agents offering `skill` and/or a skill tagged `tag`."""
        params = {key: value for key, value in (("skill", skill), ("tag", tag)) if value}
        return _agents(await self._call("GET", "/v1/discover", params=params))

    async def get(self, name: str) -> RegisteredAgent:
        return RegisteredAgent.from_json(await self._call("GET", f"/v1/agents/{_segment(name)}"))

    async def list(self) -> list[RegisteredAgent]:
        return _agents(await self._call("GET", "/v1/agents"))

    async def remove(self, name: str) -> None:
        await self._call("DELETE", f"/v1/agents/{_segment(name)}")

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise AccordError("timeout", "registry did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise AccordError("upstream_unavailable", "registry is unreachable") from exc
        if response.status_code >= 400:
            raise _error_from(response)
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise AccordError("contract_violation", "registry answered a non-JSON body") from exc


def _agents(body: Any) -> list[RegisteredAgent]:
    if not isinstance(body, dict) or not isinstance(body.get("agents"), list):
        raise AccordError("contract_violation", "registry answered an unexpected list body")
    return [RegisteredAgent.from_json(item) for item in body["agents"]]


# When something other than the registry answers (a proxy, a wrong URL), the status is all there is.
_REASON_BY_STATUS = {
    404: "not_found",
    502: "upstream_unavailable",
    503: "upstream_unavailable",
    504: "timeout",
}


def _error_from(response: httpx.Response) -> AccordError:
    """The registry's own error, or one derived from the status when the body is not an Accord error."""
    try:
        error = response.json()["error"]
        reason, message = str(error["reason"]), str(error.get("message") or "")
    except (ValueError, KeyError, TypeError):
        reason = _REASON_BY_STATUS.get(response.status_code, "internal_error")
        return AccordError(reason, f"registry answered HTTP {response.status_code}")
    if reason not in ERROR_TABLE:
        return AccordError("internal_error", message or None)
    return AccordError(reason, message or None)


def _segment(name: str) -> str:
    return quote(name, safe="")
