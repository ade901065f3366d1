"""Signed approvals: a decision on one pending step that only a verified approver can make.

The API or `aiops approve` verifies the caller's token, reads the step that is pending,
and signs a grant (HS256, a key derived from the server's secret key) naming the approver,
the workflow, the step, the step's policy decision id and the digest of the action. The
workflow records a decision only with a valid grant, and `execute_action` checks the grant
again before any adapter runs, so neither a hand-sent signal nor a hand-started workflow
can approve anything.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from pydantic import BaseModel, Field, ValidationError

from aiops.auth.roles import Identity, Role, has_role
from aiops.errors import AiopsError
from aiops.policy.models import ActionSpec

_AUDIENCE = "aiops-approval"


class ApprovalRefused(AiopsError):
    """A grant is missing, forged, expired, or for another step; the message says which."""


def action_digest(action: ActionSpec, service: str | None) -> str:
    """What exactly is approved: the action and the service it acts on."""
    canonical = json.dumps(
        {"service": service, **action.model_dump(mode="json")},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class ApprovalGrant(BaseModel):
    """The signed content of an approval (or a rejection)."""

    approver: str = Field(min_length=1, description="the verified identity's subject")
    roles: list[Role]
    workflow_id: str
    step: str
    decision_id: str = Field(min_length=1, description="the pending step's policy decision")
    action_digest: str
    approved: bool
    reason: str = ""
    issued_at: datetime
    expires_at: datetime
    grant_id: str = Field(default_factory=lambda: uuid.uuid4().hex)


class ApprovalSigner:
    """Signs and verifies grants with one symmetric key (the server's, never a client's)."""

    def __init__(self, key: bytes, leeway_s: float = 30.0) -> None:
        if len(key) < 32:
            raise ValueError("an approval key needs at least 32 bytes")
        self._key = key
        self._leeway = leeway_s

    def grant(
        self,
        identity: Identity,
        *,
        workflow_id: str,
        step: str,
        decision_id: str,
        digest: str,
        approved: bool,
        reason: str = "",
        ttl: timedelta,
    ) -> str:
        """A signed grant; only an identity with the approver role gets one."""
        if not identity.can(Role.APPROVER):
            raise ApprovalRefused(f"{identity.sub} has no approver role")
        now = datetime.now(UTC)
        expires = now + ttl
        if identity.expires_at is not None:
            expires = min(expires, identity.expires_at)
        grant = ApprovalGrant(
            approver=identity.sub,
            roles=identity.roles,
            workflow_id=workflow_id,
            step=step,
            decision_id=decision_id,
            action_digest=digest,
            approved=approved,
            reason=reason,
            issued_at=now,
            expires_at=expires,
        )
        claims: dict[str, Any] = {
            **grant.model_dump(mode="json"),
            "aud": _AUDIENCE,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()) + 1,
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(
        self,
        token: str | None,
        *,
        workflow_id: str,
        step: str,
        decision_id: str | None,
        digest: str | None = None,
        now: datetime | None = None,
    ) -> ApprovalGrant:
        """The grant, if it is genuine, unexpired and for exactly this step; else refused.
        `now` lets a workflow's decision time be judged instead of the clock's."""
        if not token:
            raise ApprovalRefused("no signed approval: use `aiops approve` or the API")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                audience=_AUDIENCE,
                options={"require": ["exp", "iat"], "verify_exp": now is None},
                leeway=self._leeway,
            )
            grant = ApprovalGrant.model_validate(claims)
        except jwt.ExpiredSignatureError:
            raise ApprovalRefused("the signed approval has expired") from None
        except (jwt.PyJWTError, ValidationError) as error:
            raise ApprovalRefused(f"the signed approval is not valid: {error}") from None
        if now is not None and now > grant.expires_at + timedelta(seconds=self._leeway):
            raise ApprovalRefused("the signed approval had expired when it arrived")
        if not has_role(grant.roles, Role.APPROVER):
            raise ApprovalRefused(f"{grant.approver} has no approver role")
        if grant.workflow_id != workflow_id:
            raise ApprovalRefused(f"the approval is for {grant.workflow_id}, not {workflow_id}")
        if grant.step != step:
            raise ApprovalRefused(f"the approval is for step {grant.step}, not step {step}")
        if decision_id is None or grant.decision_id != decision_id:
            raise ApprovalRefused(
                "the approval is for another policy decision of this step (it was planned "
                "again since): approve the pending one"
            )
        if digest is not None and grant.action_digest != digest:
            raise ApprovalRefused("the approved action is not the one about to run")
        return grant
