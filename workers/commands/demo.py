"""`aiops demo`: the main job. A real bookmark service misbehaves six ways; aiops detects,
diagnoses, heals (asking approval where the policy says so), rolls back a plan that fails
half-way, escalates what it does not know, and learns from each outcome."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from aiops.config import get_settings
from aiops.db.migrate import migrate
from aiops.devstack import DevStack
from aiops.endpoints import dev_stack_for, resolve
from aiops.errors import AiopsError
from workers.demo.run import DemoOptions, Outcome, run_demo
from workers.demo.scenarios import SCENARIOS, select


class DemoFailed(AiopsError):
    exit_code = 1


def _summary(
    outcomes: list[Outcome], ui_url: str | None, namespace: str, shadow: bool = False
) -> None:
    typer.echo("")
    last = "would have run (nothing ran)" if shadow else "plan"
    typer.echo(f"{'fault':<15} {'expected':<12} {'outcome':<22} {'time':>6}  {last}")
    for o in outcomes:
        mark = "ok " if o.ok else "NO "
        what = "; ".join(o.would_run) if shadow else o.plan
        typer.echo(
            f"{o.scenario:<15} {o.expected:<12} {mark + o.outcome:<22} {o.seconds:>5.1f}s  "
            f"{what or '-'}"
        )
        if shadow:
            typer.echo(f"{'':<60}service after: {o.proof}")
    typer.echo("")
    typer.echo("incidents (Temporal Web UI):")
    for o in outcomes:
        for wid in o.incidents:
            where = f"{ui_url}/namespaces/{namespace}/workflows/{wid}" if ui_url else wid
            typer.echo(f"  {o.scenario:<15} {where}")


def demo(
    keep_running: Annotated[
        bool,
        typer.Option(
            "--keep-running",
            help="leave everything up afterwards to explore the Web UI; Ctrl-C stops it all",
        ),
    ] = False,
    interactive: Annotated[
        bool,
        typer.Option(
            "--interactive",
            help="wait for you to approve critical actions instead of approving after a pause",
        ),
    ] = False,
    approve_after: Annotated[
        float, typer.Option(help="seconds before the demo approves a critical action itself")
    ] = 3.0,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="three faults (bad config, a failing runbook, an unknown problem)"
        ),
    ] = False,
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            help=f"run only these faults, in this order: {', '.join(s.name for s in SCENARIOS)}",
        ),
    ] = None,
    stream_prefix: Annotated[
        str, typer.Option(help="the events streams the demo's service and listener use")
    ] = "events",
    shadow: Annotated[
        bool,
        typer.Option(
            "--shadow",
            help="run the faults with the service in shadow mode: aiops diagnoses and plans, "
            "records what it would run, runs nothing; each fault is then fixed by hand",
        ),
    ] = False,
    notify: Annotated[
        list[str] | None,
        typer.Option(
            "--notify",
            metavar="URL",
            help="also tell this apprise URL what aiops does (repeatable), e.g. "
            "json://localhost:8000/hook or mailto://user:pass@smtp.example.com?to=you@example.com",
        ),
    ] = None,
) -> None:
    """Heal a real, misbehaving bookmark service end to end.

    Starts the embedded dev stack (unless DATABASE_URL, REDIS_URL and TEMPORAL_ADDRESS are
    set), migrates, seeds the knowledge graph from examples/knowledge/, runs the worker, the
    listener and the monitor, starts examples/bookmark_service under aiops's control and
    injects its faults one after another, printing each step. Exits 0 only when every fault
    ended as expected and the service was checked afterwards.
    """
    # SIGTERM (a CI timeout, `kill`) must stop what the demo started, as Ctrl-C does
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        chosen = select(scenario, quick)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--scenario") from None
    settings = get_settings()
    stack: DevStack | None = None
    started: list[str] = []
    ui_url: str | None = None
    if not (settings.database_url and settings.redis_url and settings.temporal_address):
        stack = dev_stack_for(settings)
        typer.echo(f"==> starting the embedded dev stack under {stack.home}")
        up = asyncio.run(stack.up())
        started = list(up.started)
        for name, svc in up.state.services.items():
            typer.echo(
                f"    {name:<9} {svc.url}" + (f"  (Web UI {svc.ui_url})" if svc.ui_url else "")
            )
            ui_url = svc.ui_url or ui_url
    if notify:
        # the demo's approvals, escalations and failed fixes go there too, with Web UI links
        urls = [u for u in (settings.notify_urls, *notify) if u]
        settings = settings.model_copy(
            update={"notify_urls": ",".join(urls), "web_ui_url": settings.web_ui_url or ui_url}
        )
    endpoints = resolve(settings)
    options = DemoOptions(
        approve_after_s=None if interactive else approve_after,
        stream_prefix=stream_prefix,
        shadow=shadow,
    )

    async def main() -> list[Outcome]:
        typer.echo("==> migrating the schema")
        report = await migrate(endpoints.database_url, settings.resolved_embedding_dim)
        typer.echo(f"    applied {report.applied or 'nothing new'}")
        return await run_demo(
            settings,
            endpoints,
            chosen,
            options,
            typer.echo,
            ui_url,
            keep_running=_until_interrupted if keep_running else None,
            report=lambda outcomes: _summary(
                outcomes, ui_url, endpoints.temporal_namespace, shadow
            ),
        )

    try:
        outcomes = asyncio.run(main())
    finally:
        if stack is not None and started:
            # only what the demo started: servers already up (aiops dev up) stay up
            typer.echo(f"==> stopping the servers the demo started: {', '.join(started)}")
            stack.down(only=started)
    failed = [o.scenario for o in outcomes if not o.ok]
    if failed:
        raise DemoFailed(f"these faults did not end as expected: {', '.join(failed)}")
    typer.echo("")
    if shadow:
        planned = sum(len(o.would_run) for o in outcomes)
        typer.echo(
            f"all {len(outcomes)} faults ended as expected in shadow mode: aiops planned "
            f"{planned} step(s) and ran none; each service check above shows the fault stayed."
        )
    else:
        typer.echo(f"all {len(outcomes)} faults ended as expected.")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _until_interrupted() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop
