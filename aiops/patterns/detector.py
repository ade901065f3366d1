"""PatternDetector: the pattern library decides which events are problems.

When active patterns match an event, the best of them (highest severity, then confidence,
then the most rules: the most specific) decides:

* category: the event's own when its type names one (a ServiceTimeout stays a timeout),
  else the pattern type's: error and security are errors, performance and behavioral
  anomalies;
* severity: the pattern's (low, medium, high, critical; event levels such as error or
  warning are read as high and medium), else as the default rules give it;
* text (what is fingerprinted): the event's message when it has one, else the pattern's
  description, so each pattern is its own problem rather than one per event type.

An event no pattern matches is classified by the fallback (DefaultDetector), so a library
with no patterns behaves exactly as before.

`classify` runs in the listener's hot path and never touches the database. A background
task polls the library's version every `reload_s` seconds and swaps in a newly compiled
matcher when patterns were added, evolved or retired, so a running listener picks up
evolved patterns without a restart. The same task adds the match counts to the patterns'
`occurrences`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any, Final

import asyncpg

from aiops.events.cancel import cancel_and_wait
from aiops.events.detection import (
    INTERNAL_TYPES,
    MAX_TEXT,
    TEXT_FIELDS,
    DefaultDetector,
    Detection,
    Detector,
    default_severity,
    type_category,
)
from aiops.events.envelope import Event
from aiops.models.incident import ProblemCategory, ProblemSeverity
from aiops.patterns.matcher import CompiledPattern, PatternMatcher
from aiops.patterns.models import Pattern, PatternType
from aiops.patterns.store import PatternLibrary
from aiops.policy.models import ActionSpec

log = logging.getLogger(__name__)

CATEGORY_OF_TYPE: Final = {
    PatternType.ERROR: ProblemCategory.ERROR,
    PatternType.SECURITY: ProblemCategory.ERROR,
    PatternType.PERFORMANCE: ProblemCategory.ANOMALY,
    PatternType.BEHAVIORAL: ProblemCategory.ANOMALY,
}


# a pattern's severity may be written on the event scale too
_SEVERITY_NAMES: Final = {
    **{s.value: s for s in ProblemSeverity},
    "fatal": ProblemSeverity.CRITICAL,
    "error": ProblemSeverity.HIGH,
    "warning": ProblemSeverity.MEDIUM,
    "warn": ProblemSeverity.MEDIUM,
    "info": ProblemSeverity.LOW,
    "debug": ProblemSeverity.LOW,
}


def pattern_severity(value: str | None) -> ProblemSeverity | None:
    """A pattern's severity as a problem severity; None when unset or unknown."""
    return None if value is None else _SEVERITY_NAMES.get(value.strip().lower())


def _rank(entry: CompiledPattern) -> tuple[int, float, int, str]:
    severity = pattern_severity(entry.pattern.severity)
    return (
        severity.rank if severity is not None else -1,
        entry.pattern.confidence,
        len(entry.rules),
        entry.id,
    )


def _message(event: Event) -> str | None:
    for name in TEXT_FIELDS:
        value = event.payload.get(name)
        if isinstance(value, str) and value.strip():
            return value[:MAX_TEXT]
    return None


SERVICE_PLACEHOLDER: Final = "{service}"


def actions_for(pattern: Pattern, event: Event) -> list[ActionSpec]:
    """The pattern's actions for this event: "{service}" in a target or a string parameter
    becomes the event's service (else its source), so one pattern serves every service."""
    service = event.service or event.source

    def fill(value: Any) -> Any:
        return value.replace(SERVICE_PLACEHOLDER, service) if isinstance(value, str) else value

    return [
        action.model_copy(
            update={
                "target": fill(action.target),
                "parameters": {k: fill(v) for k, v in action.parameters.items()},
            }
        )
        for action in pattern.actions
    ]


class PatternDetector:
    """A Detector backed by a compiled PatternMatcher, reloaded from a PatternLibrary."""

    def __init__(
        self,
        library: PatternLibrary | None = None,
        *,
        matcher: PatternMatcher | None = None,
        fallback: Detector | None = None,
    ) -> None:
        self.library = library
        self.matcher = matcher or PatternMatcher(())
        self.version: int | None = None
        self.fallback = fallback or DefaultDetector()
        self.matches: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    # --- the hot path -----------------------------------------------------------------

    def best_match(self, event: Event) -> CompiledPattern | None:
        if event.event_type in INTERNAL_TYPES:  # never incidents about incidents
            return None
        found = self.matcher.match(event)
        if not found:
            return None
        best = max(found, key=_rank) if len(found) > 1 else found[0]
        self.matches[best.id] += 1
        return best

    def classify(self, event: Event) -> Detection | None:
        best = self.best_match(event)
        if best is None:
            return self.fallback.classify(event)
        pattern = best.pattern
        category = type_category(event.event_type) or CATEGORY_OF_TYPE[pattern.pattern_type]
        return Detection(
            category=category,
            severity=pattern_severity(pattern.severity) or default_severity(event, category),
            text=_message(event) or pattern.description[:MAX_TEXT],
            service=event.service or event.source,
            pattern_id=best.id,
        )

    # --- reloading --------------------------------------------------------------------

    async def refresh(self) -> bool:
        """Reload the matcher if the library changed since the last load; True if it did."""
        if self.library is None:
            return False
        version = await self.library.version()
        if version == self.version:
            return False
        loaded, matcher = await self.library.load_matcher()
        self.matcher, self.version = matcher, loaded
        log.info("pattern library version %d: %d active patterns", loaded, len(matcher))
        return True

    async def flush_matches(self) -> None:
        if self.library is None or not self.matches:
            return
        counts, self.matches = self.matches, Counter()
        try:
            await self.library.add_occurrences(counts)
        except BaseException:
            # failed or cancelled (aclose): counted at the next flush (a cancel that came
            # after the UPDATE may count them twice; occurrences is a statistic)
            self.matches.update(counts)
            raise

    async def _reload_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh()
                await self.flush_matches()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("pattern library reload failed (keeping the loaded one): %s", error)

    @classmethod
    async def start(
        cls,
        pool: asyncpg.Pool,
        *,
        reload_s: float,
        fallback: Detector | None = None,
    ) -> PatternDetector:
        """Load the library and keep it fresh in the background until aclose(). A database
        without the pattern tables (schema/006 not applied) gives a detector with no
        patterns, that is the fallback's rules, and a warning."""
        detector = cls(PatternLibrary(pool), fallback=fallback)
        try:
            await detector.refresh()
        except asyncpg.UndefinedTableError as error:
            log.warning("no pattern library (%s): run `aiops migrate`; default rules only", error)
            detector.library = None
            return detector
        detector._task = asyncio.create_task(detector._reload_forever(reload_s))
        return detector

    async def aclose(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self.flush_matches()
