"""The orchestrator registers its own card, so its workflows are skills other orchestrators can discover.

That is what makes hierarchical workflows work: a step whose skill is a workflow (e.g. `credit-risk`) is
resolved through the registry like any specialist's skill, and dispatched to whichever orchestrator
serves it. Registration runs in the background with backoff (the registry fetches the card from this
service, which only answers once it has started); readiness waits for it.
"""

from __future__ import annotations

from functools import partial

from accord.agent.registration import Registration, register_with_registry
from accord.cards import WELL_KNOWN_PATHS


def self_registration(registry_url: str, base_url: str, timeout_s: float = 30.0) -> Registration:
    card_url = base_url.rstrip("/") + WELL_KNOWN_PATHS[0]
    return Registration(card_url, partial(register_with_registry, registry_url), timeout_s=timeout_s)
