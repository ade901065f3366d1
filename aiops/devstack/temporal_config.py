"""Dynamic configuration the Temporal servers aiops starts run with.

Temporal's history service reads each of its task queues at most 20 times a second by
default. Every step of a workflow (a task handed to a worker, a child started, a timer fired,
a run made visible to `list`) waits for one of those reads, so on a quiet server each step
waited up to 50 ms: a bare one-activity workflow took 98 ms instead of 17 ms, and an
incident about 500 ms instead of 350 (bench/incidents.py). A busy server reads a batch per
read and is not held back by the limit; it only adds latency, which is what an incident is
measured by. The embedded server (`aiops dev up`, the tests) gets these as flags; the compose
file mounts the same values (deploy/temporal-dynamic-config.yaml).

The embedded server keeps its state in one SQLite file. In SQLite's default rollback journal
every commit writes and syncs the journal and then the database; in write-ahead-log mode it
appends to the log and syncs once, and is as durable (synchronous stays FULL: a committed
transaction survives a power cut). Measured on this project's 2-core machine, a bare
one-activity workflow took 45-50 ms with the rollback journal and 36 ms with the log, and
one with a child 98-122 ms against 74-85 ms; Temporal used a fifth less CPU for each. (The
compose file's Temporal keeps its state in PostgreSQL, which needs none of this.)
"""

from __future__ import annotations

from collections.abc import Mapping

DYNAMIC_CONFIG: dict[str, int] = {
    "history.transferProcessorMaxPollRPS": 1000,
    "history.timerProcessorMaxPollRPS": 1000,
    "history.visibilityProcessorMaxPollRPS": 1000,
}


SQLITE_PRAGMAS: dict[str, str] = {"journal_mode": "wal"}


def sqlite_pragma_flags(pragmas: Mapping[str, str] = SQLITE_PRAGMAS) -> list[str]:
    """`temporal server start-dev` flags setting `pragmas` on its SQLite file."""
    return _key_value_flags("--sqlite-pragma", pragmas)


def dynamic_config_flags(config: Mapping[str, int] = DYNAMIC_CONFIG) -> list[str]:
    """`temporal server start-dev` flags setting `config` (by default DYNAMIC_CONFIG)."""
    return _key_value_flags("--dynamic-config-value", config)


def _key_value_flags(flag: str, values: Mapping[str, object]) -> list[str]:
    """`flag KEY=VALUE` once for each of `values`."""
    flags: list[str] = []
    for key, value in values.items():
        flags += [flag, f"{key}={value}"]
    return flags
