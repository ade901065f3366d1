"""Temporal workflow definitions: deterministic, pydantic in and out."""

from workflows.diagnosis import DiagnosisWorkflow
from workflows.healing import HealingWorkflow
from workflows.incident import IncidentWorkflow
from workflows.learning import LearningWorkflow
from workflows.monitor import ProbeServiceWorkflow

ALL_WORKFLOWS = [
    IncidentWorkflow,
    DiagnosisWorkflow,
    HealingWorkflow,
    LearningWorkflow,
    ProbeServiceWorkflow,
]

__all__ = [
    "ALL_WORKFLOWS",
    "DiagnosisWorkflow",
    "HealingWorkflow",
    "IncidentWorkflow",
    "LearningWorkflow",
    "ProbeServiceWorkflow",
]
