"""Temporal workflow definitions: deterministic, pydantic in and out.

The sandbox imports a workflow's module afresh for every new run, and this package with it:
so the package imports nothing itself (each run executes only its own workflow's module),
and the workflow modules' compiled code is kept between runs (workflows.code_cache).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from temporalio import workflow

if TYPE_CHECKING:
    from workflows.diagnosis import DiagnosisWorkflow
    from workflows.healing import HealingWorkflow
    from workflows.incident import IncidentWorkflow
    from workflows.learning import LearningWorkflow
    from workflows.monitor import ProbeServiceWorkflow

    ALL_WORKFLOWS: list[type[Any]]

_WHERE = {
    "DiagnosisWorkflow": "workflows.diagnosis",
    "HealingWorkflow": "workflows.healing",
    "IncidentWorkflow": "workflows.incident",
    "LearningWorkflow": "workflows.learning",
    "ProbeServiceWorkflow": "workflows.monitor",
}
_ALL = [
    "IncidentWorkflow",
    "DiagnosisWorkflow",
    "HealingWorkflow",
    "LearningWorkflow",
    "ProbeServiceWorkflow",
]

if not workflow.unsafe.in_sandbox():
    from workflows.code_cache import install

    install(__name__)


if not TYPE_CHECKING:  # type checkers see the imports above; a typo is an error there

    def __getattr__(name: str) -> Any:
        if name == "ALL_WORKFLOWS":
            return [__getattr__(n) for n in _ALL]
        if name in _WHERE:
            return getattr(importlib.import_module(_WHERE[name]), name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALL_WORKFLOWS",
    "DiagnosisWorkflow",
    "HealingWorkflow",
    "IncidentWorkflow",
    "LearningWorkflow",
    "ProbeServiceWorkflow",
]
