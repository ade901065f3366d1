"""Saved histories of representative incidents replay against the current workflow code,
so a change that would break running incidents fails the build."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from aiops.models.healing import HealingInput, HealingResult
from workflows import ALL_WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
AIOPS = str(Path(sys.executable).parent / "aiops")


def _history(path: Path) -> WorkflowHistory:
    # ID@note.json ran as ID, as `aiops replay --dir` reads it (child ids derive from it)
    return WorkflowHistory.from_json(path.stem.split("@", 1)[0], path.read_text())


def test_there_are_histories_of_each_kind() -> None:
    names = {p.stem for p in HISTORIES}
    assert {
        "healing_healed",
        "healing_approval_timeout",
        "healing_refused_forbidden",
        "incident-history-healed",
        "incident-history-unknown",
        # signed approvals: a refused and an accepted decide forwarded to the child as an
        # update, a late approve; a rejection that rolls the done step back
        "incident-history-signed-approval",
        "healing_rejected_rolls_back",
        # a step that raised past its retries and a cancelled run, both rolled back; an
        # incident whose child failed; one alerted and diagnosed again while it persisted
        "healing_raised_rolls_back",
        "healing_cancelled_rolls_back",
        "incident-history-failed-child",
        "incident-history-persists",
        # the escalation ladder: two fixes failed, the third healed, in one incident
        "incident-history-ladder",
        # verified by a first probe and closed in the workflow task that had the result
        "healing_healed_verified_in_task",
        # the problem recorded beside the diagnosis, scheduled once that child started
        "incident-history-healed-current@record-after-child",
        # an incident on the current path: every patch taken
        "incident-history-healed-current",
        # the current paths before one patch marker stood for all (and, for the incident,
        # before silences, mode and policy were read in one local activity)
        "incident-history-healed-current@record-after-healing",
        "healing_healed_verified_in_task@marker-per-patch",
    } <= names
    assert any(n.startswith("healing_fail_at_step_") for n in names)


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    replayer = Replayer(workflows=ALL_WORKFLOWS, data_converter=pydantic_data_converter)
    await replayer.replay_workflow(_history(path))


@workflow.defn(name="HealingWorkflow", sandboxed=False)
class ChangedHealingWorkflow:
    """A HealingWorkflow that waits on a timer before acting: not replay-compatible."""

    @workflow.run
    async def run(self, input: HealingInput) -> HealingResult:
        await workflow.sleep(timedelta(seconds=1))
        return HealingResult(outcome="healed", detail="", steps=[])


async def test_an_incompatible_change_fails_replay() -> None:
    replayer = Replayer(
        workflows=[ChangedHealingWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    result = await replayer.replay_workflow(
        _history(Path(__file__).parent / "histories" / "healing_healed.json"),
        raise_on_replay_failure=False,
    )
    assert result.replay_failure is not None


def test_cli_replays_the_directory() -> None:
    directory = str(Path(__file__).parent / "histories")
    done = subprocess.run(
        [AIOPS, "replay", "--dir", directory], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": ok") == len(HISTORIES)
