"""The network-diagnosis skill: what is wrong with a customer's connection and what to do about it.

In order of precedence: a suspended account (no network fault at all: hand it to billing), an open incident
in the customer's region (link the ticket to it; home equipment is not the cause), then the devices' own
diagnostics (offline, lossy, old firmware, repeated reboots). With nothing found it asks the customer for
details at a low confidence.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from pydantic import BaseModel, Field

from accord import support_desk
from accord.agent import Agent, ToolBox
from accord.errors import AccordError
from accord.support_desk import ResolutionInput, Ticket, check_ticket_owner

LOSSY_PACKET_LOSS = 0.03
LOSSY_LATENCY_MS = 100
# After this many reboots in a week another remote reboot will not help: send an engineer.
REBOOT_LIMIT = 3
ESCALATING_SEVERITY = "critical"
PRIORITY_PLANS = frozenset({"business"})

agent = Agent("network-agent")


class Action(BaseModel):
    type: str = Field(description="What to do, e.g. link_incident, remote_reboot, dispatch_technician")
    detail: str


class ResolutionOutput(support_desk.ResolutionOutput[Action]):
    pass  # a named subclass, so the published schema keeps its plain title (not "Model[Param]")


class Customer(BaseModel):
    customer_id: str
    found: bool
    plan: str | None = None
    region: str | None = None
    status: str | None = None


class Incident(BaseModel):
    incident_id: str
    severity: str
    status: str
    started: dt.datetime
    summary: str


class RegionStatus(support_desk.RegionStatus[Incident]):
    pass  # a named subclass, so the published schema keeps its plain title (not "Model[Param]")


class Device(BaseModel):
    device_id: str
    model: str
    online: bool
    firmware: str
    latest_firmware: str
    packet_loss: float = Field(ge=0, le=1)
    latency_ms: int = Field(ge=0)
    reboots_7d: int = Field(ge=0)


class DeviceReport(support_desk.DeviceReport[Device]):
    pass  # a named subclass, so the published schema keeps its plain title (not "Model[Param]")


@agent.skill(
    "network-diagnosis",
    tools=[
        "support.get_ticket",
        "support.get_customer",
        "support.network_status",
        "support.device_diagnostics",
    ],
)
async def network_diagnosis(request: ResolutionInput, tools: ToolBox) -> ResolutionOutput:
    customer = await customer_of_ticket(tools, request)
    region, devices = await asyncio.gather(
        tools.call("support.network_status", {"region": customer.region}),
        tools.call("support.device_diagnostics", {"customer_id": customer.customer_id}),
    )
    return diagnose(
        request.ticket_id,
        customer,
        RegionStatus.model_validate(region),
        DeviceReport.model_validate(devices),
    )


async def customer_of_ticket(tools: ToolBox, request: ResolutionInput) -> Customer:
    """The ticket's customer; refuses a ticket that is not this customer's (a mis-routed step)."""
    ticket, raw_customer = await asyncio.gather(
        tools.call("support.get_ticket", {"ticket_id": request.ticket_id}),
        tools.call("support.get_customer", {"customer_id": request.customer_id}),
    )
    found = Ticket.model_validate(ticket)
    customer = Customer.model_validate(raw_customer)
    check_ticket_owner(found, request)
    if not customer.found or customer.region is None:
        raise AccordError("not_found", f"customer {request.customer_id} has no record")
    return customer


def diagnose(
    ticket_id: str, customer: Customer, region: RegionStatus, devices: DeviceReport
) -> ResolutionOutput:
    if customer.status == "suspended":
        return ResolutionOutput(
            ticket_id=ticket_id,
            resolution="The account is suspended, so service is blocked on purpose: not a network fault.",
            actions=[Action(type="reroute", detail="billing: suspended account")],
            escalate=False,
            confidence=0.85,
        )
    open_incidents = [i for i in region.incidents if i.status == "open"]
    if open_incidents:
        return regional_incident(ticket_id, customer, region, open_incidents)
    actions = [action for device in devices.devices for action in device_actions(device)]
    if actions:
        escalate = any(a.type == "dispatch_technician" for a in actions)
        kinds = sorted({a.type for a in actions})
        return ResolutionOutput(
            ticket_id=ticket_id,
            resolution=f"No regional incident in {region.region}; the customer's equipment needs: "
            f"{', '.join(kinds)}.",
            actions=actions,
            escalate=escalate,
            confidence=0.85 if len(kinds) == 1 else 0.8,
        )
    return ResolutionOutput(
        ticket_id=ticket_id,
        resolution=f"No fault found: region {region.region} is {region.status or 'unknown'} and every device "
        "is online with a clean line.",
        actions=[Action(type="request_info", detail="ask for a speed test and the times the problem occurs")],
        escalate=False,
        confidence=0.45,
    )


def regional_incident(
    ticket_id: str, customer: Customer, region: RegionStatus, incidents: list[Incident]
) -> ResolutionOutput:
    worst = max(incidents, key=lambda i: ("minor", "major", "critical").index(i.severity))
    actions = [Action(type="link_incident", detail=i.incident_id) for i in incidents]
    actions.append(Action(type="notify_customer", detail=f"{worst.incident_id}: {worst.summary}"))
    # A critical incident on a business line gets a person asking for priority restoration.
    escalate = worst.severity == ESCALATING_SEVERITY and customer.plan in PRIORITY_PLANS
    if escalate:
        actions.append(Action(type="priority_restoration", detail=f"business line in {region.region}"))
    return ResolutionOutput(
        ticket_id=ticket_id,
        resolution=f"Open {worst.severity} incident {worst.incident_id} in {region.region} "
        f"({region.status}) explains the fault; no home equipment fault to fix.",
        actions=actions,
        escalate=escalate,
        confidence=0.9,
    )


def device_actions(device: Device) -> list[Action]:
    actions: list[Action] = []
    if not device.online:
        if device.reboots_7d >= REBOOT_LIMIT:
            detail = f"{device.device_id} offline after {device.reboots_7d} reboots in 7 days"
            actions.append(Action(type="dispatch_technician", detail=detail))
        else:
            actions.append(
                Action(type="remote_reboot", detail=f"{device.device_id} ({device.model}) offline")
            )
    if device.firmware != device.latest_firmware:
        actions.append(
            Action(
                type="push_firmware",
                detail=f"{device.device_id}: {device.firmware} -> {device.latest_firmware}",
            )
        )
    if device.online and (device.packet_loss >= LOSSY_PACKET_LOSS or device.latency_ms >= LOSSY_LATENCY_MS):
        detail = f"{device.device_id}: {device.packet_loss:.0%} packet loss, {device.latency_ms} ms"
        actions.append(Action(type="line_test", detail=detail))
    return actions


def main() -> None:
    agent.run()
