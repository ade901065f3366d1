"""The append-only, hash-chained audit log of every decision, approval and action."""

from aiops.audit.chain import AuditEntry, AuditLog, AuditRecord, AuditVerification

__all__ = ["AuditEntry", "AuditLog", "AuditRecord", "AuditVerification"]
