"""What the monitor's workflow, activity and schedules exchange (pydantic, no I/O)."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, Field, ValidationError

from aiops.events.envelope import MONITOR_SOURCE as MONITOR_SOURCE  # re-exported

SCHEDULE_PREFIX: Final = "probe-"
PROBE_WORKFLOW: Final = "ProbeServiceWorkflow"
PROBE_ACTIVITY: Final = "probe_service"


class ProbeInput(BaseModel):
    """One probe of one service: what a probe schedule passes to each workflow run."""

    service: str
    timeout_s: float = Field(gt=0)
    realert_s: float = Field(ge=0)
    stream: str
    # a MetricReport with the latency of each healthy probe, for the anomaly detector
    report_latency: bool = True
    # failing this long before it is reported (a failure threshold, as Kubernetes'
    # failureThreshold x periodSeconds): a blip is not an incident, and a service's own,
    # more specific error report gets there first
    unhealthy_after_s: float = Field(default=0.0, ge=0)


class ProbeResult(BaseModel):
    service: str
    healthy: bool | None = None
    previous: bool | None = None
    latency_ms: float | None = None
    status_code: int | None = None
    error: str | None = None
    published: list[str] = Field(default_factory=list, description="event types published")
    skipped: str | None = Field(default=None, description="why nothing was probed")


class ProbeOverrides(BaseModel):
    """Per-service probe settings, read from the service definition's metadata."""

    probe_interval_s: float | None = Field(default=None, ge=1)
    probe_timeout_s: float | None = Field(default=None, gt=0)

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ProbeOverrides:
        """The overrides in the metadata; a malformed one is ignored (defaults apply)."""
        try:
            return cls.model_validate(
                {k: metadata[k] for k in ("probe_interval_s", "probe_timeout_s") if k in metadata}
            )
        except ValidationError:
            return cls()
