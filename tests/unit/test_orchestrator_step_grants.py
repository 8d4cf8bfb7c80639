"""The orchestrator's side of the relay, without a mesh: its settings, how a relayed reply stream becomes
the step's task, and how a refused relayed call becomes a reason code."""

from __future__ import annotations

import pytest
from a2a.client import A2AClientError, A2AClientTimeoutError
from a2a.types import Artifact, Task, TaskArtifactUpdateEvent, TaskState, TaskStatus, TaskStatusUpdateEvent
from a2a.utils.errors import InternalError
from pydantic import ValidationError

from accord.a2a_errors import a2a_refusal
from accord.errors import AccordError
from accord.payloads import GRANT_RECORD_METADATA_KEY, data_part, task_result, to_struct
from orchestrator.dispatch import TaskAssembly
from orchestrator.relay_link import relay_failure
from orchestrator.settings import OrchestratorSettings

BASE = {"port": 18702, "grpc_port": 18802, "registry_url": "http://127.0.0.1:18701"}


def test_orchestrator_gateway_credentials_come_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="go together"):
        OrchestratorSettings(**BASE, gateway_url="http://127.0.0.1:18700", client_id="orchestrator")
    with pytest.raises(ValidationError, match="ACCORD_GATEWAY_URL"):
        OrchestratorSettings(**BASE, client_id="orchestrator", client_secret="s" * 20)
    monkeypatch.setenv("ACCORD_CLIENT_ID", "orchestrator")
    monkeypatch.setenv("ACCORD_CLIENT_SECRET", "orchestrator-secret-0123456789")
    monkeypatch.setenv("ACCORD_GATEWAY_URL", "http://127.0.0.1:18700")
    settings = OrchestratorSettings(**BASE)
    assert settings.client_id == "orchestrator"
    assert settings.client_secret is not None
    assert "orchestrator-secret" not in repr(settings)


def test_the_relay_transport_and_mode_come_from_the_environment_and_nothing_else_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (OrchestratorSettings(**BASE).relay_transport, OrchestratorSettings(**BASE).relay_streaming) == (
        "JSONRPC",
        True,
    )
    monkeypatch.setenv("ACCORD_RELAY_TRANSPORT", "GRPC")
    monkeypatch.setenv("ACCORD_RELAY_STREAMING", "false")
    settings = OrchestratorSettings(**BASE)
    assert (settings.relay_transport, settings.relay_streaming) == ("GRPC", False)
    monkeypatch.setenv("ACCORD_RELAY_TRANSPORT", "carrier-pigeon")
    with pytest.raises(ValidationError):
        OrchestratorSettings(**BASE)


def test_a_streamed_reply_assembles_into_the_final_task_with_its_grant_record() -> None:
    assembly = TaskAssembly()
    assembly.apply(Task(id="t1", context_id="c1", status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED)))
    assembly.apply(
        TaskStatusUpdateEvent(
            task_id="t1", context_id="c1", status=TaskStatus(state=TaskState.TASK_STATE_WORKING)
        )
    )
    artifact = Artifact(artifact_id="a1", name="result", parts=[data_part({"score": 1})])
    assembly.apply(TaskArtifactUpdateEvent(task_id="t1", context_id="c1", artifact=artifact))
    record = {"grant_id": "g1", "scopes": ["tool:x.y"], "revoked": True}
    done = TaskStatusUpdateEvent(
        task_id="t1",
        context_id="c1",
        status=TaskStatus(state=TaskState.TASK_STATE_COMPLETED),
        metadata=to_struct({GRANT_RECORD_METADATA_KEY: record}),
    )
    assembly.apply(done)
    assert assembly.task is not None
    assert assembly.task.status.state == TaskState.TASK_STATE_COMPLETED
    assert task_result(assembly.task) == {"score": 1}
    assert assembly.grant == record


def test_an_appended_artifact_chunk_extends_the_artifact_it_names() -> None:
    assembly = TaskAssembly()
    first = Artifact(artifact_id="a1", name="result", parts=[data_part({"part": 1})])
    more = Artifact(artifact_id="a1", parts=[data_part({"part": 2})])
    assembly.apply(TaskArtifactUpdateEvent(task_id="t1", context_id="c1", artifact=first))
    assembly.apply(TaskArtifactUpdateEvent(task_id="t1", context_id="c1", artifact=more, append=True))
    assert assembly.task is not None
    assert [len(artifact.parts) for artifact in assembly.task.artifacts] == [2]


class _Captured:
    def __init__(self, reason: str | None = None, cause: str | None = None) -> None:
        self.reason = reason
        self.cause = cause


@pytest.mark.parametrize(
    ("failure", "captured", "reason"),
    [
        # The relay's own reason, read from its refusal's body, wins over the bare status.
        (
            A2AClientError("HTTP Error 401: Unauthorized"),
            _Captured("invalid_token", "expired"),
            "invalid_token",
        ),
        (A2AClientError("HTTP Error 403: Forbidden"), _Captured(), "policy_denied"),
        (A2AClientError("HTTP Error 502: Bad Gateway"), _Captured(), "agent_unavailable"),
        (A2AClientError("gRPC Error PERMISSION_DENIED: policy_denied: no"), _Captured(), "policy_denied"),
        (A2AClientError("gRPC Error UNAVAILABLE: connect failed"), _Captured(), "upstream_unavailable"),
        (a2a_refusal(AccordError("agent_unavailable"), InternalError), _Captured(), "agent_unavailable"),
        (A2AClientTimeoutError("Client Request timed out"), _Captured(), "timeout"),
        (OSError("connection refused"), _Captured(), "upstream_unavailable"),
    ],
)
def test_a_refused_relayed_call_becomes_the_reason_the_relay_or_the_transport_gave(
    failure: BaseException, captured: _Captured, reason: str
) -> None:
    error = relay_failure(failure, captured, "ledger-agent")  # type: ignore[arg-type]
    assert error.reason == reason
    if captured.cause:
        assert error.context["cause"] == captured.cause
