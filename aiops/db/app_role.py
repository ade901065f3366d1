"""The services' own database role: not the schema's owner, so it cannot switch off the
audit log's triggers or rewrite it (migration 016's `aiops_grant_app_role`)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import unquote, urlsplit

import asyncpg
from pydantic import BaseModel

from aiops.errors import AiopsError


class AppRoleError(AiopsError):
    """The app role cannot be set up; the message says what to do."""


class AppRoleReport(BaseModel):
    role: str
    created: bool
    password: Literal["set", "unchanged", "not given"]


def _user_and_password(url: str) -> tuple[str | None, str | None]:
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return user, password


async def ensure_app_role(owner_url: str, app_url: str) -> AppRoleReport:
    """Create the role `app_url` names if it is missing (LOGIN, its URL's password), set
    its password to the URL's when the owner may, and grant it what the services need.

    Run as the schema's owner after the migrations; idempotent."""
    role, password = _user_and_password(app_url)
    owner_role, _ = _user_and_password(owner_url)
    if not role:
        raise AppRoleError("AIOPS_APP_DATABASE_URL names no user: postgresql://ROLE:PASS@host/db")
    conn = await asyncpg.connect(owner_url)
    try:
        current = await conn.fetchval("SELECT current_user")
        if role in (owner_role, current):
            raise AppRoleError(
                f"AIOPS_APP_DATABASE_URL's role {role!r} is the one that runs the migrations: "
                "the services must run as a role that does not own the schema"
            )
        row = await conn.fetchrow(
            "SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = $1", role
        )
        if row is not None and row["rolsuper"]:
            raise AppRoleError(
                f"role {role!r} is a superuser: it could rewrite the audit log; "
                "give the services an ordinary role"
            )
        created = row is None
        state: Literal["set", "unchanged", "not given"] = "not given"
        try:
            if created:
                # the role name and password come from the operator's own URL; quoted by
                # the server (format %I/%L), never spliced in by hand
                statement = await conn.fetchval(
                    "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)",
                    role,
                    password,
                )
                await conn.execute(statement)
                state = "set" if password is not None else "not given"
            elif password is not None:
                statement = await conn.fetchval(
                    "SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)",
                    role,
                    password,
                )
                await conn.execute(statement)
                state = "set"
        except asyncpg.InsufficientPrivilegeError as error:
            if created:
                raise AppRoleError(
                    f"role {role!r} does not exist and {current!r} may not create roles "
                    f"({error}): create it once as a superuser (CREATE ROLE {role} LOGIN "
                    "PASSWORD '...'), then run `aiops migrate` again"
                ) from error
            state = "unchanged"  # an owner without CREATEROLE: the role keeps its password
        try:
            await conn.execute("SELECT aiops_grant_app_role($1)", role)
        except asyncpg.UndefinedFunctionError as error:
            raise AppRoleError(
                "aiops_grant_app_role is missing: the migrations did not run"
            ) from error
        return AppRoleReport(role=role, created=created, password=state)
    finally:
        await conn.close()
