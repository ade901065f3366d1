"""POST /events (operator): publish one event onto a stream the listener reads.

Not a way to write any Redis key, nor to speak for aiops or a producer: everything goes to
events:api (a trusted internal stream: the caller is a verified operator), and a source
reserved for aiops' own agents (`aiops-monitor`, anything `aiops-*`) is refused.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

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
    target = stream or API_STREAM
    # one stream for everything the API publishes: its operators are trusted to speak for
    # any service, but not as aiops (monitor, dead letters) nor as a producer (its stream)
    if target != API_STREAM:
        raise HTTPException(
            400,
            f"the API publishes to {API_STREAM} only, not {target!r}: aiops writes its own "
            "streams, and each producer its own (aiops producers add)",
        )
    if is_reserved_source(event.source):
        raise HTTPException(403, f"source {event.source!r} is reserved for aiops' own agents")
    try:
        entry = await b.mesh.publish(event, stream=target)
    except PublishError as error:
        raise HTTPException(400, str(error)) from None
    log.info("%s published %s %s to %s", identity.sub, event.event_type, event.id, target)
    return Published(id=str(event.id), stream=target, stream_entry=entry)
