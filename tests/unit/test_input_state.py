"""The state of an input round is honored only for the call it was sealed to, unexpired, with answers to
what was asked; anything else is `invalid_input` (and, in the gateway, goes nowhere)."""

from __future__ import annotations

import pytest

from accord.errors import AccordError
from gateway.input_state import CallBinding, InputStateSeal

CALL = CallBinding("asker", "asker", "grant-1", "fixture.test_elicitation", "a" * 64)
ANSWER = {"elicit": {"action": "accept"}}


def test_a_sealed_state_opens_for_its_own_call_with_answers_to_what_was_asked() -> None:
    seal = InputStateSeal(b"k" * 32)
    envelope = seal.seal("upstream-state", CALL, ["elicit"])
    opened = seal.open(envelope, ANSWER, CALL)
    assert (opened.upstream_state, opened.responses) == ("upstream-state", ANSWER)
    assert seal.open(None, None, CALL).upstream_state is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda e: e[:-2] + ("AA" if not e.endswith("AA") else "BB"),  # another MAC
        lambda e: e[:-3] + "é€ü",  # not even ASCII
        lambda e: "other-prefix." + e.partition(".")[2],
        lambda e: "x" * 70_000,
    ],
)
def test_a_forged_or_mangled_state_is_refused(tamper: object) -> None:
    seal = InputStateSeal(b"k" * 32)
    envelope = seal.seal(None, CALL, ["elicit"])
    with pytest.raises(AccordError) as refused:
        seal.open(tamper(envelope), ANSWER, CALL)  # type: ignore[operator]
    assert refused.value.reason == "invalid_input"


def test_another_call_another_key_an_unasked_answer_or_an_expired_state_is_refused() -> None:
    seal = InputStateSeal(b"k" * 32)
    envelope = seal.seal(None, CALL, ["elicit"])
    others = [
        (envelope, ANSWER, CallBinding("asker", "someone-else", "grant-1", CALL.tool, CALL.arguments_sha256)),
        (envelope, ANSWER, CallBinding("asker", "asker", "grant-2", CALL.tool, CALL.arguments_sha256)),
        (envelope, ANSWER, CallBinding("asker", "asker", "grant-1", CALL.tool, "b" * 64)),
        (envelope, {"unasked": {"action": "accept"}}, CALL),
        (None, ANSWER, CALL),
        (InputStateSeal(b"j" * 32).seal(None, CALL, ["elicit"]), ANSWER, CALL),
        (InputStateSeal(b"k" * 32, lifetime_s=-1).seal(None, CALL, ["elicit"]), ANSWER, CALL),
    ]
    for state, answers, call in others:
        with pytest.raises(AccordError) as refused:
            seal.open(state, answers, call)
        assert refused.value.reason == "invalid_input"
