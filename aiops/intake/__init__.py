"""Intake: what alerting tools post, turned into aiops events (no HTTP here).

Each sender has a module with its wire models (pydantic, extra fields allowed) and one
function that maps a validated body to Events: `alertmanager` (webhook payload version 4),
`grafana` (unified alerting webhook), `cloudevents` (CloudEvents 1.0 over HTTP, parsed by
the official SDK) and `pagerduty` (Events API v2 enqueue). `alerts` holds what they share:
the payload shape of an alert, event type and severity normalisation, and the settings
that say which labels name the service and which annotations hold the message.
The routes are in workers/api/intake.py; the mapping is documented in docs/intake.md.
"""

from __future__ import annotations

from aiops.intake.alerts import AlertMapping, IntakeError

__all__ = ["AlertMapping", "IntakeError"]
