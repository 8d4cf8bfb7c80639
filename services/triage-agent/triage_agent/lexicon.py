"""What a ticket's words say about its category: weighted terms, each counted once per ticket.

A term found in the subject weighs half as much again as one found only in the body: customers put the
problem in the subject and the story in the body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from triage_agent.records import CATEGORIES, Category

SUBJECT_BOOST = 1.5


@dataclass(frozen=True)
class Term:
    category: Category
    label: str
    pattern: re.Pattern[str]
    weight: float


def _term(category: Category, label: str, regex: str, weight: float) -> Term:
    return Term(category, label, re.compile(rf"\b(?:{regex})\b", re.IGNORECASE), weight)


TERMS: tuple[Term, ...] = (
    _term("network", "internet", r"internet", 1.0),
    _term("network", "broadband", r"broadband", 1.5),
    _term("network", "connection", r"connect(?:ion|ivity|ed|s)?", 1.5),
    _term("network", "disconnects", r"disconnect(?:s|ed|ing|ion)?", 1.5),
    _term("network", "outage", r"outages?", 2.5),
    _term("network", "down", r"down", 1.5),
    _term("network", "slow", r"slow(?:ly|er|ness)?", 1.5),
    _term("network", "speed", r"speeds?", 1.0),
    _term("network", "wifi", r"wi-?fi", 1.5),
    _term("network", "router", r"router|hub", 1.5),
    _term("network", "dropping", r"drop(?:s|ping|ped)?(?: out)?", 1.5),
    _term("network", "latency", r"latency|lag(?:gy)?", 2.0),
    _term("network", "packet loss", r"packet loss", 2.0),
    _term("network", "buffering", r"buffer(?:s|ing)?", 1.5),
    _term("network", "offline", r"offline", 1.5),
    _term("network", "service unavailable", r"service unavailable|no service", 2.0),
    _term("network", "nothing loads", r"(?:nothing|not|won't) loads?|loading", 1.0),
    _term("billing", "invoice", r"invoices?", 2.0),
    _term("billing", "bill", r"bill(?:s|ed|ing)?", 1.5),
    _term("billing", "charged", r"charg(?:e|ed|es|ing)", 2.0),
    _term("billing", "overcharged", r"overcharg(?:e|ed|ing)", 3.0),
    _term("billing", "refund", r"refund(?:s|ed)?", 2.5),
    _term("billing", "payment", r"payments?", 1.5),
    _term("billing", "direct debit", r"direct debits?", 2.0),
    _term("billing", "paying", r"pay(?:ing|s)?|paid", 1.0),
    _term("billing", "price", r"prices?|costs?", 1.0),
    _term("billing", "money back", r"money back", 2.0),
    _term("billing", "twice", r"twice|double", 1.0),
    _term("access", "sign in", r"log ?in|sign ?in|logon", 2.0),
    _term("access", "password", r"passwords?", 2.5),
    _term("access", "locked", r"locked(?: out)?|lock ?out", 2.5),
    _term("access", "mfa", r"mfa|2fa|two-factor", 2.5),
    _term("access", "authenticator", r"authenticator", 2.5),
    _term("access", "verification code", r"(?:verification|security) codes?", 2.0),
    _term("access", "hacked", r"hacked|compromised", 3.0),
    _term("access", "portal", r"portal", 1.0),
    _term("access", "reset", r"reset", 1.0),
)


@dataclass(frozen=True)
class TextReading:
    scores: dict[Category, float]
    signals: list[str]


def read_text(subject: str, body: str) -> TextReading:
    """Each category's weight of evidence in the ticket's words, and the terms that carried it."""
    scores: dict[Category, float] = dict.fromkeys(CATEGORIES, 0.0)
    signals: list[str] = []
    for term in TERMS:
        if term.pattern.search(subject):
            weight = term.weight * SUBJECT_BOOST
        elif term.pattern.search(body):
            weight = term.weight
        else:
            continue
        scores[term.category] += weight
        signals.append(f"text ({term.category}): {term.label!r}")
    return TextReading({c: round(s, 3) for c, s in scores.items()}, signals)
