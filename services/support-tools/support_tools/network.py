"""Regional network status with its incidents, and the diagnostics customers' devices report.

Loaded from `support/network.json`; "recent" is measured from the file's `as_of`, never from the wall clock,
so answers do not drift as the data set ages.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

RegionState = Literal["operational", "degraded", "outage"]


class Incident(BaseModel):
    incident_id: str
    severity: Literal["minor", "major", "critical"]
    status: Literal["open", "resolved"]
    started: dt.datetime
    resolved: dt.datetime | None = None
    services: list[str]
    summary: str


class Region(BaseModel):
    region: str
    status: RegionState
    incidents: list[Incident] = Field(default_factory=list)


class Device(BaseModel):
    device_id: str
    model: str
    online: bool
    last_seen: dt.datetime
    firmware: str
    latest_firmware: str
    packet_loss: float = Field(ge=0, le=1, description="Share of probe packets lost in the last hour")
    latency_ms: int = Field(ge=0, description="Median round trip to the exchange in the last hour")
    reboots_7d: int = Field(ge=0)


class _CustomerDevices(BaseModel):
    customer_id: str
    devices: list[Device]


class Network:
    """Regions by name and devices by customer, as of the data set's reference time."""

    def __init__(self, as_of: dt.datetime, regions: list[Region], devices: list[_CustomerDevices]) -> None:
        self.as_of = as_of
        self._regions = {r.region: r for r in regions}
        self._devices = {d.customer_id: d.devices for d in devices}

    @classmethod
    def load(cls, path: Path) -> Network:
        document = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            dt.datetime.fromisoformat(document["as_of"]),
            [Region.model_validate(item) for item in document["regions"]],
            [_CustomerDevices.model_validate(item) for item in document["devices"]],
        )

    def region(self, name: str) -> Region | None:
        return self._regions.get(name.casefold())

    def recent_incidents(self, region: Region, days: int) -> list[Incident]:
        """Open incidents, and those resolved within `days` of the reference time; newest first."""
        since = self.as_of - dt.timedelta(days=days)
        chosen = [i for i in region.incidents if i.resolved is None or i.resolved >= since]
        return sorted(chosen, key=lambda i: i.started, reverse=True)

    def devices(self, customer_id: str) -> list[Device] | None:
        return self._devices.get(customer_id)
