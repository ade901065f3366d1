"""POST /events (operator): publish one event onto a stream the listener reads.

Not a way to write any Redis key, nor to speak for aiops or a producer: with producer trust
on (AIOPS_EVENT_TRUST=producers) everything goes to events:api, a trusted stream since its
writer is a verified operator; in open (dev) mode any stream the listener reads but the
dead-letter and monitor streams. A source reserved for aiops' own agents (`aiops-monitor`,
anything `aiops-*`) is refused either way.
"""

from __future__ import annotations

import fnmatch
import logging

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from aiops.events.consumer import split_patterns
from aiops.events.envelope import Event, is_reserved_source
from aiops.events.mesh import PublishError
from workers.api.auth import Deps, Operator

log = logging.getLogger("aiops.api")
router = APIRouter(tags=["events"])

API_STREAM = "events:api"


class Published(BaseModel):
    id: str
    stream: str
    stream_entry: str


@router.post("/events", status_code=202, response_model=Published)
async def publish(
    event: Event, b: Deps, identity: Operator, stream: str | None = None
) -> Published:
    """Publish to `stream` (default events:api)."""
    settings = b.settings
    target = stream or API_STREAM
    if settings.event_trust_mode == "producers" and target != API_STREAM:
        # events:api is trusted (its writer is a verified operator); any other stream is
        # aiops's own or a producer's, and the API must not speak as either
        raise HTTPException(
            400,
            f"the API publishes to {API_STREAM} only, not {target!r}: aiops writes its own "
            "streams, and each producer its own (aiops producers add)",
        )
    if target in (settings.dead_letter_stream, settings.monitor_stream):
        raise HTTPException(400, f"stream {target!r} is written by aiops only; publish elsewhere")
    patterns = split_patterns(settings.listener_streams)
    if not any(fnmatch.fnmatchcase(target, p) for p in patterns):
        raise HTTPException(
            400,
            f"stream {target!r} is not one the listener reads (AIOPS_LISTENER_STREAMS {patterns})",
        )
    if is_reserved_source(event.source):
        raise HTTPException(403, f"source {event.source!r} is reserved for aiops' own agents")
    try:
        entry = await b.mesh.publish(event, stream=target)
    except PublishError as error:
        raise HTTPException(400, str(error)) from None
    log.info("%s published %s %s to %s", identity.sub, event.event_type, event.id, target)
    return Published(id=str(event.id), stream=target, stream_entry=entry)
