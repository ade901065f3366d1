"""Who is calling, what they may do, and approvals nobody can forge.

Identities come from JWT bearer tokens (a shared HS256 secret or an OIDC issuer's JWKS);
roles from a configurable claim. An approval of a critical step is a grant signed with a
key derived from the server's secret key, bound to the workflow, the step, its policy
decision and the action's digest, and checked where the action runs.
"""

from aiops.auth.approvals import (
    ApprovalGrant,
    ApprovalRefused,
    ApprovalSigner,
    action_digest,
)
from aiops.auth.roles import Identity, Role, has_role
from aiops.auth.tokens import AuthError, TokenVerifier, issue_token, parse_ttl

__all__ = [
    "ApprovalGrant",
    "ApprovalRefused",
    "ApprovalSigner",
    "AuthError",
    "Identity",
    "Role",
    "TokenVerifier",
    "action_digest",
    "has_role",
    "issue_token",
    "parse_ttl",
]
