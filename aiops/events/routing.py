"""Routing: subscriptions for agents, and problem events to one IncidentWorkflow each.

Problem events of one batch are grouped by fingerprint and sent as one signal-with-start
per fingerprint, carrying the count, the newest ids and a bounded sample: a storm of 10,000
identical errors is one workflow and a handful of signals, not 10,000 workflows. While a
signal to an incident is in flight, the next batches' observations for it are merged and
go as one signal when it returns, so Temporal is never asked more than it answers. After a
signal, an incident's next observations are held for AIOPS_INCIDENT_COALESCE_S and go as
one (sooner when the streams go quiet or the listener's pipeline is full); the first
observation of an incident not signalled within that interval goes at once. The events
of a held observation are acknowledged only once its signal is with Temporal.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal, Protocol

import redis.asyncio as aioredis
from opentelemetry import trace
from pydantic import BaseModel, Field, model_validator
from pydantic_core import to_json
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from aiops import search_attributes
from aiops.events.correlation import CorrelationWindow
from aiops.events.detection import TEXT_FIELDS, Detection, Detector
from aiops.events.envelope import MONITOR_SOURCE, Event, Severity
from aiops.events.retry import TRANSIENT, Backoff, retrying
from aiops.models.incident import (
    OBSERVED_EVENT_IDS,
    SAMPLE_PAYLOAD_BYTES,
    IncidentInput,
    IncidentStatus,
    Observation,
    SourceResolved,
)
from aiops.privacy import mask, mask_json
from aiops.trace_context import context_from

log = logging.getLogger(__name__)
_TRACER = trace.get_tracer(__name__)

# The workflow and signal are named, not imported: aiops never imports workflows/.
INCIDENT_WORKFLOW: Final = "IncidentWorkflow"
OBSERVE_SIGNAL: Final = "observe"
SOURCE_RESOLVED_SIGNAL: Final = "source_resolved"

_SEVERITY_ORDER: Final = {s: i for i, s in enumerate(Severity)}

# --- filters and subscriptions -------------------------------------------------------

Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "exists", "contains", "matches"]
_MISSING: Final = object()


class PayloadPredicate(BaseModel):
    """A test on one payload value, addressed by a dotted path ("http.status")."""

    path: str = Field(min_length=1)
    op: Op = "eq"
    value: Any = None

    @model_validator(mode="after")
    def _check(self) -> PayloadPredicate:
        if self.op == "matches":
            re.compile(str(self.value))
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError("op 'in' takes a list value")
        return self

    def holds(self, payload: dict[str, Any]) -> bool:
        found: Any = payload
        for part in self.path.split("."):
            if isinstance(found, dict) and part in found:
                found = found[part]
            else:
                found = _MISSING
                break
        if self.op == "exists":
            return (found is not _MISSING) == (self.value is None or bool(self.value))
        if found is _MISSING:
            return False
        try:
            return _compare(self.op, found, self.value)
        except TypeError:  # "gt" between a string and a number: no match, not an error
            return False


def _compare(op: Op, found: Any, value: Any) -> bool:
    match op:
        case "eq":
            return bool(found == value)
        case "ne":
            return bool(found != value)
        case "gt":
            return bool(found > value)
        case "gte":
            return bool(found >= value)
        case "lt":
            return bool(found < value)
        case "lte":
            return bool(found <= value)
        case "in":
            return bool(found in value)
        case "contains":
            return isinstance(found, str | list) and value in found
        case "matches":
            return isinstance(found, str) and re.search(str(value), found) is not None
    return False


class EventFilter(BaseModel):
    """Which events an agent sees. Every given criterion must hold; empty lists match all."""

    event_types: list[str] = Field(default_factory=list)
    # glob patterns, e.g. "import-*"
    sources: list[str] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list)
    min_severity: Severity | None = None
    payload: list[PayloadPredicate] = Field(default_factory=list)
    include_replays: bool = True

    def matches(self, event: Event) -> bool:
        if self.event_types and event.event_type not in self.event_types:
            return False
        if self.sources and not any(fnmatch.fnmatchcase(event.source, p) for p in self.sources):
            return False
        if self.services and event.service not in self.services:
            return False
        if self.min_severity is not None and (
            event.severity is None
            or _SEVERITY_ORDER[event.severity] < _SEVERITY_ORDER[self.min_severity]
        ):
            return False
        if event.replay and not self.include_replays:
            return False
        return all(p.holds(event.payload) for p in self.payload)


Handler = Callable[[Sequence[Event]], Awaitable[None]]


@dataclass
class Subscription:
    """An agent's interest: its handler gets each batch's matching events at once."""

    name: str
    filter: EventFilter
    handler: Handler
    delivered: int = 0
    failures: int = 0


# --- fingerprints (aiops.fingerprint implements this) ---------------------------------


class FingerprintResult(Protocol):
    @property
    def fingerprint(self) -> str: ...
    @property
    def template(self) -> str: ...


class Fingerprinter(Protocol):
    def add(
        self, message: str, service: str | None = None, category: str | None = None
    ) -> FingerprintResult: ...

    def identify(
        self, message: str, service: str | None = None, category: str | None = None
    ) -> tuple[str, str]:
        """add() as (fingerprint, template)."""
        ...


# --- incidents ------------------------------------------------------------------------


@dataclass
class _Group:
    detection: Detection
    fingerprint: str
    template: str
    newest: Event
    first: Event
    count: int = 0
    # the newest ids, oldest first (a storm's group keeps only the last few)
    ids: deque[tuple[datetime, uuid.UUID]] = field(
        default_factory=lambda: deque(maxlen=OBSERVED_EVENT_IDS)
    )


def masked_event(event: Event) -> Event:
    """The event with every string of its payload masked (PII, secrets)."""
    return event.model_copy(update={"payload": mask_json(event.payload)})


def sample_event(event: Event) -> Event:
    """What a signal carries of an event: masked, its payload cut to SAMPLE_PAYLOAD_BYTES
    (the text that identifies the problem and the size are kept; the whole event is in the
    event store), so every observe signal adds bounded bytes to an incident's history."""
    masked = masked_event(event)
    data = to_json(masked.payload)
    if len(data) <= SAMPLE_PAYLOAD_BYTES:
        return masked
    cut: dict[str, Any] = {"truncated": True, "payload_bytes": len(data)}
    for name in TEXT_FIELDS:
        value = masked.payload.get(name)
        if isinstance(value, str) and value.strip():
            cut[name] = value[: SAMPLE_PAYLOAD_BYTES // 2]
            break
    # the start of the JSON, cut on a character boundary
    cut["head"] = data[: SAMPLE_PAYLOAD_BYTES // 4].decode("utf-8", "ignore")
    return masked.model_copy(update={"payload": cut})


def merge(a: Observation, b: Observation) -> Observation:
    """Two observations of one incident as one signal: counts added, the newest sample and
    ids, the worse severity. The incident receives what both would have told it."""
    newer, older = (b, a) if b.last_seen >= a.last_seen else (a, b)
    ids = list(dict.fromkeys([*older.event_ids, *newer.event_ids]))[-OBSERVED_EVENT_IDS:]
    worse = a if a.severity.rank >= b.severity.rank else b
    return newer.model_copy(
        update={
            "count": a.count + b.count,
            "first_seen": min(a.first_seen, b.first_seen),
            "severity": worse.severity,
            "event_ids": ids,
        }
    )


def alert_fingerprint(event: Event) -> str | None:
    """The incident fingerprint of an alert from intake: its sender's own identity for it
    (Alertmanager's fingerprint, PagerDuty's dedup_key), so the same alert firing again is
    the same incident whatever its text, and its resolution finds that incident."""
    alert = event.payload.get("alert")
    if not isinstance(alert, dict):
        return None
    key = alert.get("fingerprint")
    if not isinstance(key, str) or not key:
        return None
    # scoped by the sending system only: a PagerDuty resolve names no component, yet must
    # find the incident its trigger opened (its dedup_key is the sender's identity of it)
    origin = alert.get("source") if isinstance(alert.get("source"), str) else event.source
    return hashlib.sha256(f"{origin}:{key}".encode()).hexdigest()[:16]


def coalesce(
    events: Sequence[Event], detector: Detector, fingerprinter: Fingerprinter
) -> list[Observation]:
    """One Observation per (fingerprint, replay) among the batch's problem events."""
    groups: dict[tuple[str, bool], _Group] = {}
    # the same text in a storm is fingerprinted once per batch
    memo: dict[tuple[str, str, str], tuple[str, str]] = {}
    for event in events:
        detection = detector.classify(event)
        if detection is None:
            continue
        key = (detection.text, detection.service, detection.category.value)
        known = memo.get(key)
        if known is None:
            # masked first: an e-mail or a token in a message is neither part of the
            # problem's identity nor something a workflow history may hold
            known = memo[key] = fingerprinter.identify(
                mask(detection.text), service=detection.service, category=detection.category.value
            )
        fingerprint, template = known
        fingerprint = alert_fingerprint(event) or fingerprint
        group = groups.get((fingerprint, event.replay))
        if group is None:
            group = groups[(fingerprint, event.replay)] = _Group(
                detection, fingerprint, template, event, event
            )
        group.count += 1
        if not group.ids or event.timestamp >= group.ids[-1][0]:
            group.ids.append((event.timestamp, event.id))
        elif len(group.ids) < OBSERVED_EVENT_IDS or event.timestamp > group.ids[0][0]:
            # out of order: keep the newest ones, oldest first
            newest = sorted([*group.ids, (event.timestamp, event.id)])[-OBSERVED_EVENT_IDS:]
            group.ids.clear()
            group.ids.extend(newest)
        if event.timestamp >= group.newest.timestamp:
            group.newest = event
            if detection.severity.rank >= group.detection.severity.rank:
                group.detection = detection
        if event.timestamp < group.first.timestamp:
            group.first = event
    return [
        Observation(
            fingerprint=g.fingerprint,
            template=g.template,
            category=g.detection.category,
            severity=g.detection.severity,
            service=g.detection.service,
            count=g.count,
            # what becomes a workflow input and signal: masked; the raw event stays in the
            # event store only
            sample=sample_event(g.newest),
            first_seen=g.first.timestamp,
            last_seen=g.newest.timestamp,
            replay=g.newest.replay,
            pattern_id=g.detection.pattern_id,
            event_ids=[event_id for _, event_id in g.ids],
        )
        for g in groups.values()
    ]


def is_health_symptom(event: Event) -> bool:
    """A health probe's ServiceUnhealthy: it says that a service is down, not why."""
    return event.event_type == "ServiceUnhealthy" and event.source == MONITOR_SOURCE


def workflow_id_for(observation: Observation) -> str:
    # Replays get their own incidents, so trying detection on history never touches a
    # live incident (or heals anything for an old problem).
    prefix = "incident-replay-" if observation.replay else "incident-"
    return prefix + observation.fingerprint


_TRANSIENT_RPC: Final = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.UNKNOWN,
        RPCStatusCode.CANCELLED,
    }
)


def is_transient_temporal_error(error: BaseException) -> bool:
    return isinstance(error, RPCError) and error.status in _TRANSIENT_RPC


@dataclass
class RoutingStats:
    observations: int = 0
    signals: int = 0
    failed: int = 0
    correlated: int = 0  # health-probe failures counted on the service's open incident
    # observations sent inside another's signal: the same incident, while one was in flight
    merged: int = 0


@dataclass
class _Outbox:
    """One incident's observations waiting while a signal to it is in flight, or while
    the interval after its last signal runs."""

    pending: Observation | None = None
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    sending: asyncio.Task[None] | None = None
    # set to end the interval early: the caller cannot wait (the pipeline is full, the
    # listener stops) and what is held goes now
    wake: asyncio.Event = field(default_factory=asyncio.Event)


# The phase an incident is in once it has resolved (its search attribute AiopsPhase).
RESOLVED_PHASE: Final = "cooling_down"
# How long a health-probe failure waits for the incident it belongs to to be started (by
# this listener or another) before it stands on its own.
JOIN_WAIT_S: Final = 10.0


@dataclass
class IncidentRouter:
    """Signal-with-start IncidentWorkflow `incident-<fingerprint>` per observation.

    What decides which incident an event goes to is never this process's memory alone:
    the incident itself is Temporal's (one running workflow per id, signal-with-start),
    and the correlation of health-probe failures with their service's own problem is in
    Redis when `redis` is given (the listener gives it), so any number of listeners, or
    one restarted, route a problem to one incident.

    At most one signal per incident is in flight from this router: observations for it that
    arrive meanwhile (the next batches of a storm) are merged and go as one signal when it
    returns, so the signals an incident receives follow Temporal's pace, not the stream's.
    After a signal, the incident's next observations are held for coalesce_s and go as one
    (or sooner on flush()): a storm costs Temporal a signal per incident per interval, not
    per batch. The first observation of an incident with no signal in the last interval
    goes at once, so detection never waits. A held observation's caller waits until its
    signal is sent: the listener acknowledges those events only then.
    """

    client: Client
    task_queue: str
    detector: Detector
    fingerprinter: Fingerprinter
    cool_down_s: float = 600.0
    max_retries: int = 2  # AIOPS_INCIDENT_MAX_RETRIES
    history_budget: int = 10_000  # AIOPS_INCIDENT_HISTORY_BUDGET
    concurrency: int = 32
    coalesce_s: float = 0.0  # AIOPS_INCIDENT_COALESCE_S; 0: no hold after a signal
    with_search_attributes: bool = True
    # A failed health probe of a service that, this recently, reported a problem of its own
    # is a symptom of that problem: it is counted on that incident instead of opening a
    # second one whose fix (a restart) would race the first's. 0 turns this off.
    correlate_s: float = 120.0
    stats: RoutingStats = field(default_factory=RoutingStats)
    redis: aioredis.Redis | None = None
    namespace: str = "aiops"
    correlation: CorrelationWindow = field(init=False)
    _outboxes: dict[str, _Outbox] = field(default_factory=dict)
    _limit: asyncio.Semaphore | None = None

    def __post_init__(self) -> None:
        self.correlation = CorrelationWindow(
            self.correlate_s, redis=self.redis, namespace=self.namespace
        )

    def observe(self, events: Sequence[Event]) -> list[Observation]:
        return coalesce(events, self.detector, self.fingerprinter)

    async def _symptom_owner(self, observation: Observation) -> str | None:
        """The incident a health-probe failure belongs to, if one is recent enough."""
        if observation.service is None or not is_health_symptom(observation.sample):
            return None
        return await self.correlation.owner(observation.service)

    async def signal(self, observation: Observation) -> None:
        sample = observation.sample
        incident = IncidentInput(
            event_type=sample.event_type,
            source=sample.source,
            payload=sample.payload,
            service=observation.service,
            severity=observation.severity,
            category=observation.category,
            fingerprint=observation.fingerprint,
            template=observation.template,
            event_id=sample.id,
            correlation_id=sample.correlation_id,
            replay=observation.replay,
            cool_down_s=self.cool_down_s,
            max_retries=self.max_retries,
            history_budget=self.history_budget,
            pattern_id=observation.pattern_id,
        )
        # the incident continues the publisher's trace when the event carries one
        with _TRACER.start_as_current_span(
            "route incident",
            context=context_from(sample.traceparent),
            attributes={
                "aiops.fingerprint": observation.fingerprint,
                "aiops.events": observation.count,
            },
        ):
            await self._signal(observation, incident)

    async def _signal(self, observation: Observation, incident: IncidentInput) -> None:
        owner = await self._symptom_owner(observation)
        if owner is not None and await self._joined(owner, observation):
            return
        try:
            await self._start_or_fall_back(observation, incident)
        except BaseException:
            if _owns(observation) and observation.service is not None:
                # no incident to join
                await self.correlation.forget(observation.service, workflow_id_for(observation))
            raise

    async def _joined(self, workflow_id: str, observation: Observation) -> bool:
        """Count the symptom on its service's incident while that incident still works on
        the problem; once it has resolved, a failing probe is news and opens its own."""
        handle = self.client.get_workflow_handle(workflow_id)
        deadline = time.monotonic() + JOIN_WAIT_S
        while True:
            resolved = await _resolved(handle)
            if resolved is None:
                # not started yet: whichever listener read the service's own problem is
                # starting it right now; wait for it, unless its start failed
                if time.monotonic() > deadline:
                    return False
                if await self.correlation.owner(observation.service or "") != workflow_id:
                    return False
                await asyncio.sleep(0.1)
                continue
            if resolved:
                return False
            try:
                await handle.signal(OBSERVE_SIGNAL, observation)
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:
                    raise
                return False  # closed since: the symptom stands on its own
            self.stats.correlated += 1
            return True

    async def _start_or_fall_back(self, observation: Observation, incident: IncidentInput) -> None:
        try:
            await self._start(observation, incident)
        except RPCError as error:
            # A cluster without aiops' search attributes registered would refuse every
            # incident; better an incident that cannot be searched by them than none.
            if not (
                self.with_search_attributes
                and error.status == RPCStatusCode.INVALID_ARGUMENT
                and "search attribute" in str(error).lower()
            ):
                raise
            log.warning(
                "Temporal refused the search attributes (%s); starting incidents without "
                "them. Register them with `temporal operator search-attribute create`.",
                error,
            )
            self.with_search_attributes = False
            await self._start(observation, incident)

    async def _start(self, observation: Observation, incident: IncidentInput) -> None:
        attributes = [
            SearchAttributePair(search_attributes.FINGERPRINT, observation.fingerprint),
            SearchAttributePair(search_attributes.CATEGORY, observation.category.value),
            SearchAttributePair(search_attributes.SEVERITY, observation.severity.value),
            SearchAttributePair(search_attributes.PHASE, "detected"),
        ]
        if observation.service:
            attributes.append(SearchAttributePair(search_attributes.SERVICE, observation.service))
        await self.client.start_workflow(
            INCIDENT_WORKFLOW,
            incident,
            id=workflow_id_for(observation),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal=OBSERVE_SIGNAL,
            start_signal_args=[observation],
            search_attributes=(
                TypedSearchAttributes(attributes) if self.with_search_attributes else None
            ),
            static_summary=f"{observation.category.value}: {observation.template}"[:200],
            rpc_timeout=timedelta(seconds=10),
        )

    async def deliver_resolutions(self, events: Sequence[Event]) -> int:
        """Tell the incidents of alerts that resolved at their source (Alertmanager's
        resolved, PagerDuty's resolve): an incident waiting on approval stops waiting. An
        alert with no incident open is only stored."""
        latest: dict[str, Event] = {}
        for event in events:
            alert = event.payload.get("alert")
            if event.replay or not isinstance(alert, dict) or alert.get("status") != "resolved":
                continue
            fingerprint = alert_fingerprint(event)
            if fingerprint is not None:
                latest[f"incident-{fingerprint}"] = event
        delivered = 0
        for workflow_id, event in latest.items():
            note = SourceResolved(source=event.source, event_id=str(event.id), at=event.timestamp)
            try:
                await self.client.get_workflow_handle(workflow_id).signal(
                    SOURCE_RESOLVED_SIGNAL, note
                )
                delivered += 1
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:
                    raise
        return delivered

    async def signal_all(self, observations: Sequence[Observation], *, hold: bool = True) -> None:
        """Send every observation; return once each has gone (or was refused). Those that
        fail because Temporal is away are retried with backoff until they go through; a
        refusal (bad request) is logged and dropped, since retrying it would stall the
        stream for nothing: the events are stored. hold=False: a caller that has nothing
        else to do meanwhile; what its incidents hold goes without waiting the interval."""
        if not observations:
            return
        self.stats.observations += len(observations)
        # a service's own problems first, shared before any of them is sent, so its
        # health-probe failures in this batch (here or in another listener) find them
        owners = {o.service: workflow_id_for(o) for o in observations if _owns(o) and o.service}
        await retrying(lambda: self.correlation.remember(owners), "sharing incident owners")
        await asyncio.gather(*(self._submit(o, hold) for o in observations))

    def holding(self) -> bool:
        """Whether an incident is within its interval, so an observation may be held now
        or soon."""
        return bool(self._outboxes)

    def flush(self) -> None:
        """End the interval of every incident holding an observation: it goes as soon as
        its signal can."""
        for box in self._outboxes.values():
            if box.pending is not None:
                box.wake.set()

    async def _submit(self, observation: Observation, hold: bool = True) -> None:
        if self._limit is None:
            self._limit = asyncio.Semaphore(self.concurrency)
        if observation.service is not None and is_health_symptom(observation.sample):
            # may join another incident: sent on its own, never merged
            await self._deliver(observation)
            return
        workflow_id = workflow_id_for(observation)
        box = self._outboxes.get(workflow_id)
        if box is None:
            box = self._outboxes[workflow_id] = _Outbox()
        if box.pending is None:
            box.pending = observation
        else:
            box.pending = merge(box.pending, observation)
            self.stats.merged += 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        box.waiters.append(done)
        if not hold:
            box.wake.set()
        if box.sending is None:
            box.sending = asyncio.create_task(self._drain(workflow_id, box))
        # shielded: a caller that gives up does not cancel a signal that others wait on
        await asyncio.shield(done)

    async def _drain(self, workflow_id: str, box: _Outbox) -> None:
        try:
            while box.pending is not None:
                observation, waiters = box.pending, box.waiters
                box.pending, box.waiters = None, []
                # a flush that comes while this one is sent ends the interval after it
                box.wake.clear()
                try:
                    await self._deliver(observation)
                except BaseException as error:
                    _settle(waiters, error)
                    if not isinstance(error, Exception):
                        _settle(box.waiters, error)
                        box.pending, box.waiters = None, []
                        raise
                    continue
                _settle(waiters, None)
                if self.coalesce_s > 0:
                    # the interval: what arrives meanwhile is merged and goes as one
                    try:
                        await asyncio.wait_for(box.wake.wait(), self.coalesce_s)
                    except TimeoutError:
                        pass
                    except BaseException as error:
                        # cancelled while holding: its waiters learn it, none hangs
                        _settle(box.waiters, error)
                        box.pending, box.waiters = None, []
                        raise
        finally:
            box.sending = None
            if self._outboxes.get(workflow_id) is box and box.pending is None:
                del self._outboxes[workflow_id]

    async def _deliver(self, observation: Observation) -> None:
        """One signal(-with-start), retried while Temporal is away."""
        assert self._limit is not None
        backoff = Backoff(first=0.2, cap=10.0)
        while True:
            try:
                async with self._limit:
                    await self.signal(observation)
            except Exception as error:
                if isinstance(error, TRANSIENT) or is_transient_temporal_error(error):
                    delay = backoff.next_delay()
                    log.warning(
                        "Temporal unavailable for incident %s (%s); retrying in %.1fs",
                        workflow_id_for(observation),
                        error,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                self.stats.failed += 1
                log.error(
                    "incident %s refused by Temporal, not retried: %s",
                    workflow_id_for(observation),
                    error,
                )
                return
            self.stats.signals += 1
            return


def _owns(observation: Observation) -> bool:
    """A service's own problem (not a probe's verdict on it, not a replay)."""
    return (
        observation.service is not None
        and not is_health_symptom(observation.sample)
        and not observation.replay
    )


def _settle(waiters: Sequence[asyncio.Future[None]], error: BaseException | None) -> None:
    for waiter in waiters:
        if waiter.done():
            continue
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)


async def _resolved(handle: WorkflowHandle[Any, Any]) -> bool | None:
    """Whether an incident has resolved (or closed); None when it has no run yet. Read from
    the server (its phase search attribute), so no worker needs to answer; a query when the
    cluster has no search attributes."""
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if description.status != WorkflowExecutionStatus.RUNNING:
        return True
    phase = description.typed_search_attributes.get(search_attributes.PHASE)
    if phase is not None:
        # the incident is resolved once it cools down (workflows/incident.py)
        return phase == RESOLVED_PHASE
    try:
        status = await asyncio.wait_for(
            handle.query("status", result_type=IncidentStatus), timeout=5
        )
    except (TimeoutError, RPCError, WorkflowQueryFailedError):
        return False  # no worker answers now: it has not resolved either
    return bool(status.resolved)


async def deliver(subscriptions: Sequence[Subscription], events: Sequence[Event]) -> None:
    """Hand each subscription its matching events. A failing agent is logged and counted;
    it never holds up the stream or the other agents."""
    for sub in subscriptions:
        matching = [e for e in events if sub.filter.matches(e)]
        if not matching:
            continue
        try:
            await sub.handler(matching)
            sub.delivered += len(matching)
        except Exception:
            sub.failures += 1
            log.exception("subscription %s failed on %d event(s)", sub.name, len(matching))
