"""The circuit breaker of each agent: closed, open after failures in a row, one probe when half open."""

from __future__ import annotations

import pytest

from orchestrator.breakers import CLOSED, HALF_OPEN, OPEN, CircuitBreakers


def breakers() -> tuple[CircuitBreakers, list[float], list[tuple[str, str]]]:
    now, changes = [0.0], []
    box = CircuitBreakers(3, 10.0, clock=lambda: now[0], on_change=lambda a, s: changes.append((a, s)))
    return box, now, changes


def test_failures_in_a_row_open_the_breaker_and_a_success_resets_the_count() -> None:
    box, _now, changes = breakers()
    box.failed("a")
    box.failed("a")
    box.succeeded("a")
    box.failed("a")
    box.failed("a")
    assert (box.state("a"), box.admit("a")) == (CLOSED, True)
    box.failed("a")
    assert (box.state("a"), box.admit("a")) == (OPEN, False)
    assert box.admit("b"), "one agent's breaker is its own"
    assert changes == [("a", OPEN)]


def test_after_the_open_time_one_probe_goes_through_and_decides() -> None:
    box, now, changes = breakers()
    for _ in range(3):
        box.failed("a")
    now[0] += 10
    assert box.state("a") == HALF_OPEN
    assert box.admit("a") is True
    assert box.admit("a") is False, "only one probe at a time"
    box.failed("a")
    assert (box.state("a"), box.admit("a")) == (OPEN, False)
    now[0] += 10
    assert box.admit("a") is True
    box.succeeded("a")
    assert (box.state("a"), box.admit("a"), box.admit("a")) == (CLOSED, True, True)
    assert changes == [("a", OPEN), ("a", HALF_OPEN), ("a", OPEN), ("a", HALF_OPEN), ("a", CLOSED)]


def test_a_breaker_needs_sane_limits() -> None:
    with pytest.raises(ValueError, match="threshold"):
        CircuitBreakers(0, 1)
    with pytest.raises(ValueError, match="threshold"):
        CircuitBreakers(1, 0)
