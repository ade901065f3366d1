"""The append-only, keyed (HMAC) audit log of every decision, approval and action, and the
checkpoints of its head kept outside the database."""

from aiops.audit.anchors import AnchorError, AnchorFile
from aiops.audit.chain import (
    AuditEntry,
    AuditKeyMismatch,
    AuditLog,
    AuditRecord,
    AuditVerification,
    Checkpoint,
)
from aiops.audit.keys import AuditKeys, audit_keys, derive_audit_keys

__all__ = [
    "AnchorError",
    "AnchorFile",
    "AuditEntry",
    "AuditKeyMismatch",
    "AuditKeys",
    "AuditLog",
    "AuditRecord",
    "AuditVerification",
    "Checkpoint",
    "audit_keys",
    "derive_audit_keys",
]
