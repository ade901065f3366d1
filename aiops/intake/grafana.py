"""Grafana unified alerting's webhook contact point: Alertmanager's shape plus its own
fields. Group: orgId, title, state, message; each alert: values, valueString, silenceURL,
dashboardURL, panelURL, imageURL. Mapped as Alertmanager's (source "grafana"); the
Grafana-only fields an alert carries go to payload.grafana (empty ones left out)."""

from __future__ import annotations

from typing import Any, Final

from pydantic import Field

from aiops.events.envelope import Event
from aiops.intake.alertmanager import Alert, NotificationGroup, alert_event
from aiops.intake.alerts import AlertMapping

SOURCE: Final = "grafana"


class GrafanaAlert(Alert):
    values: dict[str, Any] | None = None
    value_string: str | None = Field(default=None, alias="valueString")
    silence_url: str | None = Field(default=None, alias="silenceURL")
    dashboard_url: str | None = Field(default=None, alias="dashboardURL")
    panel_url: str | None = Field(default=None, alias="panelURL")
    image_url: str | None = Field(default=None, alias="imageURL")


class GrafanaMessage(NotificationGroup):
    """The body a Grafana webhook contact point posts."""

    org_id: int | None = Field(default=None, alias="orgId")
    title: str | None = None
    state: str | None = None
    message: str | None = None
    alerts: list[GrafanaAlert]


def _extra(alert: GrafanaAlert, message: GrafanaMessage) -> dict[str, Any]:
    found: dict[str, Any] = {
        "org_id": message.org_id,
        "values": alert.values,
        "value_string": alert.value_string,
        "silence_url": alert.silence_url,
        "dashboard_url": alert.dashboard_url,
        "panel_url": alert.panel_url,
        "image_url": alert.image_url,
    }
    return {"grafana": {k: v for k, v in found.items() if v not in (None, "", {})}}


def to_events(message: GrafanaMessage, mapping: AlertMapping) -> list[Event]:
    return [
        alert_event(alert, message, mapping, source=SOURCE, index=i, extra=_extra(alert, message))
        for i, alert in enumerate(message.alerts)
    ]
