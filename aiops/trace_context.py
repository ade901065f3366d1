"""W3C trace context carried inside events, so a trace follows an event across Redis.

Redis Streams has no headers; the publisher's `traceparent` rides in the envelope and the
listener continues it when it opens or signals the incident. Without an active span (tracing
off, or a publisher that does not trace) nothing is added and nothing is continued.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()


def current_traceparent() -> str | None:
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def context_from(traceparent: str | None) -> Context | None:
    """The publisher's context, or None (a new trace) for a missing or malformed header."""
    if not traceparent:
        return None
    context = _PROPAGATOR.extract({"traceparent": traceparent})
    return context if trace.get_current_span(context).get_span_context().is_valid else None
