"""Mining recorded fixes: the same sequence of primitive actions, approved by a person and
followed by a healed incident, again and again for one problem, is a tool waiting to be
named. The record is what the engine already keeps: action_executions (what ran, approved
by whom) and the learning insight of each incident (healed or not, for which problem).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

from aiops.tools.models import (
    SERVICE,
    UNDOABLE,
    Condition,
    ParamType,
    ToolDraft,
    ToolParameter,
    ToolSpec,
    ToolStep,
)

# a healing run's id is <incident>-healing-<run>; its learning run's, <incident>-learning-<run>
_RUNS_SQL = r"""
SELECT e.workflow_id, e.step, e.action, e.service, e.status, e.result,
       p.id::text AS problem_id, p.data->>'description' AS problem_description,
       p.data->'context'->>'service' AS problem_service
FROM action_executions e
JOIN knowledge_nodes i ON i.node_type = 'insight'
 AND i.fingerprint = 'insight:' || regexp_replace(e.workflow_id, '-healing-([^-]+)$',
                                                  '-learning-\1')
JOIN knowledge_edges l ON l.to_node = i.id AND l.relationship = 'leads_to'
JOIN knowledge_nodes p ON p.id = l.from_node AND p.node_type = 'problem'
WHERE i.data->>'outcome' = 'healed'
  AND e.workflow_id LIKE '%-healing-%'
  AND e.idempotency_key NOT LIKE '%:compensate'
  AND ($1::uuid IS NULL OR p.id = $1::uuid)
ORDER BY e.workflow_id, length(e.step), e.step
"""


class RecordedStep(BaseModel):
    action_type: str
    target: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class RecordedRun(BaseModel):
    workflow_id: str
    problem_id: str
    problem_description: str
    service: str | None
    steps: list[RecordedStep]
    approved_by: list[str] = Field(default_factory=list)

    def signature(self) -> str:
        shape = [(s.action_type, s.target, sorted(s.parameters)) for s in self.steps]
        text = json.dumps([self.problem_id, shape], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]


class MinedSequence(BaseModel):
    problem_id: str
    problem_description: str
    service: str | None
    signature: str
    runs: list[RecordedRun]

    @property
    def approved_runs(self) -> int:
        return sum(1 for r in self.runs if r.approved_by)


async def recorded_runs(pool: asyncpg.Pool, problem_id: str | None = None) -> list[RecordedRun]:
    """Healed runs whose every step succeeded, each with the problem it healed."""
    rows = await pool.fetch(_RUNS_SQL, problem_id)
    grouped: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in rows:
        grouped[row["workflow_id"]].append(row)
    runs = []
    for workflow_id, steps in grouped.items():
        if any(r["status"] != "succeeded" for r in steps):
            continue
        first = steps[0]
        service = first["service"] or first["problem_service"]
        recorded, approvers = [], []
        for row in steps:
            action = _json(row["action"])
            target = action["target"]
            recorded.append(
                RecordedStep(
                    action_type=action["action_type"],
                    target=SERVICE if target == service else target,
                    parameters=action.get("parameters") or {},
                )
            )
            approver = ((_json(row["result"]) or {}).get("data") or {}).get("approved_by")
            if approver:
                approvers.append(str(approver))
        runs.append(
            RecordedRun(
                workflow_id=workflow_id,
                problem_id=first["problem_id"],
                problem_description=first["problem_description"] or "",
                service=service,
                steps=recorded,
                approved_by=approvers,
            )
        )
    return runs


def repeated_sequences(
    runs: list[RecordedRun], min_runs: int, require_approval: bool = True, min_steps: int = 2
) -> list[MinedSequence]:
    """Sequences of `min_steps` or more steps (one primitive alone is no new tool) seen
    healing one problem at least `min_runs` times (counting only runs a person approved,
    unless require_approval is off)."""
    groups: dict[str, list[RecordedRun]] = defaultdict(list)
    for run in runs:
        if len(run.steps) < min_steps or (require_approval and not run.approved_by):
            continue
        groups[run.signature()].append(run)
    found = [
        MinedSequence(
            problem_id=group[0].problem_id,
            problem_description=group[0].problem_description,
            service=group[0].service,
            signature=signature,
            runs=group,
        )
        for signature, group in groups.items()
        if len(group) >= min_runs
    ]
    return sorted(found, key=lambda m: (-len(m.runs), m.signature))


def _type_of(values: list[Any]) -> ParamType:
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integer"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "number"
    return "string"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def draft_from_sequence(mined: MinedSequence, name: str | None = None) -> ToolDraft:
    """The tool the runs show: what every run did alike is fixed; what varied between runs
    becomes a typed parameter whose default is the most frequent value (text parameters may
    take only the values a person approved)."""
    first = mined.runs[0]
    parameters: list[ToolParameter] = []
    steps: list[ToolStep] = []
    for index, step in enumerate(first.steps):
        templated: dict[str, Any] = {}
        for key in step.parameters:
            values = [run.steps[index].parameters.get(key) for run in mined.runs]
            distinct = list(dict.fromkeys(json.dumps(v, sort_keys=True) for v in values))
            if len(distinct) == 1:
                templated[key] = values[0]
                continue
            pname = _slug(key) or "value"
            if any(p.name == pname for p in parameters):
                pname = f"{pname}_{index + 1}"
            kind = _type_of(values)
            counts = Counter(json.dumps(v, sort_keys=True) for v in values)
            default = json.loads(counts.most_common(1)[0][0])
            parameters.append(
                ToolParameter(
                    name=pname,
                    type=kind,
                    description=f"{step.action_type} {key}: {len(distinct)} values in the runs",
                    default=default,
                    choices=[json.loads(d) for d in distinct] if kind == "string" else None,
                )
            )
            templated[key] = "${" + pname + "}"
        steps.append(
            ToolStep(
                action_type=step.action_type,
                target=step.target,
                parameters=templated,
                compensation="undo" if step.action_type in UNDOABLE else "none",
            )
        )
    preconditions = [
        Condition(kind="config_key", value=str(s.parameters["key"]))
        for s in steps
        if s.action_type == "config_update"
        and isinstance(s.parameters.get("key"), str)
        and "${" not in s.parameters["key"]
    ]
    if any(s.action_type == "scale" for s in steps):
        preconditions.append(Condition(kind="replica_bounds"))
    types = [s.action_type for s in steps]
    spec = ToolSpec(
        name=name or "_then_".join(types)[:63],
        description=(
            f"{' then '.join(types)}: the sequence approved and healed {len(mined.runs)} "
            f"time(s) for {mined.problem_description!r}"
        ),
        parameters=parameters,
        steps=steps,
        preconditions=list({c.model_dump_json(): c for c in preconditions}.values()),
        postconditions=[Condition(kind="healthy")],
    )
    return ToolDraft(
        spec=spec,
        origin="mined",
        problem_id=mined.problem_id,
        service=mined.service,
        signature=mined.signature,
        why=f"mined from {len(mined.runs)} healed run(s) ({mined.approved_runs} approved): "
        + ", ".join(r.workflow_id for r in mined.runs[:5]),
    )


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
