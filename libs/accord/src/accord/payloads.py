"""JSON payloads carried in A2A messages and artifacts as data parts.

Protobuf `Struct` holds every number as a double; contracts are validated after decoding, where integral
floats are accepted as integers (JSON Schema treats 1.0 as an integer too).
"""

from __future__ import annotations

import uuid
from typing import Any

from a2a.types import Artifact, Message, Part, Role, Task
from google.protobuf import json_format, struct_pb2

from accord import delegation

SKILL_METADATA_KEY = "accord.skill"
# The task grant (a JWT) for the step's tools. The gateway relay puts it there before it signs the message,
# so the grant travels inside the signed envelope.
GRANT_METADATA_KEY = "accord.grant"
# Which run (`wf`) and step (`task`) a message belongs to, and the step's deadline (unix seconds): the relay
# binds the grant and the signature to them.
WF_METADATA_KEY = "accord.wf"
TASK_METADATA_KEY = "accord.task"
DEADLINE_METADATA_KEY = "accord.deadline"
# On a relayed reply: the grant the step ran under (ids and scopes, never the grant itself), signed with it.
GRANT_RECORD_METADATA_KEY = "accord.grant_record"
# A stable key per dispatch attempt (run, step, try): a message delivered again with the same key (a
# resumed orchestrator re-sending an in-flight step) attaches to the first delivery's task outcome at the
# agent instead of running the skill again.
IDEMPOTENCY_METADATA_KEY = "accord.idempotency_key"
# The run's budget as the step's receivers must know it: {"tool_calls": N}, the run's limit on tool calls,
# which the relay writes into each step's task grant for the gateway to enforce; {"tokens": N}, the tokens
# the step may spend, which the agent SDK holds its model usage to (`accord.usage`); {"depth": N}, how deep
# the run's delegations may go, which an orchestrator serving the step holds its own run to.
BUDGET_METADATA_KEY = "accord.budget"
MAX_IDEMPOTENCY_KEY_CHARS = 256
# The artifact that holds a skill's output.
RESULT_ARTIFACT = "result"


def data_part(data: dict[str, Any]) -> Part:
    part = Part(media_type="application/json")
    part.data.CopyFrom(json_format.ParseDict(data, struct_pb2.Value()))
    return part


def to_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    return json_format.ParseDict(data, struct_pb2.Struct())


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    return _integral(json_format.MessageToDict(struct))  # type: ignore[no-any-return]


def _integral(value: Any) -> Any:
    """Undo protobuf's int->double widening for integral values."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def first_data(parts: Any) -> dict[str, Any] | None:
    """The first data part whose value is a JSON object."""
    for part in parts:
        if part.WhichOneof("content") == "data":
            value = _integral(json_format.MessageToDict(part.data))
            if isinstance(value, dict):
                return value
    return None


def skill_request(
    skill: str,
    data: dict[str, Any],
    context_id: str | None = None,
    grant: str | None = None,
    *,
    wf: str | None = None,
    task: str | None = None,
    deadline: float | None = None,
    idempotency_key: str | None = None,
    tool_call_limit: int | None = None,
    token_allowance: int | None = None,
    depth_limit: int | None = None,
) -> Message:
    """A user message that asks an agent to run one skill on one JSON input, with the step's task grant
    (or, through the relay, the run, step and deadline the relay issues that grant for)."""
    metadata: dict[str, Any] = {SKILL_METADATA_KEY: skill}
    if grant:
        metadata[GRANT_METADATA_KEY] = grant
    for key, value in (
        (WF_METADATA_KEY, wf),
        (TASK_METADATA_KEY, task),
        (DEADLINE_METADATA_KEY, deadline),
        (IDEMPOTENCY_METADATA_KEY, idempotency_key),
        (BUDGET_METADATA_KEY, _budget(tool_call_limit, token_allowance, depth_limit)),
    ):
        if value is not None:
            metadata[key] = value
    delegation.inject(metadata)
    message = Message(
        role=Role.ROLE_USER,
        message_id=str(uuid.uuid4()),
        parts=[data_part(data)],
        metadata=to_struct(metadata),
    )
    if context_id:
        message.context_id = context_id
    return message


def _budget(
    tool_call_limit: int | None, token_allowance: int | None, depth_limit: int | None
) -> dict[str, int] | None:
    members = {"tool_calls": tool_call_limit, "tokens": token_allowance, "depth": depth_limit}
    budget = {name: value for name, value in members.items() if value is not None}
    return budget or None


def metadata_of(obj: Any) -> dict[str, Any]:
    """The metadata of a message, task or streaming event as JSON (empty when it has none)."""
    return from_struct(obj.metadata) if obj.HasField("metadata") else {}


def requested_skill(message: Message) -> str | None:
    value = metadata_of(message).get(SKILL_METADATA_KEY)
    return value if isinstance(value, str) else None


def message_grant(message: Message) -> str | None:
    """The task grant a message carries, if any."""
    if not message.HasField("metadata"):
        return None
    value = from_struct(message.metadata).get(GRANT_METADATA_KEY)
    return value if isinstance(value, str) and value else None


def message_idempotency_key(message: Message) -> str | None:
    """The idempotency key a message carries, if any (a non-empty string within the length limit)."""
    if not message.HasField("metadata"):
        return None
    value = from_struct(message.metadata).get(IDEMPOTENCY_METADATA_KEY)
    if isinstance(value, str) and 0 < len(value) <= MAX_IDEMPOTENCY_KEY_CHARS:
        return value
    return None


def artifact_data(artifact: Artifact) -> dict[str, Any] | None:
    return first_data(artifact.parts)


def task_result(task: Task, name: str = RESULT_ARTIFACT) -> dict[str, Any] | None:
    """The JSON object of the task's named artifact (the agent's output)."""
    for artifact in task.artifacts:
        if artifact.name == name:
            return artifact_data(artifact)
    return None
