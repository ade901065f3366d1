"""The Redis Streams listener process (`aiops listen`).

Reads every stream matching AIOPS_LISTENER_STREAMS in the consumer group
AIOPS_LISTENER_GROUP, stores valid events, dead-letters invalid ones and those their
stream may not send (AIOPS_EVENT_TRUST, `aiops producers`) and routes problems to
IncidentWorkflows. Run as many as you like: they share the group. SIGTERM (or Ctrl-C)
finishes the batch in hand, acknowledges it and exits; a second one exits at once, and
the unacknowledged entries are taken over by another listener after
AIOPS_LISTENER_CLAIM_IDLE_MS.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import socket
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Annotated, Final

import redis.asyncio as aioredis
import typer

from aiops.config import Settings, get_settings
from aiops.endpoints import resolve_database_url, resolve_redis_url
from aiops.errors import AiopsError
from aiops.events.cancel import cancel_and_wait
from aiops.events.consumer import StreamConsumer, split_patterns
from aiops.events.detection import DefaultDetector, Detector
from aiops.events.ingest import Ingestor, IngestStats
from aiops.events.retry import retrying
from aiops.events.routing import (
    Fingerprinter,
    IncidentRouter,
    Subscription,
    is_transient_temporal_error,
)
from aiops.events.store import EventStore
from aiops.events.trim import StreamTrimmer
from aiops.events.trust import EventTrust
from aiops.fingerprint import Fingerprinter as ProblemFingerprinter
from aiops.fingerprint.store import SharedTemplates
from aiops.patterns.detector import PatternDetector

log = logging.getLogger("aiops.listener")


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def default_fingerprinter(shared: SharedTemplates | None = None) -> Fingerprinter:
    return ProblemFingerprinter(shared=shared)


def make_ingestor(
    settings: Settings,
    client: aioredis.Redis,
    store: EventStore,
    *,
    consumer: str,
    incidents: IncidentRouter | None = None,
    subscriptions: Sequence[Subscription] = (),
    trust: EventTrust | None = None,
) -> Ingestor:
    """The listener's pipeline from settings: consume, validate, check trust (when given),
    store, route (what is not stale)."""
    stream_consumer = StreamConsumer(
        client,
        patterns=split_patterns(settings.listener_streams),
        group=settings.listener_group,
        consumer=consumer,
        dead_letter_stream=settings.dead_letter_stream,
        batch_size=settings.listener_batch_size,
        block_ms=settings.listener_block_ms,
        claim_idle_ms=settings.listener_claim_idle_ms,
        dead_letter_maxlen=settings.events_maxlen,
    )
    return Ingestor(
        stream_consumer,
        store,
        max_event_bytes=settings.events_max_payload_bytes,
        incidents=incidents,
        subscriptions=subscriptions,
        trust=trust,
        stale_after_s=settings.events_stale_after_s,
    )


async def run_listener(
    settings: Settings,
    *,
    consumer: str | None = None,
    incidents: bool = True,
    cool_down_s: float = 600.0,
    stop: asyncio.Event | None = None,
    detector: Detector | None = None,
    fingerprinter: Fingerprinter | None = None,
    subscriptions: Sequence[Subscription] = (),
    on_ready: Callable[[StreamConsumer], None] | None = None,
) -> IngestStats:
    """Run until stop is set (or SIGTERM/SIGINT when stop is not given)."""
    stop = stop or _stop_on_signals()
    name = consumer or consumer_name()
    client = aioredis.Redis.from_url(
        resolve_redis_url(settings),
        # longer than a blocking read, so only a dead connection times out
        socket_timeout=settings.listener_block_ms / 1000 + 15,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    store = await retrying(
        lambda: EventStore.connect(resolve_database_url(settings)), "connecting to PostgreSQL"
    )
    router: IncidentRouter | None = None
    shared: SharedTemplates | None = None
    patterns: PatternDetector | None = None
    trust = await retrying(
        lambda: EventTrust.start(settings, store.pool), "loading the event producers"
    )
    if incidents:
        from aiops.temporal_client import connect

        temporal = await retrying(
            lambda: connect(settings, "aiops-listener"),
            "connecting to Temporal",
            is_transient=lambda e: isinstance(e, RuntimeError) or is_transient_temporal_error(e),
        )
        if detector is None:
            # active patterns decide what is a problem; the default rules when none matches
            patterns = await PatternDetector.start(store.pool, reload_s=settings.pattern_reload_s)
        if fingerprinter is None and settings.fingerprint_shared:
            shared = SharedTemplates(
                resolve_database_url(settings), refresh_s=settings.fingerprint_refresh_s
            )
        router = IncidentRouter(
            temporal,
            task_queue=settings.temporal_task_queue,
            detector=detector or patterns or DefaultDetector(),
            fingerprinter=fingerprinter or default_fingerprinter(shared),
            cool_down_s=cool_down_s,
            max_retries=settings.incident_max_retries,
            history_budget=settings.incident_history_budget,
            correlate_s=settings.incident_correlate_s,
            coalesce_s=coalesce_interval(settings),
            # shared by every listener of the group: which incident a symptom joins
            redis=client,
            namespace=settings.listener_group,
        )
    ingestor = make_ingestor(
        settings,
        client,
        store,
        consumer=name,
        incidents=router,
        subscriptions=subscriptions,
        trust=trust,
    )
    log.info(
        "listener %s: streams %s, group %s, incidents %s, event trust %s",
        name,
        settings.listener_streams,
        settings.listener_group,
        "on" if router else "off",
        trust.mode,
    )
    pruning = (
        asyncio.create_task(prune_periodically(store, settings.events_retention_days))
        if settings.events_retention_days > 0
        else None
    )
    stream_consumer = ingestor.consumer
    trimmer = StreamTrimmer(client, settings.events_maxlen, settings.listener_group)
    trimming = asyncio.create_task(trimmer.run(lambda: stream_consumer.streams))
    try:
        await retrying(lambda: stream_consumer.discover(force=True), "discovering streams")
        if on_ready is not None:
            on_ready(stream_consumer)
        stats = await ingestor.run(stop)
        await stream_consumer.leave()
        routed = router.stats if router is not None else None
        log.info(
            "listener %s stopped: %s%s",
            name,
            stats.line(),
            f" signals={routed.signals} merged={routed.merged} correlated={routed.correlated}"
            if routed is not None
            else "",
        )
        return stats
    finally:
        trimming.cancel()
        if pruning is not None:
            pruning.cancel()
        await trust.aclose()
        if patterns is not None:
            await patterns.aclose()
        await client.aclose()
        await store.close()
        if shared is not None:
            shared.close()


# Entries held for the coalescing interval stay pending; one pending longer than
# AIOPS_LISTENER_CLAIM_IDLE_MS is claimed (by another listener, or this one) and counted
# again. The interval is kept to this share of it, the rest for storing and signalling.
COALESCE_SHARE_OF_CLAIM_IDLE: Final = 0.25


def coalesce_interval(settings: Settings) -> float:
    """AIOPS_INCIDENT_COALESCE_S, cut to its share of the claim idle time."""
    limit_s = settings.listener_claim_idle_ms / 1000 * COALESCE_SHARE_OF_CLAIM_IDLE
    if settings.incident_coalesce_s <= limit_s:
        return settings.incident_coalesce_s
    log.warning(
        "AIOPS_INCIDENT_COALESCE_S=%g is too long for AIOPS_LISTENER_CLAIM_IDLE_MS=%d "
        "(held entries would be claimed and counted twice); holding %g s instead",
        settings.incident_coalesce_s,
        settings.listener_claim_idle_ms,
        limit_s,
    )
    return limit_s


async def prune_periodically(
    store: EventStore, retention_days: float, every_s: float = 3600.0
) -> None:
    """The event store's retention: the raw payloads are kept this long, no longer. Every
    listener does it (a DELETE is idempotent); a failure waits for the next round."""
    while True:
        try:
            removed = await store.prune(timedelta(days=retention_days))
            if removed:
                log.info("pruned %d stored event(s) older than %g days", removed, retention_days)
        except Exception:
            log.exception("pruning the event store failed; trying again in %.0f s", every_s)
        await asyncio.sleep(every_s)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    leaving: list[asyncio.Task[None]] = []  # held: the loop keeps only weak references

    def on_signal(signum: int) -> None:
        if stop.is_set():
            # a second signal: leave now; unacknowledged entries are reclaimed later
            log.warning(
                "second %s: exiting without finishing the batch", signal.Signals(signum).name
            )
            if main is not None:
                # cancelled again until it ends: one cancel can be lost inside redis-py
                leaving.append(loop.create_task(cancel_and_wait(main)))
            return
        log.info("%s: finishing the batch in hand, then exiting", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    return stop


def listen(
    consumer: Annotated[
        str | None,
        typer.Option(help="consumer name in the group [default: host-pid-random]"),
    ] = None,
    incidents: Annotated[
        bool,
        typer.Option(
            "--incidents/--no-incidents",
            help="signal-with-start an IncidentWorkflow per problem fingerprint",
        ),
    ] = True,
    cool_down: Annotated[
        float, typer.Option(help="seconds without a new event before an incident closes")
    ] = 600.0,
) -> None:
    """Consume events: store the valid, dead-letter the invalid, route problems to Temporal.

    Streams, group, batch size and timings come from the AIOPS_LISTENER_* settings; which
    stream may speak for which service from AIOPS_EVENT_TRUST and `aiops producers`. Run
    several for more throughput or availability; SIGTERM finishes the batch and exits.
    """
    from aiops.logging_setup import configure_logging

    settings = get_settings()
    configure_logging(settings)
    gc.set_threshold(*GC_THRESHOLDS)
    asyncio.run(
        run_listener(
            settings,
            consumer=consumer,
            incidents=incidents,
            cool_down_s=cool_down,
            on_ready=freeze_heap,
        )
    )


# A batch's thousands of objects all live until it is stored and routed: the collector's
# default young passes (every 700 allocations) free nothing and walk them again and again,
# and each full pass walks everything the process holds (the Temporal client, the
# schemas). Young passes come every 50,000 allocations instead; cycles are still freed.
GC_THRESHOLDS: Final = (50_000, 20, 20)


def freeze_heap(_: StreamConsumer) -> None:
    """Once started: what start-up made lives as long as the process, so the collector
    stops walking it (gc.freeze); only what batches make is collected."""
    gc.collect()
    gc.freeze()


def main() -> None:
    """`python -m workers.listener [OPTIONS]`: the same as `aiops listen`."""
    import sys

    code = 0
    try:
        typer.run(listen)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except AiopsError as error:
        typer.echo(f"aiops listen: error: {error}", err=True)
        code = error.exit_code
    # as in workers/cli.py: the Temporal SDK's threads can abort finalization; leave cleanly
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
