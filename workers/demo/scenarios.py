"""The faults the demo injects, one after another, and what each should end as.

Each fault is real behaviour of the bookmark service; the demo only switches it on and sends
the traffic that makes it visible, as users would. `proof` checks the service afterwards, so
"healed" means the service works again, not only that a workflow said so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import httpx

from workers.demo.target import BookmarkTarget

Expected = Literal["healed", "compensated", "unknown", "shadow"]
Check = Callable[[BookmarkTarget], Awaitable[str]]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    expect: Expected
    trigger: Check
    proof: Check
    cleanup: Callable[[BookmarkTarget], Awaitable[None]] | None = None
    # in shadow mode (aiops demo --shadow): the service is checked to be still faulty, so
    # nothing acted; then it is fixed by hand, as the on-call engineer would
    shadow_proof: Check | None = None
    shadow_fix: Callable[[BookmarkTarget], Awaitable[None]] | None = None

    def expected(self, shadow: bool) -> Expected:
        """In shadow a fault aiops knows ends as `shadow` (planned, nothing run)."""
        return "shadow" if shadow and self.expect != "unknown" else self.expect


async def _slow_imports(t: BookmarkTarget) -> str:
    await t.fault("slow_imports")
    response = await t.import_bookmarks(24)
    return f"an import of 24 bookmarks answered {response.status_code} after the 2 s deadline"


async def _imports_fast_again(t: BookmarkTarget) -> str:
    started = time.monotonic()
    response = await t.import_bookmarks(24)
    took = time.monotonic() - started
    if response.status_code != 200:
        raise AssertionError(f"the import still fails: {response.status_code}")
    return (
        f"the same import now succeeds in {took:.1f} s with {response.json()['replicas']} workers"
    )


async def _bad_config(t: BookmarkTarget) -> str:
    await t.fault("bad_config")
    codes = [(await t.list_bookmarks()).status_code for _ in range(3)]
    return f"db_pool_size set to 0; GET /bookmarks answered {codes}"


async def _requests_work(t: BookmarkTarget) -> str:
    response = await t.list_bookmarks()
    if response.status_code != 200:
        raise AssertionError(f"GET /bookmarks still answers {response.status_code}")
    return f"GET /bookmarks answers 200 again (db_pool_size={(await t.config())['db_pool_size']})"


async def _memory_leak(t: BookmarkTarget) -> str:
    await t.fault("memory_leak")
    return "the service now holds 32 MB more every second"


async def _restarted(t: BookmarkTarget) -> str:
    health = await t.wait_healthy(30.0)
    return (
        f"a new process (pid {health.get('pid')}) answers /health; memory "
        f"{health.get('memory_usage')}% of budget, no fault active"
    )


async def _crash(t: BookmarkTarget) -> str:
    pid = await t.pid()
    await t.fault("crash")
    return f"process {pid} exited; nothing reports it but the health probe"


async def _invalid_import(t: BookmarkTarget) -> str:
    response = await t.import_bookmarks(10, invalid=3)
    failed = len(response.json().get("failed", []))
    return f"an import of 10 bookmarks had {failed} invalid items"


async def _rolled_back(t: BookmarkTarget) -> str:
    config = await t.config()
    if config["import_deadline_s"] != t.options.import_deadline_s:
        raise AssertionError(f"import_deadline_s was not rolled back: {config}")
    return (
        f"step 1 was rolled back: import_deadline_s is {config['import_deadline_s']:g} s "
        f"again, page_size {config['page_size']}"
    )


async def _disk_full(t: BookmarkTarget) -> str:
    await t.fault("disk_full")
    # like a real full disk, rows that still fit in free pages go in; then writes fail
    for written in range(1, 500):
        response = await t.add_bookmark()
        if response.status_code == 500:
            return f"the database cannot grow: write {written} answered 500"
    raise AssertionError("writes kept succeeding with the disk full")


async def _nothing_done(t: BookmarkTarget) -> str:
    response = await t.add_bookmark()
    return f"aiops did not act: POST /bookmarks still answers {response.status_code}"


async def _free_disk(t: BookmarkTarget) -> None:
    await t.fault("disk_full", enabled=False)  # the on-call engineer frees the space


async def _slow_off(t: BookmarkTarget) -> None:
    await t.fault("slow_imports", enabled=False)
    await asyncio.sleep(0)


# --- shadow mode: the fault is still there, checked on the service itself ----------------


async def _still_slow(t: BookmarkTarget) -> str:
    replicas = (await t.request("GET", "/admin/scale")).json()["replicas"]
    response = await t.import_bookmarks(24)
    if response.status_code == 200:
        raise AssertionError(f"the import succeeds with {replicas} workers: something acted")
    return f"still {replicas} import workers; the import still answers {response.status_code}"


async def _still_broken(t: BookmarkTarget) -> str:
    code = (await t.list_bookmarks()).status_code
    size = (await t.config())["db_pool_size"]
    if code == 200 or size != 0:
        raise AssertionError(f"GET /bookmarks answers {code}, db_pool_size={size}: it acted")
    return f"db_pool_size is still 0; GET /bookmarks still answers {code}"


async def _config_fixed_by_hand(t: BookmarkTarget) -> None:
    await t.fault("bad_config", enabled=False)


async def _same_process(t: BookmarkTarget, what: str) -> str:
    before = t.pid_before_fault
    response = await t.health()
    pid = response.json().get("pid")
    if pid != before:
        raise AssertionError(f"process {before} was replaced by {pid}: something acted")
    return f"the same process {pid} still runs, {what} ({response.status_code})"


async def _still_leaking(t: BookmarkTarget) -> str:
    memory = (await t.health()).json().get("memory_usage")
    return await _same_process(t, f"at {memory}% of its memory budget and growing")


async def _leak_fixed_by_hand(t: BookmarkTarget) -> None:
    await t.fault("memory_leak", enabled=False)
    await t.restart_by_hand()


async def _still_down(t: BookmarkTarget) -> str:
    try:
        response = await t.health()
    except httpx.TransportError:
        return f"nothing answers on {t.options.endpoint}: process {t.pid_before_fault} is gone"
    raise AssertionError(f"/health answers {response.status_code}: something restarted it")


async def _deadline_untouched(t: BookmarkTarget) -> str:
    config = await t.config()
    if config["import_deadline_s"] != t.options.import_deadline_s:
        raise AssertionError(f"import_deadline_s changed: {config}")
    return (
        f"import_deadline_s is still {config['import_deadline_s']:g} s and page_size "
        f"{config['page_size']}: neither step ran"
    )


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "slow_imports",
        "imports slow down until they time out (the fix needs approval)",
        "healed",
        _slow_imports,
        _imports_fast_again,
        _slow_off,
        _still_slow,
    ),
    Scenario(
        "bad_config",
        "a bad configuration value breaks every request",
        "healed",
        _bad_config,
        _requests_work,
        shadow_proof=_still_broken,
        shadow_fix=_config_fixed_by_hand,
    ),
    Scenario(
        "memory_leak",
        "the process leaks memory until it is over budget",
        "healed",
        _memory_leak,
        _restarted,
        shadow_proof=_still_leaking,
        shadow_fix=_leak_fixed_by_hand,
    ),
    Scenario(
        "crash",
        "the process crashes",
        "healed",
        _crash,
        _restarted,
        shadow_proof=_still_down,
        shadow_fix=lambda t: t.restart_by_hand(),
    ),
    Scenario(
        "invalid_import",
        "a known runbook fails half-way: aiops rolls its first step back",
        "compensated",
        _invalid_import,
        _rolled_back,
        shadow_proof=_deadline_untouched,
    ),
    Scenario(
        "disk_full",
        "the disk fills up: nothing known applies, aiops escalates",
        "unknown",
        _disk_full,
        _nothing_done,
        _free_disk,
    ),
)

QUICK: tuple[str, ...] = ("bad_config", "invalid_import", "disk_full")


def select(names: list[str] | None, quick: bool) -> list[Scenario]:
    wanted = names or (list(QUICK) if quick else [s.name for s in SCENARIOS])
    known = {s.name: s for s in SCENARIOS}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; choose from {sorted(known)}")
    return [known[n] for n in wanted]
