"""Modes and silences over the API: who may read and change them, and the audit rows."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from temporalio.testing import WorkflowEnvironment
from test_api import api_client, api_settings, bearer, token

from aiops.auth.roles import Role


async def test_modes_need_admin_silences_an_operator_and_both_are_audited(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    address = temporal_env.client.service_client.config.target_host
    viewer = bearer(token(Role.VIEWER, sub="vera"))
    operator = bearer(token(Role.OPERATOR, sub="otto"))
    admin = bearer(token(Role.ADMIN, sub="ada"))
    async with api_client(api_settings(database_url, redis_url, address, tmp_path)) as api:
        assert (await api.get("/modes")).status_code == 401
        assert (await api.get("/modes", headers=viewer)).json() == []
        body = {"mode": "shadow", "reason": "first week"}
        assert (await api.put("/modes/billing", json=body, headers=operator)).status_code == 403
        put = await api.put("/modes/billing", json=body, headers=admin)
        assert put.status_code == 200 and put.json()["set_by"] == "ada"
        bad = await api.put("/modes/billing", json={"mode": "yolo"}, headers=admin)
        assert bad.status_code == 422
        assert [m["mode"] for m in (await api.get("/modes", headers=viewer)).json()] == ["shadow"]

        silence = {"service": "billing", "match": ["event_type=ServiceError"], "for": "2h"}
        refused = await api.post("/silences", json={**silence, "reason": "deploy"}, headers=viewer)
        assert refused.status_code == 403
        added = await api.post("/silences", json={**silence, "reason": "deploy"}, headers=operator)
        assert added.status_code == 201, added.text
        silence_id = added.json()["id"]
        wrong = await api.post(
            "/silences", json={**silence, "for": "soon", "reason": "x"}, headers=operator
        )
        assert wrong.status_code == 422 and "bad duration" in wrong.json()["detail"]
        listed = (await api.get("/silences", headers=viewer)).json()
        assert [s["id"] for s in listed] == [silence_id]
        assert (await api.delete(f"/silences/{silence_id}", headers=operator)).status_code == 200
        assert (await api.delete(f"/silences/{silence_id}", headers=operator)).status_code == 404
        assert (await api.delete("/modes/billing", headers=admin)).status_code == 200
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT actor, action, decision FROM audit_log WHERE action IN ('mode', 'silence')"
            " ORDER BY seq"
        )
    finally:
        await conn.close()
    assert [(r["actor"], r["action"], r["decision"]) for r in rows] == [
        ("ada", "mode", "shadow"),
        ("otto", "silence", "added"),
        ("otto", "silence", "expired"),
        ("ada", "mode", "cleared"),
    ]


async def test_an_operator_notes_an_incident_masked_and_audited_as_themselves(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    address = temporal_env.client.service_client.config.target_host
    viewer = bearer(token(Role.VIEWER, sub="vera"))
    operator = bearer(token(Role.OPERATOR, sub="otto"))
    path = "/incidents/incident-abc/notes"
    text = "rolled back deploy 42; asked ops@example.com, Bearer abcdef0123456789abcdef"
    async with api_client(api_settings(database_url, redis_url, address, tmp_path)) as api:
        body = {"note": text, "resolved": True}
        assert (await api.post(path, json=body, headers=viewer)).status_code == 403
        assert (await api.post(path, json={"note": ""}, headers=operator)).status_code == 422
        added = await api.post(path, json=body, headers=operator)
        assert added.status_code == 201, added.text
        listed = (await api.get(path, headers=viewer)).json()
    [note] = listed
    assert note["author"] == "otto" and note["resolved"] is True
    assert "rolled back deploy 42" in note["note"]
    assert "ops@example.com" not in note["note"] and "abcdef0123456789" not in note["note"]
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT actor, decision FROM audit_log WHERE action = 'note'")
    finally:
        await conn.close()
    assert row is not None and (row["actor"], row["decision"]) == ("otto", "resolved")
