"""Approve and reject links: signed, single-use, for one step, one verdict and one person.

A link token is an HS256 JWT signed with a key derived (HKDF, its own info string) from the
server's secret key: neither the approval-grant key nor the bearer-token secret, so a link
can never pass for a grant or a login. It names the HealingWorkflow, the step, the step's
policy decision id, approve or reject, and the recipient it was sent to, and expires when
the approval wait ends. Using it writes its id to `approval_links_used`; a second use is
refused. The link is only the credential for the page; the decision itself is a grant the
API signs for the recipient, checked by the workflow and again where the action runs.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, Field, ValidationError

from aiops.config import Settings
from aiops.errors import AiopsError
from aiops.registry.secrets import secret_key_bytes

_AUDIENCE = "aiops-approval-link"
_INFO = b"aiops approval links v1"

Verdict = Literal["approve", "reject"]


class LinkRefused(AiopsError):
    """A link token is forged, malformed or expired; the message says which."""


def link_key(settings: Settings) -> bytes:
    return derive_link_key(secret_key_bytes(settings))


def derive_link_key(secret_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret_key)


def public_base(settings: Settings) -> str | None:
    """Where people reach `aiops api`: AIOPS_PUBLIC_URL, else AIOPS_API_URL, else None (no
    links: the message says how to decide with the CLI instead)."""
    base = settings.public_url or settings.api_url
    return base.rstrip("/") if base else None


def link_url(base: str, token: str) -> str:
    return f"{base.rstrip('/')}/approve/{token}"


class LinkClaims(BaseModel):
    link_id: str = Field(min_length=1)
    workflow_id: str = Field(min_length=1, description="the HealingWorkflow")
    incident_id: str
    step: str = Field(min_length=1)
    decision_id: str = Field(min_length=1)
    verdict: Verdict
    recipient: str = Field(min_length=1, description="who it was sent to: who decides")
    service: str | None = None
    issued_at: datetime
    expires_at: datetime


class LinkSigner:
    def __init__(self, key: bytes, leeway_s: float = 5.0) -> None:
        if len(key) < 32:
            raise ValueError("a link key needs at least 32 bytes")
        self._key = key
        self._leeway = leeway_s

    def sign(
        self,
        *,
        workflow_id: str,
        incident_id: str,
        step: str,
        decision_id: str,
        verdict: Verdict,
        recipient: str,
        service: str | None,
        expires_at: datetime,
        now: datetime | None = None,
    ) -> str:
        issued = now or datetime.now(UTC)
        if expires_at <= issued:
            raise LinkRefused("the approval wait has already ended: no link to make")
        claims = LinkClaims(
            link_id=uuid.uuid4().hex,
            workflow_id=workflow_id,
            incident_id=incident_id,
            step=step,
            decision_id=decision_id,
            verdict=verdict,
            recipient=recipient,
            service=service,
            issued_at=issued,
            expires_at=expires_at,
        )
        payload: dict[str, Any] = {
            **claims.model_dump(mode="json"),
            "aud": _AUDIENCE,
            "iat": int(issued.timestamp()),
            "exp": int(expires_at.timestamp()),
        }
        return jwt.encode(payload, self._key, algorithm="HS256")

    def verify(self, token: str) -> LinkClaims:
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                audience=_AUDIENCE,
                options={"require": ["exp", "iat", "aud"]},
                leeway=self._leeway,
            )
            return LinkClaims.model_validate(payload)
        except jwt.ExpiredSignatureError:
            raise LinkRefused("this link has expired (the approval wait is over)") from None
        except (jwt.PyJWTError, ValidationError):
            raise LinkRefused("this is not a valid approval link") from None


class UsedLink(BaseModel):
    link_id: str
    used_at: datetime
    recipient: str
    verdict: str
    result: str | None


class UsedLinks:
    """The ids of links already used (schema/012_approval_links.sql)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def use(self, claims: LinkClaims) -> bool:
        """Mark the link used; False when it was used before (by anyone, at any time)."""
        row = await self._pool.fetchval(
            """
            INSERT INTO approval_links_used (link_id, workflow_id, step, decision_id, verdict,
                                             recipient, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (link_id) DO NOTHING
            RETURNING link_id
            """,
            claims.link_id,
            claims.workflow_id,
            claims.step,
            claims.decision_id,
            claims.verdict,
            claims.recipient,
            claims.expires_at,
        )
        return row is not None

    async def record_result(self, link_id: str, result: str) -> None:
        await self._pool.execute(
            "UPDATE approval_links_used SET result = $2 WHERE link_id = $1", link_id, result[:500]
        )

    async def get(self, link_id: str) -> UsedLink | None:
        row = await self._pool.fetchrow(
            "SELECT link_id, used_at, recipient, verdict, result FROM approval_links_used"
            " WHERE link_id = $1",
            link_id,
        )
        return UsedLink(**dict(row)) if row is not None else None
