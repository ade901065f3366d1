"""What an incident's history says it was told: the count of each observe signal."""

from __future__ import annotations

from typing import cast

from temporalio.api.enums.v1 import EventType as HistoryEventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from aiops.models.incident import Observation


def observed_counts(history: WorkflowHistory) -> list[int]:
    """The problem events each observe signal of the run carried, in order."""
    counts: list[int] = []
    for event in history.events:
        if event.event_type != HistoryEventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            continue
        attrs = event.workflow_execution_signaled_event_attributes
        [observation] = pydantic_data_converter.payload_converter.from_payloads(
            list(attrs.input.payloads), [Observation]
        )
        counts.append(cast(Observation, observation).count)
    return counts
