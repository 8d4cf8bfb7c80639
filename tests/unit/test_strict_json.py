"""loads_strict: valid JSON decodes exactly like json.loads; every ambiguous or hostile input is refused."""

from __future__ import annotations

import gc
import json
import random
import time
from typing import Any

import pytest

from accord.errors import ERROR_TABLE, AccordError
from accord.strict_json import MAX_SAFE_INTEGER, StrictJsonError, loads_strict

_ALPHABET = 'abcXYZ019 _-"\\/\n\t\u00e9\u00df\u0416\u4e2d\U0001f600\U00010348{}[]:,'


def _random_text(rng: random.Random, longest: int) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, longest)))


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value inside the strict profile (finite numbers, safe integers, no surrogates)."""
    kind = rng.choice(("null", "bool", "int", "float", "str") + (("list", "dict") if depth < 6 else ()))
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice((0, -1, 1, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, rng.randint(-(10**12), 10**12)))
    if kind == "float":
        return rng.choice((0.5, -0.0, 1e308, -1e-300, 5e-324, rng.uniform(-1e6, 1e6)))
    if kind == "str":
        return _random_text(rng, 12)
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    keys = {_random_text(rng, 6) for _ in range(rng.randint(0, 5))}
    return {key: _random_json(rng, depth + 1) for key in keys}


def _rejection(data: bytes | str, **limits: int) -> StrictJsonError:
    with pytest.raises(StrictJsonError) as caught:
        loads_strict(data, **limits)
    return caught.value


@pytest.mark.parametrize("seed", range(200))
def test_random_valid_documents_decode_exactly_like_json_loads(seed: int) -> None:
    rng = random.Random(seed)
    value = _random_json(rng)
    text = json.dumps(
        value,
        ensure_ascii=rng.random() < 0.5,
        indent=rng.choice((None, 0, 2)),
        separators=rng.choice((None, (",", ":"), (" , ", " : "))),
    )
    assert loads_strict(text) == json.loads(text) == value
    assert loads_strict(text.encode("utf-8")) == value


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "-0",
        "true",
        "null",
        '""',
        ' \t\r\n{"a": [1, 2.5e-3, "x"]} \n',
        '"\\ud83d\\ude00"',
        '"\\u00e9\\n\\"\\\\\\/"',
        '["[[[[[[", "{{{{{{"]',
        '"\\\\ud800"',
        str(MAX_SAFE_INTEGER),
        str(-MAX_SAFE_INTEGER),
        "1e308",
        "-1.7976931348623157e308",
        "1e-400",
    ],
)
def test_edge_case_valid_documents_decode_exactly_like_json_loads(text: str) -> None:
    assert loads_strict(text) == json.loads(text)


def test_every_rejection_is_an_accord_error_with_a_reason_from_the_error_table() -> None:
    error = _rejection('{"scope":"read","scope":"admin"}')
    assert isinstance(error, AccordError)
    assert error.reason in ERROR_TABLE
    assert error.kind.http_status == 400
    assert error.to_body()["error"] == {"reason": "malformed_json", "message": "duplicate_key"}


@pytest.mark.parametrize(
    "text",
    [
        '{"scope":"read","scope":"admin"}',
        '{"a":1,"b":2,"a":1}',
        '[{"outer":{"inner":1,"inner":2}}]',
        '{"a":{"x":1},"a":{"x":1}}',
        '{"\\u0061":1,"a":2}',
    ],
)
def test_duplicate_keys_at_any_level_are_refused_instead_of_keeping_the_last(text: str) -> None:
    error = _rejection(text)
    assert (error.reason, error.detail) == ("malformed_json", "duplicate_key")


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", '{"amount": NaN}', "[1, -Infinity]"])
def test_non_finite_literals_are_refused(text: str) -> None:
    error = _rejection(text)
    assert (error.reason, error.detail) == ("malformed_json", "non_finite_number")


@pytest.mark.parametrize(
    "text",
    [
        str(MAX_SAFE_INTEGER + 1),
        str(-MAX_SAFE_INTEGER - 1),
        "12345678901234567890",
        "9" * 5000,
        '{"amount": 1e400}',
        "-1e400",
        "1" + "0" * 400 + ".0",
    ],
)
def test_numbers_outside_the_interoperable_range_are_refused(text: str) -> None:
    error = _rejection(text)
    assert (error.reason, error.detail) == ("malformed_json", "number_out_of_range")


@pytest.mark.parametrize(
    "text",
    [
        '"\\ud800"',
        '"\\udfff"',
        '"a\\ud83dz"',
        '"\\ude00\\ud83d"',
        '{"\\ud800": 1}',
        '[["ok", {"k": ["\\udbff"]}]]',
        '"\\\\\\ud800"',
    ],
)
def test_escaped_lone_surrogates_are_refused_in_values_and_keys(text: str) -> None:
    error = _rejection(text)
    assert (error.reason, error.detail) == ("malformed_json", "lone_surrogate")


def test_a_str_holding_a_raw_lone_surrogate_is_refused() -> None:
    error = _rejection('"\ud800"')
    assert (error.reason, error.detail) == ("malformed_json", "lone_surrogate")


@pytest.mark.parametrize(
    "data",
    [
        b'"\xff"',
        b'"\xc3"',
        b'"\xc0\xaf"',
        b'"\xed\xa0\x80"',
        b'"\xf4\x90\x80\x80"',
        '{"a": 1}'.encode("utf-16-le"),
    ],
)
def test_bytes_that_are_not_utf8_are_refused(data: bytes) -> None:
    error = _rejection(data)
    assert error.reason == "malformed_json"
    assert error.detail in ("invalid_utf8", "syntax_error")


def test_invalid_utf8_is_reported_as_such() -> None:
    assert _rejection(b'{"a": "\xff"}').detail == "invalid_utf8"


@pytest.mark.parametrize("data", [b'\xef\xbb\xbf{"a": 1}', '\ufeff{"a": 1}', b"\xff\xfe{\x00}\x00"])
def test_byte_order_marks_are_refused(data: bytes | str) -> None:
    error = _rejection(data)
    assert error.reason == "malformed_json"
    assert error.detail in ("byte_order_mark", "invalid_utf8")


def test_utf16_and_utf32_payloads_are_not_sniffed_into_acceptance() -> None:
    for encoding in ("utf-16", "utf-16-be", "utf-32"):
        assert _rejection('{"a": 1}'.encode(encoding)).reason == "malformed_json"


@pytest.mark.parametrize(
    "text", ["", " ", "{", '{"a" 1}', "[1,]", "{'a': 1}", '"\x01"', "01", "1 2", '{"a": 1}}', "tru"]
)
def test_syntax_errors_are_malformed_json_with_a_position(text: str) -> None:
    error = _rejection(text)
    assert (error.reason, error.detail) == ("malformed_json", "syntax_error")
    assert isinstance(error.context["position"], int)


def test_nesting_at_the_limit_is_accepted_and_one_deeper_is_refused() -> None:
    assert loads_strict("[" * 64 + "]" * 64) == json.loads("[" * 64 + "]" * 64)
    error = _rejection("[" * 65 + "]" * 65)
    assert (error.reason, error.detail) == ("malformed_json", "too_deep")
    assert error.context == {"limit": 64}


def test_depth_limit_is_configurable_and_counts_objects_and_arrays_together() -> None:
    assert loads_strict('{"a": [{"b": []}]}', max_depth=4) == {"a": [{"b": []}]}
    assert _rejection('{"a": [{"b": [[]]}]}', max_depth=4).detail == "too_deep"
    assert loads_strict("7", max_depth=0) == 7
    assert _rejection("[]", max_depth=0).detail == "too_deep"


def test_brackets_inside_strings_do_not_count_towards_depth() -> None:
    text = json.dumps(["[" * 500, {"k": "{" * 500 + '\\"[[['}])
    assert loads_strict(text, max_depth=2) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000, "[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000, "[{" * 50_000],
)
def test_very_deep_nesting_is_refused_quickly_without_recursion_error(text: str) -> None:
    started = time.perf_counter()
    error = _rejection(text, max_bytes=10_000_000)
    assert time.perf_counter() - started < 0.5
    assert (error.reason, error.detail) == ("malformed_json", "too_deep")


def test_an_unterminated_string_full_of_escaped_quotes_is_refused_in_linear_time() -> None:
    text = '"' + '\\"' * 400_000 + "\\"
    started = time.perf_counter()
    assert _rejection(text).reason == "malformed_json"
    assert time.perf_counter() - started < 0.5


def test_many_shallow_containers_near_the_size_limit_decode_in_linear_time() -> None:
    # A ratio of two sizes measured in the same run, so machine load cannot fail it: linear work grows
    # 10x for 10x the containers, quadratic work 100x.
    def fastest_decode_s(count: int) -> float:
        text = json.dumps([[i, {"k": [i]}] for i in range(count)])
        assert loads_strict(text) == json.loads(text)
        timings = []
        gc.disable()  # a collection landing in one measurement is noise, not decoding
        try:
            for _ in range(5):
                started = time.perf_counter()
                loads_strict(text)
                timings.append(time.perf_counter() - started)
        finally:
            gc.enable()
        return min(timings)

    assert fastest_decode_s(40_000) < 40 * fastest_decode_s(4_000)


def test_bodies_over_the_size_limit_are_refused_before_decoding() -> None:
    body = b'{"a": "' + b"x" * 100 + b'"}'
    assert loads_strict(body, max_bytes=len(body)) == {"a": "x" * 100}
    error = _rejection(body, max_bytes=len(body) - 1)
    assert (error.reason, error.detail) == ("body_too_large", "body_too_large")
    assert error.kind.http_status == 413
    # Size wins over every other defect: invalid bytes past the limit are never looked at.
    assert _rejection(b"\xff" * 2_000_000).reason == "body_too_large"


def test_str_input_is_measured_in_utf8_bytes() -> None:
    text = json.dumps("\u4e2d" * 10, ensure_ascii=False)
    assert len(text) == 12
    assert len(text.encode("utf-8")) == 32
    assert loads_strict(text, max_bytes=32) == "\u4e2d" * 10
    assert _rejection(text, max_bytes=31).reason == "body_too_large"


def test_negative_limits_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="negative"):
        loads_strict("1", max_depth=-1)
