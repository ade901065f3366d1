"""The words of each notification: a title, a plain-text body and a small HTML body.

Everything a person needs to decide without opening a terminal: the incident, the service,
the step and its action, why it needs a person, the plan, the Web UI link, and for the
approval kinds an approve and a reject link made for that recipient.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from aiops.notify.models import APPROVAL_KINDS, NotificationKind, NotifyRequest
from aiops.policy.models import ActionSpec


@dataclass(frozen=True)
class ApprovalLinks:
    approve: str
    reject: str
    recipient: str
    expires_at: datetime


@dataclass(frozen=True)
class Message:
    title: str
    text: str
    html: str


def web_ui_link(web_ui_url: str | None, namespace: str, workflow_id: str) -> str | None:
    if not web_ui_url:
        return None
    return f"{web_ui_url.rstrip('/')}/namespaces/{namespace}/workflows/{workflow_id}"


def describe_action(action: ActionSpec) -> str:
    params = json.dumps(action.parameters, sort_keys=True, default=str)
    return f"{action.action_type} on {action.target}" + (f" {params}" if action.parameters else "")


def _title(request: NotifyRequest) -> str:
    where = request.service or request.incident_id
    step = f"step {request.step}: " if request.step else ""
    action = describe_action(request.action) if request.action else "an action"
    match request.kind:
        case NotificationKind.APPROVAL_REQUESTED:
            return f"[aiops] Approval needed on {where}: {step}{action}"
        case NotificationKind.APPROVAL_REMINDER:
            return f"[aiops] Reminder, approval still needed on {where}: {step}{action}"
        case NotificationKind.APPROVAL_TIMEOUT:
            return f"[aiops] No approval in time on {where}: escalated, nothing was done"
        case NotificationKind.ESCALATED_UNKNOWN:
            return f"[aiops] Unknown problem on {where}: escalated to you"
        case NotificationKind.REMEDIATION_FAILED:
            return f"[aiops] Remediation failed on {where}"
        case NotificationKind.FIXES_EXHAUSTED:
            return f"[aiops] No known fix worked on {where}: escalated to you"
        case NotificationKind.HEALED:
            return f"[aiops] Healed: {where}"
        case NotificationKind.AUDIT_BROKEN:
            return "[aiops] Audit log check failed: run `aiops audit verify`"
    raise AssertionError(request.kind)  # pragma: no cover


_LEAD = {
    NotificationKind.APPROVAL_REQUESTED: "A critical step waits for your approval. Nothing "
    "runs until someone approves it; when the wait ends without a decision the incident is "
    "escalated and nothing is done.",
    NotificationKind.APPROVAL_REMINDER: "Half of the approval time has passed and this "
    "critical step still waits for a decision.",
    NotificationKind.APPROVAL_TIMEOUT: "Nobody decided on this critical step in time. The "
    "incident is escalated; the step did not run.",
    NotificationKind.ESCALATED_UNKNOWN: "aiops knows no fix for this problem, so it did "
    "nothing and escalates it to a person.",
    NotificationKind.REMEDIATION_FAILED: "A remediation step failed; the steps done before "
    "it were rolled back (compensated).",
    NotificationKind.FIXES_EXHAUSTED: "aiops tried the fixes it knows for this problem, one "
    "after another, each rolled back when it failed; none healed it, so it stops and "
    "escalates it to a person.",
    NotificationKind.HEALED: "The incident healed and the service's health was verified.",
    NotificationKind.AUDIT_BROKEN: "The audit log's scheduled check failed: its rows no "
    "longer match the checkpoints of its head, or the anchor file was replaced or cut. "
    "Anchoring stops where the evidence is, until a person examines it with `aiops audit "
    "verify`.",
}


def _facts(request: NotifyRequest, expires_at: datetime | None) -> list[tuple[str, str]]:
    facts: list[tuple[str, str]] = [("Incident", request.incident_id)]
    if request.service:
        facts.append(("Service", request.service))
    if request.step or request.action:
        action = describe_action(request.action) if request.action else "?"
        facts.append((f"Step {request.step}" if request.step else "Action", action))
    if request.why:
        label = "Why it needs approval" if request.kind in APPROVAL_KINDS else "Why"
        facts.append((label, request.why))
    if request.plan_description:
        facts.append(("Plan", request.plan_description))
    if request.detail:
        facts.append(("Detail", request.detail))
    if expires_at is not None and request.kind in APPROVAL_KINDS:
        facts.append(
            ("Decide before", expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
        )
    return facts


def render(
    request: NotifyRequest,
    *,
    links: ApprovalLinks | None,
    web_ui: str | None,
    expires_at: datetime | None = None,
) -> Message:
    title = _title(request)
    lead = _LEAD[request.kind]
    facts = _facts(request, expires_at)
    cli = f"aiops approve {request.incident_id}"

    text = [lead, ""]
    text += [f"{label}: {value}" for label, value in facts]
    if request.kind in APPROVAL_KINDS:
        text.append("")
        if links is not None:
            text += [f"Approve: {links.approve}", f"Reject:  {links.reject}"]
            text.append(
                f"These links are for {links.recipient} only, work once, and expire with "
                "the approval wait. Each opens a page to confirm; nothing happens on opening."
            )
        text.append(f"Or from a terminal: {cli}   (add --reject to reject)")
    if web_ui:
        text += ["", f"Temporal Web UI: {web_ui}"]

    e = html.escape
    rows = "".join(
        f"<tr><th align='left' valign='top'>{e(label)}</th><td>{e(value)}</td></tr>"
        for label, value in facts
    )
    parts = [f"<p>{e(lead)}</p>", f"<table cellpadding='4'>{rows}</table>"]
    if request.kind in APPROVAL_KINDS:
        if links is not None:
            parts.append(
                f"<p><a href='{e(links.approve)}'><b>Approve step {e(request.step or '')}</b></a>"
                f" &nbsp; <a href='{e(links.reject)}'>Reject</a></p>"
                f"<p>Approve: {e(links.approve)}<br>Reject: {e(links.reject)}</p>"
                f"<p><small>These links are for {e(links.recipient)} only, work once, and "
                "expire with the approval wait. Each opens a page to confirm.</small></p>"
            )
        parts.append(f"<p>Or from a terminal: <code>{e(cli)}</code> (add --reject)</p>")
    if web_ui:
        parts.append(f"<p><a href='{e(web_ui)}'>Open in the Temporal Web UI</a>: {e(web_ui)}</p>")
    return Message(title=title, text="\n".join(text), html="\n".join(parts))
