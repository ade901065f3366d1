"""The decision for one action: pure, so a workflow can call it deterministically."""

from __future__ import annotations

from aiops.policy.forbidden import forbidden_reason
from aiops.policy.models import (
    ACTION_CLASS_OF_TYPE,
    ActionSpec,
    Policy,
    PolicyContext,
    PolicyDecision,
)


def _command(action: ActionSpec) -> str:
    value = action.parameters.get("command")
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    return " ".join(str(value or "").upper().split())


def evaluate(policy: Policy, action: ActionSpec, context: PolicyContext) -> PolicyDecision:
    action_class = ACTION_CLASS_OF_TYPE.get(action.action_type.lower(), action.action_type)

    def deny(reason: str, rule: str) -> PolicyDecision:
        return PolicyDecision(
            verdict="deny", action_class=action_class, reason=f"refused: {reason}", rule=rule
        )

    forbidden = forbidden_reason(action)
    if forbidden is not None:
        return deny(f"{forbidden} is forbidden", "forbidden")
    if action_class not in ACTION_CLASS_OF_TYPE.values():
        return deny(f"unknown action type {action.action_type!r} (default deny)", "unknown")
    if action_class not in policy.allowed:
        return deny(f"{action_class} is not allowed by this policy", "allowed")
    if action_class == "execute":
        listed = [
            *policy.execute_allow.get(action.target, []),
            *(policy.execute_allow.get(context.target_kind, []) if context.target_kind else []),
        ]
        allowed = {" ".join(c.upper().split()) for c in listed}
        command = _command(action)
        if command not in allowed:
            return deny(
                f"{command or 'an empty command'} is not on the execute allow-list "
                f"for {action.target}",
                "execute_allow",
            )
    limit = policy.rate_limit
    if context.recent_actions_on_target >= limit.max_actions:
        return deny(
            f"rate limit: {context.recent_actions_on_target} actions on {action.target} in "
            f"the last {limit.window_s:.0f}s (at most {limit.max_actions})",
            "rate_limit",
        )
    radius = policy.blast_radius.max_concurrent_remediations
    if context.concurrent_remediations >= radius:
        return deny(
            f"blast radius: {context.concurrent_remediations} other remediation(s) running on "
            f"this service (at most {radius})",
            "blast_radius",
        )
    rules = policy.critical
    why = None
    if action.action_type in rules.action_types or action_class in rules.action_types:
        why = f"{action_class} is a critical action type"
    elif action.target in rules.targets:
        why = f"{action.target} is a critical target"
    elif rules.critical_services and context.service_critical:
        why = "the service is marked critical"
    if why is None and context.mode == "approve-all":
        why = "the service is in approve-all mode"
    if why is not None:
        return PolicyDecision(
            verdict="needs_approval",
            action_class=action_class,
            reason=f"approval needed: {why}",
            rule="critical",
            approval_timeout_s=policy.approval_timeout_s,
        )
    return PolicyDecision(
        verdict="allow", action_class=action_class, reason=f"{action_class} allowed", rule="allowed"
    )
