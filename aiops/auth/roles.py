"""Roles and the verified identity a request or an approval carries."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class Role(StrEnum):
    VIEWER = "viewer"  # read incidents, services, the knowledge graph
    OPERATOR = "operator"  # publish events, retry, silence
    APPROVER = "approver"  # approve or reject a critical step
    ADMIN = "admin"  # the registry, the policy, producers, tools; everything


# Every role can read; admin can do everything. Operator and approver are separate duties:
# whoever sends events in is not by that the person who approves acting on them.
_GRANTS: dict[Role, frozenset[Role]] = {
    Role.VIEWER: frozenset({Role.VIEWER}),
    Role.OPERATOR: frozenset({Role.VIEWER, Role.OPERATOR}),
    Role.APPROVER: frozenset({Role.VIEWER, Role.APPROVER}),
    Role.ADMIN: frozenset(Role),
}


class Identity(BaseModel):
    """A caller whose token was verified."""

    sub: str = Field(min_length=1, description="who: the token's subject")
    roles: list[Role] = Field(default_factory=list)
    issuer: str = Field(default="aiops", description="aiops (shared secret) or the OIDC issuer")
    expires_at: datetime | None = None

    def can(self, role: Role) -> bool:
        return has_role(self.roles, role)


def has_role(roles: list[Role], needed: Role) -> bool:
    return any(needed in _GRANTS[role] for role in roles)


def parse_roles(value: object) -> list[Role]:
    """The roles a claim names; unknown names are ignored (an IdP has many groups)."""
    names: list[str]
    if isinstance(value, str):
        names = value.replace(",", " ").split()
    elif isinstance(value, list):
        names = [str(v) for v in value]
    else:
        names = []
    known = {r.value: r for r in Role}
    return [known[n] for n in dict.fromkeys(n.strip().lower() for n in names) if n in known]
