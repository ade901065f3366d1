"""Each row's MAC covers the previous row's MAC and its own content, so changing or
deleting any row breaks every later link. The MAC is HMAC-SHA256 under a key the database
never sees (aiops/audit/keys.py): whoever holds the database credentials can still delete
or insert rows, but cannot make them verify. Rows written before the chain was keyed keep
their plain SHA-256 hashes and verify as a legacy prefix; an unkeyed row after a keyed one
is a forgery. Appends from many processes keep one chain by taking a transaction-scoped
advisory lock before reading the last MAC."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, Field, field_validator

from aiops.audit.keys import AuditKeys, audit_keys
from aiops.config import get_settings
from aiops.errors import AiopsError

GENESIS = "0" * 64
_LOCK_KEY = 0x0A0D17
LEGACY: Literal["sha256"] = "sha256"
KEYED: Literal["hmac-sha256"] = "hmac-sha256"
# rows fetched per round trip while verifying: a large log streams, never loads at once
_PREFETCH = 2000


class AuditKeyMismatch(AiopsError):
    """This process's audit key is not the one the log's head was written with."""


# float repr switches to an exponent from 1e16: jsonb reads that back as a plain integer
_EXPONENT_FROM = 1e16


def _as_jsonb_returns(value: Any) -> Any:
    """A details value as jsonb gives it back, so the MAC computed at append is the one
    verify recomputes from the stored row: a float written with an exponent comes back as
    the integer its text names, -0.0 as 0.0, and NaN or infinities (which JSON cannot hold)
    are kept as their names."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        if abs(value) >= _EXPONENT_FROM:
            return int(Decimal(repr(value)))
        return value + 0.0  # -0.0 -> 0.0: numeric has no negative zero
    if isinstance(value, Mapping):
        return {str(k): _as_jsonb_returns(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_jsonb_returns(v) for v in value]
    return value


class AuditEntry(BaseModel):
    actor: str = Field(min_length=1)
    action: str = Field(min_length=1)
    target: str | None = None
    decision: str = Field(min_length=1)
    details: dict[str, Any] = Field(default_factory=dict)
    workflow_id: str | None = None

    @field_validator("details")
    @classmethod
    def _stored_form(cls, value: dict[str, Any]) -> dict[str, Any]:
        normalised: dict[str, Any] = _as_jsonb_returns(value)
        return normalised


class AuditRecord(AuditEntry):
    seq: int
    ts: datetime
    prev_hash: str
    hash: str
    mac_alg: Literal["sha256", "hmac-sha256"] = KEYED


class Checkpoint(BaseModel):
    """The chain's head at one moment, signed with the anchor key: kept outside the table
    (a file, the Temporal history), it tells a truncated or rewritten tail from a log that
    simply ends there."""

    seq: int = Field(ge=0, description="last row anchored (0: the log was empty)")
    head: str = Field(description="MAC of row seq (GENESIS when empty)")
    legacy_rows: int = Field(ge=0, description="rows before the chain was keyed")
    ts: datetime
    sig: str = ""

    def payload(self) -> bytes:
        body = self.model_dump(mode="json", exclude={"sig"})
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def signed(self, anchor_key: bytes) -> Checkpoint:
        sig = hmac.new(anchor_key, self.payload(), hashlib.sha256).hexdigest()
        return self.model_copy(update={"sig": sig})

    def signature_ok(self, anchor_key: bytes) -> bool:
        expected = hmac.new(anchor_key, self.payload(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.sig)


class AuditVerification(BaseModel):
    ok: bool
    rows: int
    broken_seq: int | None = None
    reason: str = ""
    last_seq: int = 0
    head: str = GENESIS
    legacy_rows: int = 0
    anchors_checked: int = 0
    anchored_seq: int | None = None


_SELECT_ROWS = (
    "SELECT seq, ts, actor, action, target, decision, details, workflow_id, prev_hash, hash,"
    " mac_alg FROM audit_log"
)

# one encoder for every row: json.dumps would build one per call, a cost per verified row
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical(seq: int, ts: datetime, fields: Mapping[str, Any]) -> bytes:
    return _ENCODER.encode({"seq": seq, "ts": ts.astimezone(UTC).isoformat(), **fields}).encode()


def _mac(key: bytes, content: bytes) -> str:
    return hmac.digest(key, content, "sha256").hex()


def row_hash(prev_hash: str, seq: int, ts: datetime, entry: AuditEntry) -> str:
    """The legacy, unkeyed link: anyone can compute it, which is why it is legacy."""
    return hashlib.sha256(
        prev_hash.encode() + _canonical(seq, ts, entry.model_dump(mode="json"))
    ).hexdigest()


def row_mac(key: bytes, prev_hash: str, seq: int, ts: datetime, entry: AuditEntry) -> str:
    return _mac(key, prev_hash.encode() + _canonical(seq, ts, entry.model_dump(mode="json")))


def _row_fields(row: asyncpg.Record) -> dict[str, Any]:
    details = row["details"]
    return {
        "actor": row["actor"],
        "action": row["action"],
        "target": row["target"],
        "decision": row["decision"],
        "details": json.loads(details) if isinstance(details, str) else dict(details),
        "workflow_id": row["workflow_id"],
    }


def _entry(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(**_row_fields(row))


class _Walk:
    """The chain's state while rows stream by, oldest first; check() names the first break."""

    def __init__(self, key: bytes, anchors: Sequence[Checkpoint], since: Checkpoint | None):
        self.key = key
        self.anchors = {a.seq: a for a in anchors if a.seq > 0}
        latest = max(anchors, key=lambda a: a.seq, default=None)
        # unkeyed rows past the anchored legacy prefix were inserted without the key
        self.legacy_limit = latest.legacy_rows if latest else None
        self.latest = latest
        self.expected_seq = (since.seq if since else 0) + 1
        self.prev = since.head if since else GENESIS
        self.keyed = since is not None and since.seq > since.legacy_rows
        self.legacy_rows = since.legacy_rows if since else 0
        self.rows = 0
        self.anchors_checked = 0

    def check(self, row: asyncpg.Record) -> tuple[int, str] | None:
        seq: int = row["seq"]
        self.rows += 1
        if seq != self.expected_seq:
            return self.expected_seq, f"row {self.expected_seq} is missing (next is {seq}): deleted"
        if row["prev_hash"] != self.prev:
            return seq, f"row {seq} does not link to row {seq - 1}: deleted or replaced"
        content = self.prev.encode() + _canonical(seq, row["ts"], _row_fields(row))
        if row["mac_alg"] == KEYED:
            expected = _mac(self.key, content)
            if not hmac.compare_digest(expected, row["hash"]):
                return seq, (
                    f"row {seq} was changed after it was written, or forged: its HMAC does "
                    "not match the audit key"
                )
            self.keyed = True
        else:
            if self.keyed:
                return seq, (
                    f"row {seq} has a plain SHA-256 hash after keyed rows: inserted without "
                    "the audit key (forged)"
                )
            if self.legacy_limit is not None and seq > self.legacy_limit:
                return seq, (
                    f"row {seq} is unkeyed but the anchors keyed the chain after row "
                    f"{self.legacy_limit}: inserted without the audit key (forged)"
                )
            if hashlib.sha256(content).hexdigest() != row["hash"]:
                return seq, f"row {seq} was changed after it was written"
            self.legacy_rows = seq
        anchor = self.anchors.get(seq)
        if anchor is not None:
            self.anchors_checked += 1
            if not hmac.compare_digest(anchor.head, row["hash"]):
                return seq, (
                    f"row {seq} differs from the checkpoint of {anchor.ts:%Y-%m-%d %H:%M:%S}: "
                    "rewritten after it was anchored"
                )
        self.expected_seq, self.prev = seq + 1, row["hash"]
        return None

    def result(self, broken: tuple[int, str] | None = None) -> AuditVerification:
        return AuditVerification(
            ok=broken is None,
            rows=self.rows,
            broken_seq=broken[0] if broken else None,
            reason=broken[1] if broken else "",
            last_seq=self.expected_seq - 1,
            head=self.prev,
            legacy_rows=self.legacy_rows,
            anchors_checked=self.anchors_checked,
            anchored_seq=self.latest.seq if self.latest else None,
        )


class AuditLog:
    """Needs a pool from aiops.db.pool.create_pool (its JSON codecs). keys: the audit keys;
    None reads them from the process's settings (AIOPS_AUDIT_KEY or AIOPS_SECRET_KEY)."""

    def __init__(self, pool: asyncpg.Pool, keys: AuditKeys | None = None) -> None:
        self._pool = pool
        self._keys = keys

    @property
    def keys(self) -> AuditKeys:
        if self._keys is None:
            self._keys = audit_keys(get_settings())
        return self._keys

    async def append(self, entry: AuditEntry) -> AuditRecord:
        key = self.keys.chain
        # again here: model_copy(update=...) and model_construct skip the validator
        entry = entry.model_copy(update={"details": _as_jsonb_returns(entry.details)})
        # ts is truncated to microseconds, what timestamptz keeps, so the MAC re-computes
        ts = datetime.now(UTC)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            last = await conn.fetchrow(f"{_SELECT_ROWS} ORDER BY seq DESC LIMIT 1")
            if last is not None and last["mac_alg"] == KEYED:
                self._check_head(key, last)
            seq = (last["seq"] + 1) if last else 1
            prev = last["hash"] if last else GENESIS
            digest = row_mac(key, prev, seq, ts, entry)
            await conn.execute(
                """
                INSERT INTO audit_log (seq, ts, actor, action, target, decision, details,
                                       workflow_id, prev_hash, hash, mac_alg)
                OVERRIDING SYSTEM VALUE
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                """,
                seq,
                ts,
                entry.actor,
                entry.action,
                entry.target,
                entry.decision,
                entry.details,
                entry.workflow_id,
                prev,
                digest,
                KEYED,
            )
            # the identity sequence remembers the last row written: a deleted tail shows
            # unless the sequence is reset too, which the anchors (checkpoints) catch
            await conn.execute("SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), $1)", seq)
        return AuditRecord(
            **entry.model_dump(), seq=seq, ts=ts, prev_hash=prev, hash=digest, mac_alg=KEYED
        )

    def _check_head(self, key: bytes, head: asyncpg.Record) -> None:
        """One HMAC under the appenders' lock: a process holding another key (a secret
        generated on a workstation, another unit's AIOPS_HOME) fails here, loudly, before
        its row would break the chain for good."""
        content = head["prev_hash"].encode() + _canonical(
            head["seq"], head["ts"], _row_fields(head)
        )
        if hmac.compare_digest(_mac(key, content), head["hash"]):
            return
        raise AuditKeyMismatch(
            f"this process's audit key (from {self.keys.source or 'the caller'}) is not the "
            f"one row {head['seq']} of the audit log was written with, so nothing was "
            "appended: set AIOPS_AUDIT_KEY (or AIOPS_SECRET_KEY) to the value the worker "
            "and the API use. If they use this one, the head row was changed: run "
            "`aiops audit verify`."
        )

    async def verify(
        self, anchors: Sequence[Checkpoint] = (), since: Checkpoint | None = None
    ) -> AuditVerification:
        """Walk the chain (from `since`, a trusted checkpoint, else from row 1), checking
        every MAC and every anchored head; rows stream, memory stays flat."""
        walk = _Walk(self.keys.chain, anchors, since)
        # read under the appenders' lock: every row the sequence counts is committed, so
        # the snapshot taken after it holds them all
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
                written = await self._last_written(conn)
            start = since.seq if since else 0
            if since is not None and since.seq > 0:
                row = await conn.fetchrow("SELECT hash FROM audit_log WHERE seq = $1", since.seq)
                when = f"{since.ts:%Y-%m-%d %H:%M:%S}"
                if row is None:
                    return walk.result(
                        (
                            since.seq,
                            f"row {since.seq} is gone: the checkpoint of {when} "
                            "anchored it (deleted from the end)",
                        )
                    )
                if not hmac.compare_digest(row["hash"], since.head):
                    return walk.result(
                        (
                            since.seq,
                            f"row {since.seq} differs from the checkpoint of {when}: "
                            "rewritten after it was anchored",
                        )
                    )
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                query = f"{_SELECT_ROWS} WHERE seq > $1 ORDER BY seq"
                async for row in conn.cursor(query, start, prefetch=_PREFETCH):
                    broken = walk.check(row)
                    if broken is not None:
                        return walk.result(broken)
        last = walk.expected_seq - 1
        anchored = walk.latest.seq if walk.latest else 0
        if anchored > last:
            assert walk.latest is not None
            return walk.result(
                (
                    last + 1,
                    f"rows {last + 1}..{anchored} are missing: the checkpoint of "
                    f"{walk.latest.ts:%Y-%m-%d %H:%M:%S} anchored row {anchored} "
                    "(deleted from the end)",
                )
            )
        if written > last:
            return walk.result((last + 1, f"rows {last + 1}..{written} were deleted from the end"))
        return walk.result()

    async def checkpoint(
        self, previous: Checkpoint | None = None
    ) -> Checkpoint | AuditVerification:
        """A signed checkpoint of the head, after verifying the rows since `previous`; the
        failed verification instead when the chain is broken (never anchor a forgery)."""
        result = await self.verify(since=previous)
        if not result.ok:
            return result
        ts = datetime.now(UTC)
        return Checkpoint(
            seq=result.last_seq, head=result.head, legacy_rows=result.legacy_rows, ts=ts
        ).signed(self.keys.anchor)

    @staticmethod
    async def _last_written(conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> int:
        name = await conn.fetchval("SELECT pg_get_serial_sequence('audit_log', 'seq')")
        row = await conn.fetchrow(f"SELECT last_value, is_called FROM {name}")
        return int(row["last_value"]) if row and row["is_called"] else 0

    async def latest(self, action: str) -> AuditRecord | None:
        """The newest row of one action (e.g. the policy last recorded in force)."""
        found = await self.list(action=action, limit=1)
        return found[0] if found else None

    async def list(
        self, workflow_id: str | None = None, limit: int = 100, action: str | None = None
    ) -> list[AuditRecord]:
        rows = await self._pool.fetch(
            "SELECT * FROM audit_log WHERE ($1::text IS NULL OR workflow_id = $1)"
            " AND ($3::text IS NULL OR action = $3) ORDER BY seq DESC LIMIT $2",
            workflow_id,
            limit,
            action,
        )
        return [
            AuditRecord(
                **_entry(r).model_dump(),
                seq=r["seq"],
                ts=r["ts"],
                prev_hash=r["prev_hash"],
                hash=r["hash"],
                mac_alg=r["mac_alg"],
            )
            for r in reversed(rows)
        ]
