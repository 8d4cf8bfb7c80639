"""Secret redaction for everything that leaves a process as text: log lines and stored spans.

Two nets, because neither alone is enough: patterns that recognise a secret wherever it appears in free
text (a bearer token inside an error message, a PEM block, a JWT), and key names that mark a value as
secret in structured data (`{"client_secret": "..."}`) whatever it looks like.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"

# Key names whose values are secrets. Matched as whole words of a snake/kebab/camel-case key.
_SECRET_WORDS = (
    "secret",
    "password",
    "passwd",
    "token",
    "authorization",
    "apikey",
    "api_key",
    "private_key",
    "privatekey",
    "credential",
    "credentials",
    "cookie",
    "assertion",
)
_SECRET_KEY = re.compile(r"(?:^|[_\-.])(?:" + "|".join(_SECRET_WORDS) + r")(?:$|[_\-.])", re.IGNORECASE)
# A value that looks like key material: long hex or base64(url) without spaces.
_KEY_MATERIAL = re.compile(r"^[A-Za-z0-9+/=_\-.~]{32,}$")
# In free text an assigned value is shorter before it counts: `access_token=` rarely precedes anything else.
_ASSIGNED_MATERIAL = re.compile(r"^[A-Za-z0-9+/=_\-.~]{12,}$")
# Names that contain a secret word but name something public (a token's type or id, a key id).
_PUBLIC_KEYS = frozenset({"token_type", "token_type_hint", "kid"})
# Names whose value is a secret whatever it looks like (a short password is still a password): those
# ending in one of these words (`client_secret`, `db_password`, `set-cookie`, `x-api-key`).
_ALWAYS_SECRET = re.compile(
    r"(?:^|[_\-.])(?:password|passwd|secret|authorization|cookie|api[_\-]?key)$", re.IGNORECASE
)

_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|$)", re.DOTALL)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_AUTH_SCHEME = re.compile(r"\b(Bearer|Basic|DPoP)\s+[A-Za-z0-9+/=_\-.~]{8,}", re.IGNORECASE)
# `client_secret=...` in query strings and forms, `"client_secret": "..."` in JSON, `secret: ...` in text:
# found from the secret word outwards (a key is at most _KEY_REACH characters either side of it), so the
# scan stays linear however long the text.
_SECRET_WORD = re.compile("|".join(_SECRET_WORDS), re.IGNORECASE)
_KEY_REACH = 48
_KEY_CHAR = re.compile(r"[\w\-.]")
_ASSIGNMENT = re.compile(rf"[\w\-.]{{0,{_KEY_REACH}}}(?P<sep>\"?\s*[:=]\s*\"?)(?P<value>[^\s\"&,;}}]+)")


def redact_text(text: str) -> str:
    """The text with every recognisable secret replaced by a marker."""
    if not text:
        return text
    text = _PEM.sub("[REDACTED PEM]", text)
    text = _JWT.sub("[REDACTED JWT]", text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _redact_assignments(text)


def _redact_assignments(text: str) -> str:
    parts: list[str] = []
    done = 0
    for word in _SECRET_WORD.finditer(text):
        if word.start() < done:
            continue
        assignment = _ASSIGNMENT.match(text, word.end())
        if assignment is None:
            continue
        start = word.start()
        while start > done and word.start() - start < _KEY_REACH and _KEY_CHAR.match(text, start - 1):
            start -= 1
        key, value = text[start : assignment.start("sep")], assignment.group("value")
        if _is_assigned_secret(key, value):
            parts.append(text[done : assignment.start("value")])
            parts.append(REDACTED)
            done = assignment.end()
    parts.append(text[done:])
    return "".join(parts)


def _is_assigned_secret(key: str, value: str) -> bool:
    if value == REDACTED:
        return False
    return is_always_secret(key) or (is_secret_key(key) and bool(_ASSIGNED_MATERIAL.match(value)))


def _snake(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key)


def is_secret_key(key: str) -> bool:
    """Whether a key names something secret (its value is redacted when it looks like key material)."""
    snake = _snake(key)
    return snake.lower() not in _PUBLIC_KEYS and bool(_SECRET_KEY.search(snake))


def is_always_secret(key: str) -> bool:
    """Whether a key names a secret whatever its value looks like."""
    return bool(_ALWAYS_SECRET.search(_snake(key)))


def redact_value(key: str, value: Any) -> Any:
    """A structured value with secrets removed: secret-named keys lose key material, text is scanned."""
    if isinstance(value, str):
        if value and is_always_secret(key):
            return REDACTED
        if is_secret_key(key) and _KEY_MATERIAL.match(value):
            return REDACTED
        return redact_text(value)
    if isinstance(value, Mapping):
        return {str(k): redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(key, item) for item in value]
    return value
