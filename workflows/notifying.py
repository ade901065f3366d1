"""Notifications from workflow code: always through the send_notification activity, with
retries, and never at the cost of the workflow that asked (a channel that is down is a
log line)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from aiops.notify.models import NotifyRequest

_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=3)


async def send_notification(request: NotifyRequest) -> None:
    try:
        await workflow.execute_activity(
            "send_notification",
            request,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=_RETRY,
        )
    except FailureError as error:
        workflow.logger.warning("%s not sent: %s", request.key, error)
