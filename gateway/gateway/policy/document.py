"""The tool policy file (`deploy/policies/tools.yaml`): its schema, and loading it with clear errors.

```yaml
version: 1
defaults:
  rate_limit: {per_second: 50, burst: 100}     # per client, token bucket
clients:
  ledger-agent:                                # a client_id of this gateway's authorization server
    rate_limit: {per_second: 20, burst: 40}    # optional; else the default
    tools:
      - tool: ledger.*                         # exact `<upstream>.<tool>` or every tool of an upstream
        id: ledger-own-account                 # optional rule name for the audit trail
        arguments:
          account_id: {equals_binding: account_id}
          months: {enum: [1, 3, 6, 12, 24]}
    resources: [ledger]                        # optional: upstreams whose resources it may read
    prompts: [ledger]                          # optional: upstreams whose prompts it may get
```

Deny by default: a client or tool not named here can call nothing. Argument constraints (all optional, all
must hold): `equals_binding` (equal to the named binding of the caller's task grant; the argument must be
present), `equals`, `enum`, `max_length`, `pattern` (full match), `minimum`, `maximum`, `required`.
A client of another trusted issuer is named with `issuer: <its issuer URL>` in its entry.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from accord.located_yaml import LocatedYamlError, line_of, load_located

TOOL_PATTERN = re.compile(r"^[a-z][a-z0-9-]*\.(\*|[A-Za-z0-9_][A-Za-z0-9_.-]*)$")
CLIENT_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
BINDING_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
MAX_POLICY_BYTES = 1_048_576

JsonScalar = StrictBool | StrictInt | StrictFloat | StrictStr
ClientId = Annotated[str, Field(pattern=CLIENT_ID)]
UpstreamName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")]
ArgumentName = Annotated[str, Field(min_length=1, max_length=128)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArgumentConstraint(_Strict):
    """What one tool argument must satisfy. Every given constraint must hold."""

    equals_binding: str | None = Field(default=None, pattern=BINDING_NAME)
    equals: JsonScalar | None = None
    enum: list[JsonScalar] | None = Field(default=None, min_length=1, max_length=1000)
    max_length: int | None = Field(default=None, ge=0)
    pattern: str | None = Field(default=None, max_length=1000)
    minimum: StrictInt | StrictFloat | None = None
    maximum: StrictInt | StrictFloat | None = None
    required: bool = False

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _says_something(self) -> ArgumentConstraint:
        if not (self.model_fields_set - {"required"}) and not self.required:
            raise ValueError("a constraint needs at least one of " + ", ".join(CONSTRAINT_KINDS))
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("minimum is greater than maximum")
        return self


CONSTRAINT_KINDS = (
    "equals_binding",
    "equals",
    "enum",
    "max_length",
    "pattern",
    "minimum",
    "maximum",
    "required",
)


class ToolRule(_Strict):
    """One tool (or every tool of an upstream, `upstream.*`) a client may call."""

    tool: str
    id: str | None = Field(default=None, min_length=1, max_length=128)
    arguments: dict[ArgumentName, ArgumentConstraint] = Field(default_factory=dict)

    @field_validator("tool")
    @classmethod
    def _tool_is_named(cls, value: str) -> str:
        if not TOOL_PATTERN.match(value):
            raise ValueError("tool must be '<upstream>.<tool>' or '<upstream>.*'")
        return value


class RateLimit(_Strict):
    """A token bucket: `burst` calls at once, refilled at `per_second`."""

    per_second: StrictInt | StrictFloat = Field(gt=0, le=1_000_000)
    burst: StrictInt = Field(ge=1, le=1_000_000)


class ClientPolicy(_Strict):
    issuer: str | None = Field(default=None, pattern=r"^https?://")
    rate_limit: RateLimit | None = None
    tools: list[ToolRule] = Field(default_factory=list)
    # Upstreams whose resources (list, read, template completion) and prompts (list, get, completion) the
    # client may use; each also needs its scope in the token (`resources:<upstream>`, `prompts:<upstream>`).
    resources: list[UpstreamName] = Field(default_factory=list)
    prompts: list[UpstreamName] = Field(default_factory=list)

    @model_validator(mode="after")
    def _each_tool_once(self) -> ClientPolicy:
        names = [rule.tool for rule in self.tools]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"tool listed more than once: {', '.join(repeated)}")
        ids = [rule.id for rule in self.tools if rule.id is not None]
        if len(ids) != len(set(ids)):
            raise ValueError("rule ids must be unique within a client")
        return self


class Defaults(_Strict):
    rate_limit: RateLimit = RateLimit(per_second=50, burst=100)


class PolicyDocument(_Strict):
    version: Literal[1]
    defaults: Defaults = Defaults()
    clients: dict[ClientId, ClientPolicy] = Field(default_factory=dict)


class PolicyError(ValueError):
    """A policy file that cannot be used; `problems` are `file:line: where: what` lines."""

    def __init__(self, source: str, problems: list[str], kind: str = "tool policy") -> None:
        super().__init__(f"{source}: invalid {kind}:\n" + "\n".join(problems))
        self.source = source
        self.problems = problems


def _where(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


M = TypeVar("M", bound=BaseModel)


def parse_policy(text: str, source: str) -> tuple[PolicyDocument, str]:
    """The validated document and the sha256 of its text; `PolicyError` listing every problem."""
    return parse_document(text, source, PolicyDocument, "tool policy", "'version' and 'clients'")


def parse_document(text: str, source: str, model: type[M], kind: str, members: str) -> tuple[M, str]:
    """A YAML policy document validated as `model`, and the sha256 of its text; every problem (with its
    line) in one `PolicyError`. `members` names what the top-level mapping must hold, for the error."""
    if len(text.encode()) > MAX_POLICY_BYTES:
        raise PolicyError(source, [f"{source}: the file is larger than {MAX_POLICY_BYTES} bytes"], kind)
    try:
        raw, lines = load_located(text)
    except LocatedYamlError as exc:
        where = f"{source}:{exc.line}" if exc.line else source
        raise PolicyError(source, [f"{where}: {exc.message}"], kind) from None
    if not isinstance(raw, dict):
        raise PolicyError(source, [f"{source}:1: the document must be a mapping with {members}"], kind)
    try:
        document = model.model_validate(raw)
    except ValidationError as exc:
        problems = [_problem(source, lines, error) for error in exc.errors()]
        raise PolicyError(source, problems, kind) from None
    return document, hashlib.sha256(text.encode()).hexdigest()


def _problem(source: str, lines: dict[tuple[str | int, ...], int], error: Any) -> str:
    # Pydantic names union members and wrapper steps in `loc` (e.g. 'function-after[...]'); the document
    # path is what the author needs.
    loc = tuple(part for part in error["loc"] if isinstance(part, int) or "[" not in str(part))
    line = line_of(lines, loc)
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{source}:{line or 1}: {_where(loc)}: {message}"


def read_policy_file(path: Path) -> tuple[PolicyDocument, str]:
    return parse_policy(read_policy_text(path), str(path))


def read_policy_text(path: Path, kind: str = "tool policy") -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(str(path), [f"{path}: cannot be read ({type(exc).__name__})"], kind) from None
