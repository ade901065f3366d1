"""Intake routes (operator): alerts from the tools teams already run, as aiops events.

    POST /intake/alertmanager   Alertmanager webhook (payload version 4)
    POST /intake/grafana        Grafana unified alerting webhook contact point
    POST /intake/cloudevents    CloudEvents 1.0: structured, binary or batch content mode
    POST /intake/pagerduty      PagerDuty Events API v2 enqueue (also at /v2/enqueue)

Each body is validated whole and mapped (aiops/intake) before anything is written, then
all its events go to events:api in one pipelined XADD: a bad body is refused with the
field that is wrong (422; PagerDuty's 400 shape for PagerDuty) and writes nothing. The
caller is the same as for POST /events: a bearer token with the operator role. A PagerDuty
sender that cannot set a header may put that token in `routing_key` instead.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError

from aiops.auth import Identity, Role
from aiops.events.consumer import split_patterns
from aiops.events.envelope import Event, is_reserved_source
from aiops.events.mesh import PublishError
from aiops.intake import alertmanager, cloudevents, grafana, pagerduty
from aiops.intake.alerts import AlertMapping, IntakeError, validation_errors
from workers.api.auth import Deps, Operator, identify, require
from workers.api.events import API_STREAM

log = logging.getLogger("aiops.api")
router = APIRouter(tags=["intake"])

_bearer = HTTPBearer(
    auto_error=False,
    description="a token with the operator role (PagerDuty senders: or in routing_key)",
)
_operator = require(Role.OPERATOR)


class Accepted(BaseModel):
    accepted: int
    events: list[str]


def _invalid(errors: Sequence[dict[str, Any]], prefix: Sequence[str | int] = ()) -> Exception:
    return RequestValidationError([{**e, "loc": [*prefix, *e["loc"]]} for e in errors])


async def _publish(b: Deps, events: list[Event], identity: Identity, sender: str) -> list[str]:
    for event in events:
        if is_reserved_source(event.source):
            raise HTTPException(403, f"source {event.source!r} is reserved for aiops' own agents")
    if not any(
        fnmatch.fnmatchcase(API_STREAM, p) for p in split_patterns(b.settings.listener_streams)
    ):
        # accepted but never read would lose the alerts: refuse, so the sender retries
        raise HTTPException(
            503, f"the listener does not read {API_STREAM} (AIOPS_LISTENER_STREAMS)"
        )
    if events:
        try:
            await b.mesh.publish_many(events, stream=API_STREAM)
        except PublishError as error:
            raise HTTPException(400, str(error)) from None
    log.info("%s sent %d %s events to %s", identity.sub, len(events), sender, API_STREAM)
    return [str(event.id) for event in events]


@router.post("/intake/alertmanager", status_code=202, response_model=Accepted)
async def from_alertmanager(request: Request, b: Deps, identity: Operator) -> Accepted:
    """Alertmanager's webhook (`webhook_configs`): one event per alert."""
    body = await request.body()
    try:
        message = alertmanager.WebhookMessage.model_validate_json(body)
        events = alertmanager.to_events(message, AlertMapping.from_settings(b.settings))
    except ValidationError as error:
        raise _invalid(validation_errors(error), ("body",)) from None
    except IntakeError as error:
        raise _invalid(error.errors, ("body",)) from None
    ids = await _publish(b, events, identity, "alertmanager")
    return Accepted(accepted=len(ids), events=ids)


@router.post("/intake/grafana", status_code=202, response_model=Accepted)
async def from_grafana(request: Request, b: Deps, identity: Operator) -> Accepted:
    """A Grafana webhook contact point: one event per alert."""
    body = await request.body()
    try:
        message = grafana.GrafanaMessage.model_validate_json(body)
        events = grafana.to_events(message, AlertMapping.from_settings(b.settings))
    except ValidationError as error:
        raise _invalid(validation_errors(error), ("body",)) from None
    except IntakeError as error:
        raise _invalid(error.errors, ("body",)) from None
    ids = await _publish(b, events, identity, "grafana")
    return Accepted(accepted=len(ids), events=ids)


@router.post("/intake/cloudevents", status_code=202, response_model=Accepted)
async def from_cloudevents(request: Request, b: Deps, identity: Operator) -> Accepted:
    """CloudEvents 1.0: structured (application/cloudevents+json), binary (ce-* headers)
    or batch (application/cloudevents-batch+json)."""
    body = await request.body()
    try:
        parsed = cloudevents.parse(request.headers, body)
        events = [cloudevents.to_event(item, i) for i, item in enumerate(parsed)]
    except IntakeError as error:
        raise _invalid(error.errors) from None
    ids = await _publish(b, events, identity, "cloudevents")
    return Accepted(accepted=len(ids), events=ids)


def _pagerduty_errors(error: ValidationError) -> list[str]:
    found = []
    for item in error.errors(include_url=False, include_context=False, include_input=False):
        where = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        found.append(f"{where}: {message}" if where else message)
    return found


def _pagerduty_invalid(errors: list[str]) -> JSONResponse:
    return JSONResponse(pagerduty.Invalid(errors=errors).model_dump(), status_code=400)


async def _pagerduty_caller(
    b: Deps, body: bytes, credentials: HTTPAuthorizationCredentials | None
) -> Identity:
    """The bearer token's caller; without one, the routing_key verified as a token."""
    if credentials is None:
        try:
            key = pagerduty.RoutingKeyOnly.model_validate_json(body).routing_key
        except ValidationError:
            raise HTTPException(
                401,
                "this endpoint needs Authorization: Bearer <token>, or the token as routing_key",
                headers={"WWW-Authenticate": "Bearer"},
            ) from None
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=key)
    return await _operator(await identify(b, credentials))


@router.post(
    "/v2/enqueue",
    status_code=202,
    response_model=pagerduty.Accepted,
    responses={400: {"model": pagerduty.Invalid}},
)
@router.post(
    "/intake/pagerduty",
    status_code=202,
    response_model=pagerduty.Accepted,
    responses={400: {"model": pagerduty.Invalid}},
)
async def from_pagerduty(
    request: Request,
    b: Deps,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> pagerduty.Accepted | JSONResponse:
    """PagerDuty Events API v2 enqueue, answered as PagerDuty does."""
    body = await request.body()
    identity = await _pagerduty_caller(b, body, credentials)
    try:
        enqueue = pagerduty.EnqueueRequest.model_validate_json(body)
    except ValidationError as error:
        return _pagerduty_invalid(_pagerduty_errors(error))
    try:
        event, dedup_key = pagerduty.to_event(enqueue)
    except IntakeError as error:
        return _pagerduty_invalid([str(error)])
    await _publish(b, [event], identity, "pagerduty")
    return pagerduty.Accepted(dedup_key=dedup_key)
