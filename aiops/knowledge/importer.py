"""`aiops kg import`: known problems and their solutions from JSON lines.

One problem per line:

    {"kind": "problem", "key": "<your id>", "title": "optional one-line summary",
     "description": "...", "category": "...",
     "error_patterns": ["..."], "severity": "high", "context": {"service": "..."},
     "solutions": [{"description": "...", "actions": [{"action_type": "restart",
                    "target": "...", "parameters": {}, "order": 1}]}]}

Every line is validated on its own: a bad line is reported with its number and reason and
the good lines are still imported. The `key` is the problem's identity, so importing a
file again changes nothing (or updates the text that changed) and never counts an
occurrence. Solutions are identified by their content and linked with `solves` edges.
Actions the policy would refuse (FLUSHDB is data deletion) are imported, as knowledge, and
reported as warnings: healing will refuse to run them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiops.knowledge.models import ProblemIn, Severity, SolutionIn
from aiops.knowledge.store import KnowledgeGraph
from aiops.policy.forbidden import forbidden_reason


class ImportLine(BaseModel):
    """One line of an import file; unknown fields are refused, so a typo is not lost data."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["problem"]
    key: str = Field(min_length=1, max_length=500)
    description: str = Field(min_length=1)
    title: str | None = Field(default=None, max_length=1000)
    category: str = Field(default="error", min_length=1)
    severity: Severity = "medium"
    error_patterns: list[str] = Field(default_factory=list)
    context: dict[str, Any] = Field(default_factory=dict)
    template: str | None = None
    solutions: list[SolutionIn] = Field(default_factory=list)

    def problem(self) -> ProblemIn:
        return ProblemIn(
            description=self.description,
            title=self.title,
            category=self.category,
            severity=self.severity,
            error_patterns=self.error_patterns,
            context=self.context,
            key=self.key,
            template=self.template,
        )


class LineError(BaseModel):
    line: int
    error: str


class ImportReport(BaseModel):
    lines: int = Field(description="non-blank lines read")
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    solutions: int = Field(default=0, description="solutions written and linked")
    errors: list[LineError] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    problem_ids: dict[str, str] = Field(default_factory=dict, description="key -> node id")

    @property
    def imported(self) -> int:
        return self.created + self.updated + self.unchanged


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(p) for p in item["loc"]) or "line"
        parts.append(f"{where}: {item['msg']}")
    more = len(error.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def parse_lines(lines: Iterable[str]) -> tuple[list[tuple[int, ImportLine]], list[LineError]]:
    """The valid lines with their numbers (1-based), and what is wrong with the others."""
    good: list[tuple[int, ImportLine]] = []
    bad: list[LineError] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            reason = f"not JSON: {error.msg} at column {error.colno}"
            bad.append(LineError(line=number, error=reason))
            continue
        if not isinstance(value, dict):
            bad.append(LineError(line=number, error="expected a JSON object"))
            continue
        try:
            good.append((number, ImportLine.model_validate(value)))
        except ValidationError as error:
            bad.append(LineError(line=number, error=_describe(error)))
    return good, bad


def _warnings(number: int, line: ImportLine) -> list[str]:
    found = []
    for solution in line.solutions:
        for action in solution.actions:
            reason = forbidden_reason(action)
            if reason:
                found.append(
                    f"line {number} ({line.key}): the policy refuses action "
                    f"{action.action_type} on {action.target} of {solution.description!r}: {reason}"
                )
    return found


async def import_lines(kg: KnowledgeGraph, lines: Iterable[str]) -> ImportReport:
    good, bad = parse_lines(lines)
    report = ImportReport(lines=len(good) + len(bad), errors=bad)
    for number, line in good:
        record = await kg.upsert_problem(line.problem())
        report.problem_ids[line.key] = record.id
        if record.status == "created":
            report.created += 1
        elif record.status == "updated":
            report.updated += 1
        else:
            report.unchanged += 1
        for solution in line.solutions:
            await kg.add_solution(record.id, solution)
            report.solutions += 1
        report.warnings.extend(_warnings(number, line))
    return report
