"""An independent check of signed agent cards, for tests: JCS written here from RFC 8785, JWS verified by
authlib (not PyJWT, which the library signs with)."""

from __future__ import annotations

import base64
import json
import warnings
from typing import Any

from a2a.types import AgentCardSignature

with warnings.catch_warnings():
    # authlib.jose works and is independent of PyJWT; it only announces its successor (joserfc). Its
    # warning module forces "always" for that category on import, so load it first, then silence it.
    from authlib.deprecate import AuthlibDeprecationWarning

    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.jose import JsonWebKey, JsonWebSignature


def protected_header(signature: AgentCardSignature) -> dict[str, Any]:
    padded = signature.protected + "=" * (-len(signature.protected) % 4)
    header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return header


def jcs(value: Any) -> str:
    """RFC 8785 for the values a card holds (objects, arrays, strings, booleans, numbers)."""
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda item: item[0].encode("utf-16-be"))
        return "{" + ",".join(f"{jcs(k)}:{jcs(v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def without_empty(value: Any) -> Any:
    """The A2A signing rule: `signatures` and empty strings, lists and objects are left out."""
    if isinstance(value, dict):
        kept = {k: c for k, v in value.items() if (c := without_empty(v)) is not None}
        return kept or None
    if isinstance(value, list):
        items = [c for v in value if (c := without_empty(v)) is not None]
        return items or None
    return None if value == "" else value


def verify_with_authlib(card_json: dict[str, Any], jwks: dict[str, Any]) -> str:
    """Verify every signature of a served card JSON with authlib; returns the kid that verified."""
    content = without_empty({k: v for k, v in card_json.items() if k != "signatures"})
    payload = base64.urlsafe_b64encode(jcs(content).encode()).rstrip(b"=").decode()
    keys = {jwk["kid"]: jwk for jwk in jwks["keys"]}
    for signature in card_json["signatures"]:
        header = protected_header(AgentCardSignature(protected=signature["protected"]))
        key = JsonWebKey.import_key(keys[header["kid"]])
        compact = f"{signature['protected']}.{payload}.{signature['signature']}"
        verified = JsonWebSignature(algorithms=[header["alg"]]).deserialize_compact(compact, key)
        assert verified["header"]["kid"] == header["kid"]
        return str(header["kid"])
    raise AssertionError("no signature")
