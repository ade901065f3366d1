"""Traces and metrics: one trace from the listener's signal through workflows to activities.

Tracing uses the SDK's OpenTelemetry plugin on every client (workers inherit it from their
client), with a replay-safe tracer provider so a replayed workflow emits no duplicate spans.
Spans go to the console by default, to an OTLP/HTTP collector when
OTEL_EXPORTER_OTLP_ENDPOINT is set, nowhere with AIOPS_TRACING=off. Temporal's own SDK
metrics are served for Prometheus on AIOPS_METRICS_BIND (`off` disables).
"""

from __future__ import annotations

import os
import sys

import opentelemetry.trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from temporalio.contrib.opentelemetry import OpenTelemetryPlugin, create_tracer_provider
from temporalio.plugin import SimplePlugin
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from aiops.config import Settings


def _processor(settings: Settings) -> SpanProcessor | None:
    if settings.tracing == "off":
        return None
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or settings.tracing == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return BatchSpanProcessor(OTLPSpanExporter())
    return SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr))


_installed: bool | None = None


def setup_tracing(settings: Settings, service_name: str) -> bool:
    """Install the global tracer provider once per process; False when tracing is off."""
    global _installed
    if _installed is not None:
        return _installed
    processor = _processor(settings)
    _installed = processor is not None
    if processor is None:
        return False
    provider = create_tracer_provider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(processor)
    opentelemetry.trace.set_tracer_provider(provider)
    return True


def plugins(settings: Settings, service_name: str) -> list[SimplePlugin]:
    if not setup_tracing(settings, service_name):
        return []
    # Temporal's own spans (StartWorkflow, RunWorkflow, RunActivity...) are what an operator
    # follows from the listener to the activities; without them only context is propagated.
    return [OpenTelemetryPlugin(add_temporal_spans=True)]


def runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime serving SDK metrics for Prometheus, or None for the default."""
    if settings.metrics_bind == "off":
        return None
    return Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=settings.metrics_bind))
    )
