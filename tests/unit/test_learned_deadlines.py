"""Step deadlines learned from agents' observed latency (`orchestrator.latency`)."""

from __future__ import annotations

import pytest

from orchestrator.latency import Deadline, ObservedLatency


def test_a_step_without_a_timeout_gets_a_multiple_of_its_agents_p95_within_floor_and_default() -> None:
    latency = ObservedLatency(factor=4.0, floor_s=0.5, min_samples=20)
    for i in range(20):
        latency.observe("fast", "work", 0.1 + i / 1000)  # p95 = 0.118
    assert latency.p95("fast", "work") == pytest.approx(0.118)
    assert latency.deadline(None, ["fast"], "work", 30.0) == Deadline(0.5, "observed")  # 0.472 -> the floor
    for _ in range(20):
        latency.observe("slow", "work", 2.0)
    # Failing over may land on the slower candidate: the deadline covers it.
    assert latency.deadline(None, ["fast", "slow"], "work", 30.0) == Deadline(8.0, "observed")
    # Never above the default.
    assert latency.deadline(None, ["fast", "slow"], "work", 5.0) == Deadline(5.0, "observed")


def test_the_workflows_timeout_wins_and_too_few_calls_keep_the_default() -> None:
    latency = ObservedLatency(min_samples=20)
    for _ in range(19):
        latency.observe("new", "work", 0.01)
    assert latency.p95("new", "work") is None
    assert latency.deadline(None, ["new"], "work", 30.0) == Deadline(30.0, "default")
    assert latency.deadline(None, [], "work", 30.0) == Deadline(30.0, "default")
    assert latency.deadline(1.5, ["new"], "work", 30.0) == Deadline(1.5, "workflow")
    for _ in range(20):
        latency.observe("new", "other-skill", 5.0)  # another skill of the same agent says nothing of this one
    assert latency.deadline(None, ["new"], "work", 30.0) == Deadline(30.0, "default")


def test_timeouts_observed_at_their_deadline_raise_the_next_deadline() -> None:
    latency = ObservedLatency(factor=2.0, floor_s=0.1, min_samples=10, window=20)
    for _ in range(20):
        latency.observe("agent", "work", 0.1)
    first = latency.deadline(None, ["agent"], "work", 60.0).seconds
    assert first == 0.2
    for _ in range(2):  # the agent became slower: its calls time out at 0.2 s
        latency.observe("agent", "work", first)
    assert latency.deadline(None, ["agent"], "work", 60.0).seconds == 0.4


def test_a_candidate_it_knows_too_little_about_keeps_the_default() -> None:
    latency = ObservedLatency(min_samples=5)
    for _ in range(5):
        latency.observe("known", "work", 0.1)
    latency.observe("new", "work", 0.1)  # one call: could be the slow one the step fails over to
    assert latency.deadline(None, ["known"], "work", 30.0).source == "observed"
    assert latency.deadline(None, ["known", "new"], "work", 30.0) == Deadline(30.0, "default")
