"""Checkpoints of the audit chain's head, kept outside the table: one signed JSON line
each in a file the database cannot reach (and, by the worker, in the Temporal history of
AuditAnchorWorkflow). Whoever deletes the tail of the table and resets its sequence still
leaves a checkpoint naming a row that is no longer there."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from aiops.audit.chain import Checkpoint
from aiops.errors import AiopsError

ANCHOR_WORKFLOW = "AuditAnchorWorkflow"
ANCHOR_WORKFLOW_ID = "aiops-audit-anchor"
CHECKPOINT_ACTIVITY = "audit_checkpoint"
# bytes read from the end for the last line: a checkpoint is about 250
_TAIL = 8192


class AnchorRun(BaseModel):
    """AuditAnchorWorkflow's input, carried across continue-as-new."""

    interval_s: float = Field(gt=0)
    # checkpoints per run before continue-as-new: bounds the history (about 6 events each)
    budget: int = Field(default=500, ge=1)
    latest: Checkpoint | None = None
    # the problem people were told of, while it lasts: not told again at every round or run
    notified: str = ""


class CheckpointRequest(BaseModel):
    previous: Checkpoint | None = None


class CheckpointResult(BaseModel):
    checkpoint: Checkpoint | None = None
    written: bool = False
    problem: str = Field(default="", description="why no checkpoint: the chain is broken")


class AnchorError(AiopsError):
    """The anchor file is unreadable, or a line in it was not signed with the audit key."""


class AnchorFile:
    def __init__(self, path: Path, anchor_key: bytes) -> None:
        self.path = path
        self._key = anchor_key

    def read(self) -> list[Checkpoint]:
        """Every checkpoint, oldest first; AnchorError names the first bad line."""
        if not self.path.exists():
            return []
        found: list[Checkpoint] = []
        with self.path.open("rb") as lines:
            for number, raw in enumerate(lines, start=1):
                if not raw.strip():
                    continue
                if not raw.endswith(b"\n"):
                    break  # a write cut short by a crash: the line never counted
                try:
                    checkpoint = Checkpoint.model_validate_json(raw)
                except ValidationError:
                    raise AnchorError(f"{self.path} line {number} is not a checkpoint") from None
                if not checkpoint.signature_ok(self._key):
                    raise AnchorError(
                        f"{self.path} line {number} is not signed with the audit key: "
                        "forged, or the key changed"
                    )
                if found and checkpoint.seq < found[-1].seq:
                    raise AnchorError(
                        f"{self.path} line {number} anchors row {checkpoint.seq} after row "
                        f"{found[-1].seq}: the chain went back (it was truncated then)"
                    )
                found.append(checkpoint)
        return found

    def latest(self) -> Checkpoint | None:
        """The last line's checkpoint, read from the end of the file (it only grows)."""
        if not self.path.exists():
            return None
        with self.path.open("rb") as lines:
            return self._last(lines.fileno())

    def _last(self, fd: int) -> Checkpoint | None:
        size = os.fstat(fd).st_size
        tail = os.pread(fd, min(size, _TAIL), max(0, size - _TAIL))
        # the part after the last newline is a line cut short by a crash: it never counted
        whole = [line for line in tail.split(b"\n")[:-1] if line.strip()]
        if not whole:
            return None
        try:
            checkpoint = Checkpoint.model_validate_json(whole[-1])
        except ValidationError:
            raise AnchorError(f"{self.path}: its last line is not a checkpoint") from None
        if not checkpoint.signature_ok(self._key):
            raise AnchorError(f"{self.path}: its last line is not signed with the audit key")
        return checkpoint

    def append(self, checkpoint: Checkpoint) -> bool:
        """Add a line unless the file already anchors this row or a later one (a slower
        writer, a retried activity); True when written. Writers take the file's lock, and
        a line a crash left unfinished is cut off first."""
        if not checkpoint.signature_ok(self._key):
            raise AnchorError("refusing to anchor a checkpoint not signed with the audit key")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = checkpoint.model_dump_json().encode() + b"\n"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._cut_torn_line(fd)
            last = self._last(fd)
            if last is not None and checkpoint.seq <= last.seq:
                if checkpoint.seq == last.seq and checkpoint.head != last.head:
                    raise AnchorError(
                        f"{self.path} anchors row {last.seq} with another MAC: the row was "
                        "rewritten since, or the file belongs to another log"
                    )
                return False
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock
        return True

    @staticmethod
    def _cut_torn_line(fd: int) -> None:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        end = size
        while end > 0:
            chunk = os.pread(fd, min(end, _TAIL), max(0, end - _TAIL))
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                os.ftruncate(fd, end - len(chunk) + newline + 1)
                return
            end -= len(chunk)
        os.ftruncate(fd, 0)
