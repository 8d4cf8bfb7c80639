"""The pieces of the gateway's tool-call path that need no network: names, digests, traces, verdicts."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import mcp_types as types
import pytest

from accord.errors import AccordError
from accord.trace_context import trace_id_from
from gateway.authorization import Decision
from gateway.catalog import split_federated_name
from gateway.federated_names import federated_name
from gateway.provenance import PROVENANCE_KEY, gateway_error_result, with_provenance
from gateway.tool_audit import argument_digest

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_federated_name_splits_on_its_first_dot() -> None:
    assert split_federated_name("ledger.aggregate_by_period") == ("ledger", "aggregate_by_period")
    assert split_federated_name("ledger.v2.get") == ("ledger", "v2.get")
    assert federated_name("ledger", "get_account") == "ledger.get_account"


@pytest.mark.parametrize("name", ["search", ".search", "sanctions.", ""])
def test_a_name_without_both_parts_is_an_unknown_tool(name: str) -> None:
    with pytest.raises(AccordError) as raised:
        split_federated_name(name)
    assert raised.value.reason == "unknown_tool"


def test_the_argument_digest_ignores_key_order_and_sees_every_value() -> None:
    first = argument_digest({"name": "Ana", "limit": 5})
    assert first == argument_digest({"limit": 5, "name": "Ana"})
    assert first != argument_digest({"name": "Ana", "limit": 6})
    assert re.fullmatch(r"[0-9a-f]{64}", first)


def test_arguments_outside_canonical_json_still_get_a_stable_digest() -> None:
    odd = {"score": math.nan, "big": 2**80}
    assert argument_digest(odd) == argument_digest(dict(reversed(odd.items())))


def test_the_trace_id_comes_from_meta_then_header_else_a_fresh_one() -> None:
    parent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    assert trace_id_from({"traceparent": parent}, {}) == TRACE_ID
    assert trace_id_from(None, {"traceparent": parent.upper()}) == TRACE_ID
    fresh = trace_id_from({"traceparent": "garbage"}, {"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"})
    assert re.fullmatch(r"[0-9a-f]{32}", fresh)
    assert fresh != trace_id_from(None, {})


def test_a_denial_needs_a_reason_code_from_the_error_table() -> None:
    assert Decision.deny("insufficient_scope").reason == "insufficient_scope"
    with pytest.raises(ValueError, match="reason code"):
        Decision.deny("nope")
    with pytest.raises(ValueError, match="no reason"):
        Decision(allowed=True, reason="policy_denied")


def test_an_allow_decision_carries_who_and_under_which_grant_and_rule() -> None:
    decision = Decision.allow(
        "ledger-agent", "run-1", subject="orchestrator", grant_id="g", task="t", rule="r"
    )
    assert (decision.principal, decision.run_id, decision.grant_id, decision.rule) == (
        "ledger-agent",
        "run-1",
        "g",
        "r",
    )


def test_provenance_extends_upstream_meta_and_replaces_what_the_upstream_claims_for_itself() -> None:
    claimed = {"upstream": "trusted-bank", "untrusted": False}
    upstream = types.CallToolResult(
        content=[types.TextContent(type="text", text="{}")],
        structured_content={"found": True},
        _meta={
            "upstream/key": 1,
            PROVENANCE_KEY: claimed,
            types.SERVER_INFO_META_KEY: {"name": "ledger-tools"},
        },
    )
    received = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    marked = with_provenance(upstream, "ledger", "get_account", received)
    assert marked.meta == {
        "upstream/key": 1,
        PROVENANCE_KEY: {
            "upstream": "ledger",
            "tool": "get_account",
            "untrusted": True,
            "received_at": "2026-01-02T03:04:05+00:00",
        },
    }
    assert marked.structured_content == {"found": True}
    assert upstream.meta is not None
    assert upstream.meta[PROVENANCE_KEY] == claimed  # the original is untouched


def test_a_gateway_error_result_carries_the_reason_and_no_internals() -> None:
    result = gateway_error_result("upstream_unavailable", "upstream 'ledger' is unavailable", "ledger", "x")
    assert result.is_error is True
    assert result.meta == {
        "accord/error": {"reason": "upstream_unavailable", "upstream": "ledger", "tool": "x"}
    }
    assert result.content == [
        types.TextContent(type="text", text="upstream_unavailable: upstream 'ledger' is unavailable")
    ]
