"""Credit-risk decision rules: explicit, ordered, and every rule that fires is reported.

The decision is the most severe effect among fired rules (decline > refer > approve). Rules of one family
are tiers of one measure (e.g. affordability); only the most severe tier that fires is reported. A missing
specialist output is never read as good news: it refers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Effect = Literal["decline", "refer"]
_SEVERITY = {"approve": 0, "refer": 1, "decline": 2}
TERM_MONTHS = 36


@dataclass(frozen=True)
class Rule:
    id: str
    family: str
    effect: Effect
    applies: Callable[[dict[str, Any], dict[str, dict[str, Any]]], str | None]


def _sanctions(status: str) -> Callable[[dict[str, Any], dict[str, dict[str, Any]]], str | None]:
    def check(_inp: dict[str, Any], out: dict[str, dict[str, Any]]) -> str | None:
        s = out.get("sanctions")
        if s and s["status"] == status:
            return f"sanctions screening: {status} (best score {s['best_score']:.0f})"
        return None

    return check


def _missing(step: str) -> Callable[[dict[str, Any], dict[str, dict[str, Any]]], str | None]:
    def check(_inp: dict[str, Any], out: dict[str, dict[str, Any]]) -> str | None:
        return None if step in out else f"{step} result unavailable"

    return check


def _bureau(out: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    b = out.get("bureau")
    return b if b and b.get("found") else None


def _ledger(out: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    ledger = out.get("ledger")
    return ledger if ledger and ledger.get("found") else None


def _no_file(_inp: dict[str, Any], out: dict[str, dict[str, Any]]) -> str | None:
    b = out.get("bureau")
    return "no credit file at the bureau" if b is not None and not b.get("found") else None


def _thin_file(_inp: dict[str, Any], out: dict[str, dict[str, Any]]) -> str | None:
    b = _bureau(out)
    return "thin credit file" if b and b["thin_file"] else None


def _delinquent(_inp: dict[str, Any], out: dict[str, dict[str, Any]]) -> str | None:
    b = _bureau(out)
    if b and b["delinquencies_24m"] >= 3:
        return f"{b['delinquencies_24m']} delinquencies in 24 months"
    return None


def _score_below(limit: int) -> Callable[[dict[str, Any], dict[str, dict[str, Any]]], str | None]:
    def check(_inp: dict[str, Any], out: dict[str, dict[str, Any]]) -> str | None:
        b = _bureau(out)
        if b and b["score"] is not None and b["score"] < limit:
            return f"credit score {b['score']} below {limit}"
        return None

    return check


def _high_utilization(_inp: dict[str, Any], out: dict[str, dict[str, Any]]) -> str | None:
    b = _bureau(out)
    return f"credit utilization {b['utilization']:.0%}" if b and b["utilization"] > 0.85 else None


def _gambling_over(share: float) -> Callable[[dict[str, Any], dict[str, dict[str, Any]]], str | None]:
    def check(_inp: dict[str, Any], out: dict[str, dict[str, Any]]) -> str | None:
        ledger = _ledger(out)
        if ledger and ledger["gambling_share"] > share:
            return f"gambling is {ledger['gambling_share']:.0%} of spending"
        return None

    return check


def _unaffordable(limit: float) -> Callable[[dict[str, Any], dict[str, dict[str, Any]]], str | None]:
    def check(inp: dict[str, Any], out: dict[str, dict[str, Any]]) -> str | None:
        ledger = _ledger(out)
        if ledger is None:
            return None
        payment = float(inp["requested_amount"]) / TERM_MONTHS
        net = float(ledger["net_monthly"])
        if net <= 0 or payment > limit * net:
            return f"monthly payment {payment:.0f} vs net monthly income {net:.0f}"
        return None

    return check


def _no_account(_inp: dict[str, Any], out: dict[str, dict[str, Any]]) -> str | None:
    ledger = out.get("ledger")
    return "no transaction history" if ledger is not None and not ledger.get("found") else None


def _address_mismatch(_inp: dict[str, Any], out: dict[str, dict[str, Any]]) -> str | None:
    b, ledger = _bureau(out), _ledger(out)
    if not (b and ledger and b.get("address") and ledger.get("address")):
        return None
    if _normal_address(b["address"]) != _normal_address(ledger["address"]):
        return "bureau and ledger report different addresses"
    return None


def _normal_address(address: dict[str, Any]) -> tuple[str, ...]:
    return tuple(" ".join(str(address.get(k, "")).lower().split()) for k in ("line1", "postcode", "country"))


RULES: tuple[Rule, ...] = (
    Rule("sanctions_hit", "sanctions", "decline", _sanctions("hit")),
    Rule("sanctions_potential_match", "sanctions", "refer", _sanctions("potential_match")),
    Rule("sanctions_unavailable", "sanctions", "refer", _missing("sanctions")),
    Rule("bureau_unavailable", "bureau", "refer", _missing("bureau")),
    Rule("ledger_unavailable", "ledger", "refer", _missing("ledger")),
    Rule("no_credit_file", "credit_file", "refer", _no_file),
    Rule("thin_credit_file", "credit_file", "refer", _thin_file),
    Rule("serious_delinquency", "delinquency", "decline", _delinquent),
    Rule("very_low_score", "score", "decline", _score_below(560)),
    Rule("low_score", "score", "refer", _score_below(640)),
    Rule("high_utilization", "utilization", "refer", _high_utilization),
    Rule("heavy_gambling", "gambling", "decline", _gambling_over(0.25)),
    Rule("notable_gambling", "gambling", "refer", _gambling_over(0.10)),
    Rule("unaffordable", "affordability", "decline", _unaffordable(0.6)),
    Rule("stretched_affordability", "affordability", "refer", _unaffordable(0.35)),
    Rule("no_transaction_history", "transactions", "refer", _no_account),
    Rule("address_mismatch", "address", "refer", _address_mismatch),
)


def synthesize_credit_risk(run_input: dict[str, Any], outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    fired: list[dict[str, str]] = []
    families: set[str] = set()
    for rule in RULES:  # RULES lists each family's most severe tier first
        if rule.family in families:
            continue
        detail = rule.applies(run_input, outputs)
        if detail is not None:
            families.add(rule.family)
            fired.append({"rule": rule.id, "effect": rule.effect, "detail": detail})
    decision = max((f["effect"] for f in fired), key=_SEVERITY.__getitem__, default="approve")
    return {
        "decision": decision,
        "reasons": fired or [{"rule": "all_checks_passed", "effect": "approve", "detail": "no rule fired"}],
        "applicant_id": run_input["applicant_id"],
    }
