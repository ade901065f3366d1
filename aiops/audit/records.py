"""Audit rows for changes made outside a workflow: who made them from a command line, and
the policy a worker enforces (recorded at its start when it differs from the last one)."""

from __future__ import annotations

import getpass
import hashlib
from pathlib import Path

from aiops.audit.chain import AuditEntry, AuditLog, AuditRecord
from aiops.auth.keys import token_verifier
from aiops.auth.tokens import AuthError
from aiops.config import Settings
from aiops.policy.loader import DEFAULT_POLICY, load_policy

POLICY_ACTION = "policy"


def cli_actor(settings: Settings) -> str:
    """The sub of a valid AIOPS_TOKEN, else the OS user: who ran the command. Recording
    only: the commands that require a role check it themselves."""
    if settings.token is not None:
        try:
            return token_verifier(settings).verify(settings.token.get_secret_value()).sub
        except AuthError:
            pass
    try:
        return f"os:{getpass.getuser()}"
    except (OSError, KeyError):
        return "os:unknown-user"


def policy_digest(path: Path | None) -> str:
    """SHA-256 of the policy in force (the shipped default with the file laid over it), so
    a changed default counts as much as a changed file."""
    return hashlib.sha256(load_policy(path).model_dump_json().encode()).hexdigest()


async def record_policy(log: AuditLog, path: Path | None, actor: str) -> AuditRecord | None:
    """Append a `policy` row when the policy in force differs from the last recorded one."""
    digest = policy_digest(path)
    last = await log.latest(POLICY_ACTION)
    previous = last.details.get("digest") if last else None
    if previous == digest:
        return None
    return await log.append(
        AuditEntry(
            actor=actor,
            action=POLICY_ACTION,
            target=str(path or DEFAULT_POLICY),
            decision="in force",
            details={"digest": digest, "previous_digest": previous, "file": str(path or "")},
        )
    )
