"""The slowest path through a trace: sequential work is all on it, parallel work only where it was the
longest, and work that outlives the request that started it still counts."""

from __future__ import annotations

from accord.span_store import StoredSpan
from accord.trace_analysis import SpanTree

MS = 1_000_000


def span(span_id: str, parent: str | None, start_ms: int, end_ms: int) -> StoredSpan:
    return StoredSpan(
        trace_id="a" * 32,
        span_id=span_id,
        parent_span_id=parent,
        service="orchestrator",
        name=span_id,
        kind="internal",
        start_ns=start_ms * MS,
        end_ns=end_ms * MS,
    )


def critical(spans: list[StoredSpan]) -> list[str]:
    return [s.span_id for s in SpanTree(spans).critical_path()]


def test_steps_run_one_after_another_are_all_on_the_slowest_path() -> None:
    spans = [span("run", None, 0, 100), span("screen", "run", 5, 40), span("score", "run", 45, 95)]

    assert critical(spans) == ["run", "score", "screen"]


def test_of_parallel_steps_only_the_one_that_finished_last_is_on_the_slowest_path() -> None:
    spans = [
        span("run", None, 0, 100),
        span("sanctions", "run", 5, 60),
        span("bureau", "run", 5, 95),
        span("bureau-call", "bureau", 10, 90),
    ]

    assert critical(spans) == ["run", "bureau", "bureau-call"]


def test_work_that_ends_after_the_request_that_started_it_is_still_on_the_slowest_path() -> None:
    # A run started by a request that is answered at once: the run's spans outlive the request's span.
    spans = [
        span("POST /runs", None, 0, 5),
        span("execute", "POST /runs", 3, 300),
        span("step", "execute", 10, 290),
    ]

    tree = SpanTree(spans)
    assert critical(spans) == ["POST /runs", "execute", "step"]
    assert tree.duration_ms == 300


def test_a_span_whose_parent_was_not_stored_is_shown_as_a_root() -> None:
    spans = [span("orphan", "lost", 0, 10), span("child", "orphan", 1, 9)]

    rows = SpanTree(spans).rows()
    assert [(r.span.span_id, r.depth) for r in rows] == [("orphan", 0), ("child", 1)]
