"""Approve and reject links from notifications: `GET /approve/{token}` shows the step and a
confirm button, `POST /approve/{token}` decides it.

No bearer token: the link token is the credential (signed, single-use, bound to the
HealingWorkflow, the step, its policy decision, approve or reject, and the recipient it was
sent to; it expires with the approval wait). Opening a link changes nothing (mail scanners
open links); only the confirm POST decides, as a grant the API signs for the recipient with
the approver role, which the workflow and `execute_action` check as any other approval.
Temporal's own error text stays in the server log.
"""

from __future__ import annotations

import asyncio
import html
import logging
from datetime import timedelta
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from temporalio.client import WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from aiops.auth import ApprovalRefused, Identity, Role
from aiops.auth.pending import signed_decision
from aiops.models.healing import HealingStatus, StepRecord
from aiops.notify.links import LinkClaims, LinkRefused, LinkSigner, UsedLinks, link_key
from aiops.notify.messages import describe_action
from workers.api.auth import Deps
from workers.api.backends import Backends

log = logging.getLogger("aiops.api")
router = APIRouter(tags=["approve links"])

_QUERY_TIMEOUT_S = 10.0
_UPDATE_TIMEOUT_S = 30.0
_MAX_FORM_BYTES = 8192
_HEADERS = {
    # the token is in the URL: not in caches, not in a Referer, and no page may frame the
    # confirm button (clickjacking)
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
}


class _Stop(Exception):
    """A page that says why nothing happens."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def _page(status: int, title: str, body: str) -> HTMLResponse:
    e = html.escape
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width'>"
        f"<title>{e(title)} - aiops</title>"
        "<style>body{font-family:sans-serif;max-width:42em;margin:2em auto;padding:0 1em}"
        "th{text-align:left;vertical-align:top;padding-right:1em}"
        "button{font-size:1.1em;padding:.5em 1.5em}</style></head><body>"
        f"<h1>{e(title)}</h1>{body}</body></html>",
        status_code=status,
        headers=_HEADERS,
    )


def _stopped(stop: _Stop) -> HTMLResponse:
    return _page(
        stop.status,
        stop.title,
        f"<p>{html.escape(stop.message)}</p><p>Nothing was changed.</p>",
    )


def _signer(b: Backends) -> LinkSigner:
    return LinkSigner(link_key(b.settings))


async def _claims(b: Backends, token: str) -> LinkClaims:
    try:
        claims = _signer(b).verify(token)
    except LinkRefused as refused:
        gone = "expired" in str(refused)
        raise _Stop(410 if gone else 400, "Link not usable", str(refused)) from None
    used = await UsedLinks(b.pool).get(claims.link_id)
    if used is not None:
        when = used.used_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        said = f" ({used.result})" if used.result else ""
        raise _Stop(410, "Link already used", f"This link was used on {when}{said}.")
    return claims


async def _pending_step(b: Backends, claims: LinkClaims) -> tuple[HealingStatus, StepRecord]:
    """The step the link is for, if it is still the one waiting, for the same decision."""
    handle = b.temporal.get_workflow_handle(claims.workflow_id)
    try:
        status: HealingStatus = await asyncio.wait_for(
            handle.query("status", result_type=HealingStatus), timeout=_QUERY_TIMEOUT_S
        )
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise _Stop(404, "Not found", f"{claims.workflow_id} does not exist.") from None
        log.warning("status query of %s failed: %s", claims.workflow_id, error)
        raise _Stop(502, "Try again", "The workflow cannot be read right now.") from None
    except TimeoutError:
        raise _Stop(
            504, "Try again", "The workflow did not answer (is a worker running?)."
        ) from None
    except WorkflowQueryFailedError as error:
        log.warning("status query of %s failed: %s", claims.workflow_id, error)
        raise _Stop(502, "Try again", "The workflow did not answer as a healing.") from None
    record = next((s for s in status.steps if s.step == claims.step), None)
    if status.pending_approval != claims.step or record is None:
        now = f"; it is {record.status}" if record is not None else ""
        raise _Stop(
            409,
            "No longer pending",
            f"Step {claims.step} of {claims.incident_id} is no longer waiting for approval"
            f"{now} (the healing is at: {status.phase}).",
        )
    if record.decision is None or record.decision.decision_id != claims.decision_id:
        raise _Stop(
            409,
            "No longer pending",
            f"Step {claims.step} of {claims.incident_id} was planned again since this link "
            "was sent: use the link of the newer notification.",
        )
    return status, record


def _facts(claims: LinkClaims, status: HealingStatus, record: StepRecord) -> str:
    e = html.escape
    rows = [
        ("Incident", claims.incident_id),
        ("Service", status.plan.service or claims.service or "-"),
        (f"Step {record.step}", describe_action(record.action)),
        ("Why it needs approval", record.decision.reason if record.decision else ""),
        ("Plan", status.plan.description),
        ("This link is for", claims.recipient),
        ("It expires", claims.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
    ]
    return (
        "<table>"
        + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows if v)
        + "</table>"
    )


@router.get("/approve/{token}", response_class=HTMLResponse)
async def show_link(token: str, b: Deps) -> HTMLResponse:
    """The pending step and a confirm button; opening the link decides nothing."""
    try:
        claims = await _claims(b, token)
        status, record = await _pending_step(b, claims)
    except _Stop as stop:
        return _stopped(stop)
    verb = "Approve" if claims.verdict == "approve" else "Reject"
    body = (
        f"<p>Step {html.escape(record.step)} of this incident waits for a decision.</p>"
        f"{_facts(claims, status, record)}"
        "<form method='post'>"
        "<p><label>Reason (optional)<br>"
        "<input type='text' name='reason' maxlength='500' size='50'></label></p>"
        f"<p><button type='submit'>{verb} step {html.escape(record.step)}</button></p>"
        "</form>"
    )
    return _page(200, f"{verb} step {record.step}?", body)


async def _reason(request: Request) -> str:
    raw = await request.body()
    if len(raw) > _MAX_FORM_BYTES:
        return ""
    values = parse_qs(raw.decode("utf-8", "replace")).get("reason", [""])
    return values[0].strip()[:500]


@router.post("/approve/{token}", response_class=HTMLResponse)
async def confirm_link(token: str, request: Request, b: Deps) -> HTMLResponse:
    """Decide the step the link is for, once, as the recipient it was sent to."""
    try:
        claims = await _claims(b, token)
        await _pending_step(b, claims)
    except _Stop as stop:
        return _stopped(stop)
    used = UsedLinks(b.pool)
    if not await used.use(claims):  # someone was quicker with the same link
        return _stopped(_Stop(410, "Link already used", "This link was used just now."))
    approved = claims.verdict == "approve"
    reason = await _reason(request) or f"via the approval link sent to {claims.recipient}"
    identity = Identity(sub=claims.recipient, roles=[Role.APPROVER], issuer="aiops-link")
    handle = b.temporal.get_workflow_handle(claims.workflow_id)
    try:
        decision = await signed_decision(
            b.temporal,
            b.signer,
            identity,
            claims.workflow_id,
            approved=approved,
            reason=reason,
            action_id=claims.step,
            ttl=min(
                timedelta(seconds=b.settings.approval_timeout_s),
                max(claims.expires_at - claims.issued_at, timedelta(seconds=60)),
            ),
        )
        # the grant must name the decision the link was made for (not a later re-plan)
        b.signer.verify(
            decision.grant,
            workflow_id=claims.workflow_id,
            step=claims.step,
            decision_id=claims.decision_id,
        )
        said: str = await asyncio.wait_for(
            handle.execute_update("decide", decision, result_type=str),
            timeout=_UPDATE_TIMEOUT_S,
        )
    except ApprovalRefused as refused:
        failure = _Stop(409, "Not decided", str(refused))
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        if isinstance(cause, ApplicationError):  # the workflow's own words
            failure = _Stop(409, "Not decided", cause.message)
        else:
            log.warning("decide on %s failed: %s (%r)", claims.workflow_id, error, cause)
            failure = _Stop(502, "Not decided", "Temporal refused the decision.")
    except TimeoutError:
        failure = _Stop(504, "Not confirmed", "The workflow did not take the decision in time.")
    except Exception:  # Temporal's text is for the log, not for the page
        log.exception("decide on %s failed", claims.workflow_id)
        failure = _Stop(502, "Not decided", "Temporal refused the decision.")
    else:
        await used.record_result(claims.link_id, said)
        log.info("%s decided on %s via a link: %s", claims.recipient, claims.workflow_id, said)
        return _page(
            200,
            "Approved" if approved else "Rejected",
            f"<p>{html.escape(said)}.</p><p>Incident {html.escape(claims.incident_id)} "
            "continues; this link cannot be used again.</p>",
        )
    await used.record_result(claims.link_id, f"not decided: {failure.message}")
    return _page(
        failure.status,
        failure.title,
        f"<p>{html.escape(failure.message)}</p><p>This link is used up; nothing was decided.</p>",
    )
