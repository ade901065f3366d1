"""Who may say what: the listener's check that an event's stream may speak for its service.

Redis does not record who wrote a stream entry, so the stream is the identity. With Redis
ACLs on, each producer has a user `producer-<name>` that may XADD to `events:<name>` only
(`aiops producers add`), and aiops' own user writes its internal streams. So:

* internal streams (the monitor's, `events:api`, the replay stream, `events:aiops*`) are
  trusted: only aiops writes them;
* on a producer's stream, an event must concern one of the producer's services (its
  `service`, or its `source` when it names none: that is what the adapters act on);
* no stream but an internal one may use a reserved source (`aiops-*`, `aiops`) or mark an
  event as a replay (replays are not stored and go to their own incidents);
* in "producers" mode, a stream that is neither internal nor a producer's is refused; in
  "open" mode (the dev stack) it passes as before.

An event refused is dead-lettered with a reason that says what to do; nothing is lost.

`check` runs per event in the listener's hot path: a dict lookup per stream, no I/O. The
producers table is reloaded in the background every few seconds, like the pattern library.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

import asyncpg

from aiops.config import Settings
from aiops.events.cancel import cancel_and_wait
from aiops.events.envelope import Event, is_reserved_source
from aiops.events.mesh import STREAM_PREFIX
from aiops.events.replay import REPLAY_STREAM
from aiops.producers.models import NAME_PATTERN, RESERVED_NAMES, RESERVED_PREFIX, Producer
from aiops.producers.store import ProducerStore

log = logging.getLogger(__name__)

TrustMode = Literal["open", "producers"]

RELOAD_S: Final = 5.0
# sources remembered as reserved or not (the hot path's second dict lookup)
MAX_CACHED_SOURCES: Final = 10_000
API_STREAM: Final = STREAM_PREFIX + "api"
INTERNAL_PREFIX: Final = STREAM_PREFIX + RESERVED_PREFIX  # events:aiops, events:aiops-patterns
# the source aiops' activities publish escalations and outcomes under
AIOPS_SOURCE: Final = "aiops"


def internal_streams(settings: Settings) -> frozenset[str]:
    """Streams only aiops itself writes (besides events:aiops*)."""
    return frozenset(
        {settings.monitor_stream, API_STREAM, REPLAY_STREAM, settings.dead_letter_stream}
        | {STREAM_PREFIX + name for name in RESERVED_NAMES}
    )


def is_internal_stream(stream: str, internal: Iterable[str]) -> bool:
    return stream in internal or stream.startswith(INTERNAL_PREFIX)


def reserved_source(source: str) -> bool:
    return is_reserved_source(source) or source.strip().lower() == AIOPS_SOURCE


@dataclass(frozen=True)
class _Own:
    """A producer's stream: the services it may speak for."""

    name: str
    services: frozenset[str]
    listed: str  # services as given, for the reasons


# what a stream is, besides a producer's (compared by identity)
_INTERNAL: Final = _Own("(aiops)", frozenset(), "")
_UNKNOWN: Final = _Own("(nobody)", frozenset(), "")


class EventTrust:
    def __init__(
        self,
        mode: TrustMode,
        *,
        internal: Iterable[str],
        producers: Iterable[Producer] = (),
        store: ProducerStore | None = None,
    ) -> None:
        self.mode = mode
        self.internal = frozenset(internal)
        self.store = store
        self.loaded = False
        self._own: dict[str, _Own] = {}
        self._kinds: dict[str, _Own] = {}
        self._reserved: dict[str, bool] = {}
        self._task: asyncio.Task[None] | None = None
        self.use(producers)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        producers: Iterable[Producer] = (),
        *,
        store: ProducerStore | None = None,
    ) -> EventTrust:
        return cls(
            settings.event_trust_mode,
            internal=internal_streams(settings),
            producers=producers,
            store=store,
        )

    # --- the hot path -----------------------------------------------------------------

    def check(self, stream: str, event: Event) -> str | None:
        """None when the event may come from this stream, else the dead-letter reason."""
        kind = self._kinds.get(stream)
        if kind is None:
            kind = self._kinds[stream] = self._kind(stream)
        if kind is _INTERNAL:
            return None
        source = event.source
        reserved = self._reserved.get(source)
        if reserved is None:
            if len(self._reserved) >= MAX_CACHED_SOURCES:
                self._reserved.clear()
            reserved = self._reserved[source] = reserved_source(source)
        if reserved:
            return (
                f"source {event.source!r} is reserved for aiops' own agents and stream "
                f"{stream} is not aiops': publish under the producer's own source name"
            )
        if event.replay:
            return (
                f"only aiops marks events as replays (on {REPLAY_STREAM}), not stream "
                f"{stream}: publish without the replay field"
            )
        if kind is not _UNKNOWN:
            service = event.service or source
            if service in kind.services:
                return None
            return _not_its_service(kind, service, named=event.service is not None)
        if self.mode == "producers":
            return _no_producer(stream)
        return None

    def _kind(self, stream: str) -> _Own:
        if is_internal_stream(stream, self.internal):
            return _INTERNAL
        return self._own.get(stream, _UNKNOWN)

    # --- the producers ----------------------------------------------------------------

    def use(self, producers: Iterable[Producer]) -> None:
        """Swap in a new view of the producers table (the per-stream cache starts over)."""
        own = {
            p.stream: _Own(p.name, frozenset(p.services), ",".join(p.services)) for p in producers
        }
        self._own, self._kinds = own, {}

    async def refresh(self) -> None:
        if self.store is None:
            return
        self.use(await self.store.list())
        self.loaded = True

    async def _reload_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("producers reload failed (keeping the loaded ones): %s", error)

    @classmethod
    async def start(
        cls, settings: Settings, pool: asyncpg.Pool, *, reload_s: float = RELOAD_S
    ) -> EventTrust:
        """Load the producers and keep them fresh in the background until aclose()."""
        trust = cls.from_settings(settings, store=ProducerStore(pool))
        try:
            await trust.refresh()
        except asyncpg.UndefinedTableError as error:
            # reloading keeps trying: the table appears once `aiops migrate` ran
            log.warning(
                "no producers table (%s): run `aiops migrate`; until then %s",
                error,
                "only aiops' own streams are trusted"
                if trust.mode == "producers"
                else "no producer is known",
            )
        trust._task = asyncio.create_task(trust._reload_forever(reload_s))
        log.info(
            "event trust %s: %d producer(s), internal streams %s",
            trust.mode,
            len(trust._own),
            ", ".join(sorted(trust.internal)) + f", {INTERNAL_PREFIX}*",
        )
        return trust

    async def aclose(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None


def _not_its_service(own: _Own, service: str, *, named: bool) -> str:
    fix = f"aiops producers set {own.name} --services {own.listed},{service}"
    if named:
        return f"producer {own.name} may not speak for service {service}: {fix}"
    return (
        f"producer {own.name} may not speak for service {service} (the event names no "
        f"service, so its source is the service acted on): set service to one of "
        f"{own.listed}, or {fix}"
    )


def _no_producer(stream: str) -> str:
    name = stream.removeprefix(STREAM_PREFIX)
    if stream.startswith(STREAM_PREFIX) and re.fullmatch(NAME_PATTERN, name):
        return (
            f"stream {stream} belongs to no producer: aiops producers add {name} "
            "--services ... (then publish with the producer's REDIS_URL)"
        )
    return (
        f"stream {stream} belongs to no producer and is not aiops' own: publish to "
        "events:<producer> with a producer's REDIS_URL (aiops producers add NAME --services ...)"
    )
