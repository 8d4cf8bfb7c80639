"""Tool policy as data: which tools each client may call, with which arguments, how often; whose resources
and prompts it may use."""

from gateway.policy.document import PolicyDocument, PolicyError, RateLimit, parse_policy, read_policy_file
from gateway.policy.rules import (
    TOOL_SCOPE_PREFIX,
    PolicyVerdict,
    Subject,
    ToolPolicy,
    prompts_scope,
    resources_scope,
    tool_scope,
)
from gateway.policy.store import PolicyStore, WatchedPolicy, load_policy

__all__ = [
    "TOOL_SCOPE_PREFIX",
    "PolicyDocument",
    "PolicyError",
    "PolicyStore",
    "PolicyVerdict",
    "RateLimit",
    "Subject",
    "ToolPolicy",
    "WatchedPolicy",
    "load_policy",
    "parse_policy",
    "prompts_scope",
    "read_policy_file",
    "resources_scope",
    "tool_scope",
]
