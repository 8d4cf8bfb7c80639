"""The price of model tokens (`deploy/policies/model-prices.yaml`): agents report tokens, this prices them.

Cost is computed here, from the operator's table, rather than taken from agents: an agent's report is
untrusted, and a model the table does not name costs the `default` price, never nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from accord.located_yaml import LocatedYamlError, line_of, load_located
from accord.usage import ModelUsage, Usage

_PER = 1_000_000


class TokenPrice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)

    def of(self, usage: ModelUsage) -> float:
        return (usage.input_tokens * self.input + usage.output_tokens * self.output) / _PER


class PriceCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    currency: Literal["USD"] = "USD"
    default: TokenPrice
    models: dict[str, TokenPrice] = Field(default_factory=dict)

    def cost(self, usage: Usage) -> float:
        """What `usage` costs, in the catalog's currency (rounded to a millionth)."""
        total = sum(self.models.get(model, self.default).of(u) for model, u in usage.by_model.items())
        return round(total, 6)

    @classmethod
    def load(cls, path: Path) -> PriceCatalog:
        """The catalog in `path`; `PriceCatalogError` naming the file (and line) when it is unusable: the
        orchestrator does not start with a catalog it cannot trust."""
        try:
            data, lines = load_located(path.read_text())
            return cls.model_validate(data)
        except OSError as exc:
            raise PriceCatalogError(f"{path}: cannot read the price catalog ({exc.strerror})") from None
        except LocatedYamlError as exc:
            where = f":{exc.line}" if exc.line else ""
            raise PriceCatalogError(f"{path}{where}: {exc.message}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            line = line_of(lines, tuple(first["loc"]))
            where = f":{line}" if line else ""
            loc = ".".join(map(str, first["loc"])) or "(document)"
            raise PriceCatalogError(f"{path}{where}: {loc}: {first['msg']}") from None


class PriceCatalogError(ValueError):
    """The price catalog cannot be used."""
