"""`aiops token create | verify` and the CLI's identity, as an operator runs them: the token
alone on stdout, verifiable with the roles asked for; refused where an IdP issues tokens;
registry changes from the CLI need an admin AIOPS_TOKEN and are audited under its sub."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import yaml

from aiops.auth import Role
from aiops.auth.keys import token_verifier
from aiops.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIOPS_", "TEMPORAL_"))}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    return {**env, "AIOPS_HOME": str(home), "AIOPS_TRACING": "off", **extra}


def aiops(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from workers.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
        check=False,
    )


def test_token_create_prints_a_token_that_verifies_with_its_roles(tmp_path: Path) -> None:
    env = _env(tmp_path)
    made = aiops(
        "token", "create", "--role", "approver", "--role", "viewer", "--sub", "alice",
        "--ttl", "8h", env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert len(lines) == 1 and lines[0].count(".") == 2  # only the JWT: $(...) works
    token = lines[0]
    # the secret was generated under AIOPS_HOME, where the API and the CLI find it
    assert (tmp_path / "jwt.secret").exists()
    identity = token_verifier(Settings(home=tmp_path)).verify(token)
    assert identity.sub == "alice" and identity.roles == [Role.APPROVER, Role.VIEWER]
    assert identity.expires_at is not None

    checked = aiops("token", "verify", env={**env, "AIOPS_TOKEN": token})
    assert checked.returncode == 0, checked.stderr
    shown = json.loads(checked.stdout)
    assert shown["sub"] == "alice" and shown["roles"] == ["approver", "viewer"]
    assert shown["issuer"] == "aiops" and shown["expires_at"]

    # another installation (another secret) does not accept it
    elsewhere = aiops("token", "verify", token, env=_env(tmp_path / "other"))
    assert elsewhere.returncode != 0 and "invalid token" in elsewhere.stderr


def test_token_create_refuses_bad_input_and_oidc_setups(tmp_path: Path) -> None:
    env = _env(tmp_path)
    bad_role = aiops("token", "create", "--role", "root", "--sub", "x", env=env)
    assert bad_role.returncode != 0 and "root" in bad_role.stderr
    bad_ttl = aiops("token", "create", "--role", "viewer", "--sub", "x", "--ttl", "soon", env=env)
    assert bad_ttl.returncode != 0 and "bad duration" in bad_ttl.stderr
    no_role = aiops("token", "create", "--sub", "x", env=env)
    assert no_role.returncode != 0
    oidc = _env(tmp_path, AIOPS_OIDC_ISSUER="https://idp.example", AIOPS_OIDC_AUDIENCE="aiops")
    refused = aiops("token", "create", "--role", "admin", "--sub", "x", env=oidc)
    assert refused.returncode == 2 and "identity" in refused.stderr and refused.stdout == ""
    # with a shared secret as well, local tokens can be issued next to the IdP's
    both = aiops(
        "token", "create", "--role", "admin", "--sub", "x",
        env={**oidc, "AIOPS_JWT_SECRET": "a-shared-secret-for-local-tokens-0123456789"},
    )  # fmt: skip
    assert both.returncode == 0, both.stderr
    helped = aiops("token", "create", "--help", env=env)
    assert helped.returncode == 0
    assert "approver" in helped.stdout and "AIOPS_TOKEN" in helped.stdout


def test_registry_changes_from_the_cli_need_an_admin_token(
    tmp_path: Path, database_url: str
) -> None:
    service = tmp_path / "shop.yaml"
    service.write_text(
        yaml.safe_dump(
            {"name": "shop", "endpoint": "http://127.0.0.1:9", "env": {"API_KEY": "value-123"}}
        )
    )
    base = _env(tmp_path, DATABASE_URL=database_url)

    def token(*roles: str, sub: str) -> str:
        argv = ["token", "create", "--sub", sub]
        for role in roles:
            argv += ["--role", role]
        made = aiops(*argv, env=base)
        assert made.returncode == 0, made.stderr
        return made.stdout.strip()

    signed = {**base, "AIOPS_APPROVALS": "signed"}
    unauthenticated = aiops("services", "register", str(service), env=signed)
    assert unauthenticated.returncode == 2 and "AIOPS_TOKEN" in unauthenticated.stderr
    viewer = aiops(
        "services", "register", str(service),
        env={**signed, "AIOPS_TOKEN": token("viewer", "approver", sub="vic")},
    )  # fmt: skip
    assert viewer.returncode == 2 and "admin" in viewer.stderr
    forged = aiops("services", "register", str(service), env={**signed, "AIOPS_TOKEN": "x.y.z"})
    assert forged.returncode == 2 and "not accepted" in forged.stderr

    admin = {**signed, "AIOPS_TOKEN": token("admin", sub="root-admin")}
    registered = aiops("services", "register", str(service), env=admin)
    assert registered.returncode == 0, registered.stderr
    removed = aiops("services", "deregister", "shop", env=admin)
    assert removed.returncode == 0, removed.stderr

    # open mode without a token: allowed, as the OS user, with a warning
    opened = aiops("services", "register", str(service), env={**base, "AIOPS_APPROVALS": "open"})
    assert opened.returncode == 0, opened.stderr
    assert "unauthenticated without AIOPS_TOKEN" in opened.stderr

    async def audit() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetch(
                "SELECT actor, decision, details::text AS details FROM audit_log"
                " WHERE action = 'registry' ORDER BY seq"
            )
        finally:
            await conn.close()

    rows = asyncio.run(audit())
    assert [(r["actor"], r["decision"]) for r in rows] == [
        ("root-admin", "registered"),
        ("root-admin", "deregistered"),
        (getpass.getuser(), "registered"),
    ]
    assert all("value-123" not in r["details"] for r in rows)
    first = json.loads(rows[0]["details"])
    assert first["via"] == "cli" and first["env"] == {"added": ["API_KEY"]}


def test_approve_needs_a_token_in_signed_mode(tmp_path: Path) -> None:
    refused = aiops(
        "approve", "incident-x", "--approver", "alice",
        env=_env(tmp_path, AIOPS_APPROVALS="signed"),
    )  # fmt: skip
    assert refused.returncode != 0
    assert "export AIOPS_TOKEN=$(aiops token create --role approver --sub you)" in refused.stderr
    token = aiops("token", "create", "--role", "approver", "--sub", "bob", env=_env(tmp_path))
    mismatch = aiops(
        "approve", "incident-x", "--approver", "alice",
        env=_env(tmp_path, AIOPS_APPROVALS="signed", AIOPS_TOKEN=token.stdout.strip()),
    )  # fmt: skip
    assert mismatch.returncode != 0 and "bob" in mismatch.stderr
