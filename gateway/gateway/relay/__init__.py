"""The gateway's A2A relay: every inter-agent message is authenticated, authorized by the delegation
policy, granted its step's tools, signed, forwarded, and answered with signed replies."""

from gateway.relay.delegation import DelegationPolicy, load_delegation, parse_delegation
from gateway.relay.gate import DELEGATE_SCOPE
from gateway.relay.service import RELAY_CARD_PATH, RELAY_PATH, Relay

__all__ = [
    "DELEGATE_SCOPE",
    "RELAY_CARD_PATH",
    "RELAY_PATH",
    "DelegationPolicy",
    "Relay",
    "load_delegation",
    "parse_delegation",
]
