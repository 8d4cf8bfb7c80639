"""Strict JSON decoding for anything that is about to be signed, verified or authorized.

Python's `json` is lenient in ways an attacker can use: it keeps the *last* of two duplicate keys (so
`{"scope":"read","scope":"admin"}` silently becomes admin while another parser may see read), accepts
`NaN`/`Infinity`, turns `1e400` into `inf`, yields huge integers other languages cannot hold, lets
`"\\ud800"` through as a lone surrogate, and recurses once per nesting level. `loads_strict` rejects all of
these with reason-coded `StrictJsonError`s from the one error table:

=====================  ======================  ==========================================================
reason                 detail                  when
=====================  ======================  ==========================================================
``body_too_large``     ``body_too_large``      input over ``max_bytes`` UTF-8 bytes (checked first)
``malformed_json``     ``byte_order_mark``     input starts with a byte order mark (UTF-8 only, no BOM)
``malformed_json``     ``invalid_utf8``        bytes are not valid UTF-8
``malformed_json``     ``too_deep``            arrays/objects nested deeper than ``max_depth``
``malformed_json``     ``syntax_error``        not JSON at all (context carries ``position``)
``malformed_json``     ``duplicate_key``       an object repeats a key, at any level
``malformed_json``     ``non_finite_number``   ``NaN``, ``Infinity`` or ``-Infinity``
``malformed_json``     ``number_out_of_range`` integer beyond +/-(2**53-1) or a float overflowing to inf
``malformed_json``     ``lone_surrogate``      a string holds an unpaired UTF-16 surrogate
=====================  ======================  ==========================================================

The integer range is the interoperable one of I-JSON (RFC 7493): every peer decodes it to the same value.
"""

from __future__ import annotations

import json
import math
import re
from contextlib import aclosing
from typing import Any, NoReturn

from starlette.requests import Request

from accord.errors import AccordError

DEFAULT_MAX_BYTES = 1_048_576
DEFAULT_MAX_DEPTH = 64
MAX_SAFE_INTEGER = 2**53 - 1

_UTF8_BOM = b"\xef\xbb\xbf"
# Possessive quantifiers and an optional closing quote make every string match succeed in one linear pass,
# so an unterminated string cannot trigger quadratic backtracking; its tail is malformed JSON anyway.
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
# 2**53 - 1 has 16 digits and JSON forbids leading zeros, so a longer literal is out of range before
# converting it (which also sidesteps Python's 4300-digit int conversion limit).
_MAX_SAFE_DIGITS = len(str(MAX_SAFE_INTEGER))


class StrictJsonError(AccordError):
    """A rejected JSON body: `reason` is from the error table, `detail` names the precise defect."""

    def __init__(self, reason: str, detail: str, **context: Any) -> None:
        super().__init__(reason, detail, **context)


def loads_strict(
    data: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH
) -> Any:
    """Decode one UTF-8 JSON document, rejecting anything two parsers could read differently."""
    if max_bytes < 0 or max_depth < 0:
        raise ValueError("max_bytes and max_depth must not be negative")
    text = _decode_utf8(data, max_bytes)
    _check_depth(text, max_depth)
    try:
        value = json.loads(
            text,
            object_pairs_hook=_unique_object,
            parse_constant=_reject_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
    except json.JSONDecodeError as exc:
        raise StrictJsonError("malformed_json", "syntax_error", position=exc.pos) from None
    except RecursionError:
        # Only reachable when a caller raises max_depth past the interpreter's own stack.
        raise StrictJsonError("malformed_json", "too_deep", limit=max_depth) from None
    # Escapes are the only way a surrogate survives decoding: raw ones fail UTF-8 validation above.
    if "\\u" in text:
        _reject_lone_surrogates(value)
    return value


async def read_capped_body(request: Request, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read a request body, refusing a declared or streamed size over `max_bytes` without buffering it."""
    if _declares_over(request, max_bytes):
        raise StrictJsonError("body_too_large", "body_too_large", limit=max_bytes)
    chunks: list[bytes] = []
    received = 0
    # The header may lie (or be absent with chunked encoding), so the bytes actually streamed are counted.
    async with aclosing(request.stream()) as stream:
        async for chunk in stream:
            received += len(chunk)
            if received > max_bytes:
                raise StrictJsonError("body_too_large", "body_too_large", limit=max_bytes)
            chunks.append(chunk)
    return b"".join(chunks)


async def read_strict_json(
    request: Request, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH
) -> Any:
    """Read a request body under a streaming size cap and decode it with `loads_strict`."""
    body = await read_capped_body(request, max_bytes=max_bytes)
    return loads_strict(body, max_bytes=max_bytes, max_depth=max_depth)


def _decode_utf8(data: bytes | str, max_bytes: int) -> str:
    if isinstance(data, str):
        return _check_text(data, max_bytes)
    if len(data) > max_bytes:
        raise StrictJsonError("body_too_large", "body_too_large", limit=max_bytes)
    if data.startswith(_UTF8_BOM):
        raise StrictJsonError("malformed_json", "byte_order_mark")
    try:
        # The strict codec also refuses UTF-8-encoded surrogates (CESU-8) and overlong forms.
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StrictJsonError("malformed_json", "invalid_utf8", position=exc.start) from None


def _check_text(text: str, max_bytes: int) -> str:
    """Hold a str to the same rules as the UTF-8 bytes it stands for."""
    # Any str over max_bytes characters is over max_bytes bytes: refuse before encoding it.
    if len(text) > max_bytes:
        raise StrictJsonError("body_too_large", "body_too_large", limit=max_bytes)
    try:
        encoded_size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise StrictJsonError("malformed_json", "lone_surrogate") from None
    if encoded_size > max_bytes:
        raise StrictJsonError("body_too_large", "body_too_large", limit=max_bytes)
    if text.startswith("\ufeff"):
        raise StrictJsonError("malformed_json", "byte_order_mark")
    return text


def _check_depth(text: str, max_depth: int) -> None:
    """Reject deep nesting before the recursive C scanner sees it; strings are skipped in C, not Python."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if brackets.count("[") + brackets.count("{") <= max_depth:
        return
    depth = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > max_depth:
                raise StrictJsonError("malformed_json", "too_deep", limit=max_depth)
        else:
            depth -= 1


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise StrictJsonError("malformed_json", "duplicate_key")
    return value


def _reject_constant(_literal: str) -> NoReturn:
    raise StrictJsonError("malformed_json", "non_finite_number")


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > _MAX_SAFE_DIGITS:
        raise StrictJsonError("malformed_json", "number_out_of_range")
    value = int(literal)
    if abs(value) > MAX_SAFE_INTEGER:
        raise StrictJsonError("malformed_json", "number_out_of_range")
    return value


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise StrictJsonError("malformed_json", "number_out_of_range")
    return value


def _reject_lone_surrogates(value: Any) -> None:
    # Iterative so the walk never depends on the recursion limit.
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            strings: list[str] = [item]
        elif isinstance(item, dict):
            strings = list(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            strings = []
            pending.extend(item)
        else:
            continue
        if any(_SURROGATE.search(s) for s in strings):
            raise StrictJsonError("malformed_json", "lone_surrogate")


def _declares_over(request: Request, max_bytes: int) -> bool:
    header = request.headers.get("content-length", "").strip()
    # An unparsable header proves nothing either way; the streamed byte count still applies.
    if not (header.isascii() and header.isdigit()):
        return False
    digits = header.lstrip("0") or "0"
    # Compare by length first so an absurdly long header is never converted to int.
    return len(digits) > len(str(max_bytes)) or int(digits) > max_bytes
