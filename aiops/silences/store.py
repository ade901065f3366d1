"""Silences in PostgreSQL (schema/015) and maintenance windows from the registry."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from croniter import croniter

from aiops.audit import AuditEntry, AuditLog
from aiops.errors import AiopsError
from aiops.silences.models import LABEL_PREFIX, MATCH_FIELDS, Silence, SilenceCheck

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class SilenceError(AiopsError):
    exit_code = 2


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise SilenceError(f"bad duration {text!r}: use a number with s, m, h or d, e.g. 2h")
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


def parse_matchers(items: list[str]) -> dict[str, str]:
    """['event_type=ServiceError', 'label.env=prod'] -> a dict; unknown fields refused."""
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not value.strip():
            raise SilenceError(f"--match {item!r}: expected field=value")
        if key not in MATCH_FIELDS and not (key.startswith(LABEL_PREFIX) and len(key) > 6):
            raise SilenceError(
                f"--match {item!r}: the field is one of {', '.join(MATCH_FIELDS)} or label.<name>"
            )
        found[key] = value.strip()
    return found


def maintenance_window(windows: Any, now: datetime) -> tuple[datetime, str, str] | None:
    """(end, reason, cron) of the registry window `now` falls in, if any. A window is
    {cron, for, reason}: it opens at each cron time and lasts `for`."""
    if not isinstance(windows, list):
        return None
    for window in windows:
        if not isinstance(window, dict) or not isinstance(window.get("cron"), str):
            continue
        length = parse_duration(str(window.get("for", "1h")))
        opened = croniter(window["cron"], now).get_prev(datetime)
        if opened <= now < opened + length:
            reason = str(window.get("reason") or "maintenance window")
            return opened + length, reason, window["cron"]
    return None


def _silence(row: asyncpg.Record) -> Silence:
    matchers = row["matchers"]
    return Silence(
        id=row["id"],
        service=row["service"],
        matchers=json.loads(matchers) if isinstance(matchers, str) else dict(matchers),
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        reason=row["reason"],
        created_by=row["created_by"],
        expired_at=row["expired_at"],
    )


class SilenceStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add(
        self,
        *,
        service: str | None,
        matchers: dict[str, str],
        duration: timedelta,
        reason: str,
        created_by: str,
        via: str = "cli",
    ) -> Silence:
        if not reason.strip():
            raise SilenceError("a silence needs a reason (--reason), for whoever wonders later")
        row = await self._pool.fetchrow(
            "INSERT INTO silences (id, service, matchers, ends_at, reason, created_by)"
            " VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6) RETURNING *",
            uuid.uuid4(),
            service,
            matchers,
            duration.total_seconds(),
            reason,
            created_by,
        )
        assert row is not None
        silence = _silence(row)
        await self._audit(created_by, silence, "added", via)
        return silence

    async def _audit(self, actor: str, silence: Silence, decision: str, via: str) -> None:
        await AuditLog(self._pool).append(
            AuditEntry(
                actor=actor,
                action="silence",
                target=silence.service or "*",
                decision=decision,
                details={
                    "silence": str(silence.id),
                    "matchers": silence.matchers,
                    "ends_at": silence.ends_at.isoformat(),
                    "reason": silence.reason,
                    "via": via,
                },
            )
        )

    async def active(self) -> list[Silence]:
        rows = await self._pool.fetch(
            "SELECT * FROM silences WHERE expired_at IS NULL AND ends_at > now()"
            " AND starts_at <= now() ORDER BY ends_at"
        )
        return [_silence(r) for r in rows]

    async def all(self, limit: int = 200) -> list[Silence]:
        rows = await self._pool.fetch(
            "SELECT * FROM silences ORDER BY starts_at DESC LIMIT $1", limit
        )
        return [_silence(r) for r in rows]

    async def expire(self, silence_id: str, expired_by: str, via: str = "cli") -> Silence:
        try:
            key = uuid.UUID(silence_id)
        except ValueError:
            raise SilenceError(
                f"{silence_id!r} is not a silence id (see aiops silence list)"
            ) from None
        row = await self._pool.fetchrow(
            "UPDATE silences SET expired_at = now() WHERE id = $1 AND expired_at IS NULL"
            " AND ends_at > now() RETURNING *",
            key,
        )
        if row is None:
            raise SilenceError(f"no active silence {silence_id}")
        silence = _silence(row)
        await self._audit(expired_by, silence, "expired", via)
        return silence

    async def matching(
        self, check: SilenceCheck, windows: Any = None
    ) -> tuple[datetime, str, str] | None:
        """(until, reason, id) of the silence or window that holds the problem back."""
        holding = [s for s in await self.active() if s.matches(check)]
        if holding:
            longest = max(holding, key=lambda s: s.ends_at)
            return longest.ends_at, longest.reason, str(longest.id)
        window = maintenance_window(windows, datetime.now(UTC))
        if window is not None:
            until, reason, cron = window
            return until, reason, f"maintenance:{cron}"
        return None
