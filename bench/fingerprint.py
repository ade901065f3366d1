"""Grouping Accuracy of the problem fingerprinter on labelled real logs, against drain3.

    .venv/bin/python bench/fingerprint.py [DATA_DIR]                   # shipped defaults
    .venv/bin/python bench/fingerprint.py --leave-one-out [DATA_DIR]   # the honest figure
    .venv/bin/python bench/fingerprint.py --storm [--postgres | --database-url URL]

DATA_DIR holds Loghub-style CSV files (column ``Content`` the message, ``EventId`` its true
group); it defaults to ../shared/data/loghub-dev beside the repository.

Without options, for every file: GA of our fingerprints as emitted online (message by
message in file order, what keys incidents), GA of drain3 0.9.11 with its default
configuration fed the same messages, and both speeds, in one run. One configuration for
every file.

With --leave-one-out, every configuration of a small grid of the miner's settings is run on
every file; then for each file the configuration with the best mean GA over the *other*
files is chosen and scored on it. That held-out figure (its mean and its worst) is the one
that says how the miner does on a system it has never seen; the in-sample figure (the best
configuration on all files, scored on the same files) and the shipped defaults are printed
beside it. A figure, not a test.

With --storm, the cost of a storm of never-seen line shapes (random words, 3-12 each, one
scope): the miner as it is, against the same miner comparing each new shape with every
template of its length (the old way, measured in the same run), with and without the cap
on templates per scope; with --postgres (an embedded one started for the run) or
--database-url (a migrated database), also through the shared store.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import random
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from aiops.db.migrate import migrate
from aiops.devstack import DevStack
from aiops.devstack.ports import free_port
from aiops.fingerprint import FingerprintConfig, Fingerprinter
from aiops.fingerprint.evaluation import grouping_accuracy
from aiops.fingerprint.store import SharedTemplates
from aiops.fingerprint.tokens import key_of

REPO = Path(__file__).resolve().parent.parent
# ../shared/data beside the repository (or beside the folder of worktrees it sits in)
DEFAULT_DATA = next(
    (
        folder / "shared" / "data" / "loghub-dev"
        for folder in REPO.parents
        if (folder / "shared" / "data" / "loghub-dev").is_dir()
    ),
    REPO.parent / "shared" / "data" / "loghub-dev",
)

# the settings a fold may tune; every other setting keeps its default
GRID: dict[str, list[Any]] = {
    "similarity": [0.6, 0.7, 0.8, 0.9, 0.95, 1.0],
    "prefix_tokens": [0, 1],
    "slot_values": [0, 3, 4, 6],
}


@dataclass
class Dataset:
    name: str
    messages: list[str]
    truth: list[str]


def load(path: Path) -> Dataset:
    with path.open(newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    return Dataset(
        path.name.split("_")[0], [r["Content"] for r in records], [r["EventId"] for r in records]
    )


def ours(data: Dataset, config: FingerprintConfig) -> tuple[float, float]:
    """GA of the online fingerprints, and the CPU seconds it took."""
    started = time.process_time()
    fp = Fingerprinter(config)
    online = [fp.add(message).fingerprint for message in data.messages]
    return grouping_accuracy(online, data.truth), time.process_time() - started


def drain3(data: Dataset) -> tuple[float, float]:
    started = time.process_time()
    miner = TemplateMiner(config=TemplateMinerConfig())
    groups = [miner.add_log_message(message)["cluster_id"] for message in data.messages]
    return grouping_accuracy(groups, data.truth), time.process_time() - started


def configs() -> list[FingerprintConfig]:
    names = list(GRID)
    return [
        FingerprintConfig(**dict(zip(names, values, strict=True)))
        for values in itertools.product(*(GRID[n] for n in names))
    ]


def describe(config: FingerprintConfig) -> str:
    return ", ".join(f"{name}={getattr(config, name)}" for name in GRID)


def speed(datasets: list[Dataset]) -> None:
    """Lines per second of ours and drain3 over every file, best of three, in this run.

    Per CPU second and per wall second: on a shared machine the wall clock also measures
    the others' load, so the ratio to drain3 measured alongside is the figure to compare.
    """
    total = sum(len(d.messages) for d in datasets)
    best = {"ours cpu": float("inf"), "ours wall": float("inf")}
    best |= {"drain3 cpu": float("inf"), "drain3 wall": float("inf")}
    for _ in range(3):
        for name, run in (
            ("ours", lambda d: ours(d, FingerprintConfig())),
            ("drain3", drain3),
        ):
            wall = time.perf_counter()
            cpu = sum(run(d)[1] for d in datasets)
            wall = time.perf_counter() - wall
            best[f"{name} cpu"] = min(best[f"{name} cpu"], cpu)
            best[f"{name} wall"] = min(best[f"{name} wall"], wall)
    shapes = sum(len({key_of(m) for m in d.messages}) for d in datasets)
    print(
        f"\nnew line shapes: {shapes} of {total} lines ({shapes / total:.1%}); with the "
        "shared store (AIOPS_FINGERPRINT_SHARED) only these wait for PostgreSQL, once per listener"
    )
    print(f"speed, {total} lines, best of 3:")
    for clock in ("cpu", "wall"):
        mine, theirs = best[f"ours {clock}"], best[f"drain3 {clock}"]
        print(
            f"  per {clock} second: ours {total / mine:,.0f} lines/s, "
            f"drain3 {total / theirs:,.0f} lines/s (ours/drain3 {theirs / mine:.2f})"
        )


def plain(datasets: list[Dataset]) -> None:
    print("| dataset | messages | ours (defaults) | drain3 defaults | ratio |")
    print("|---|---:|---:|---:|---:|")
    scores = []
    for d in datasets:
        mine, _ = ours(d, FingerprintConfig())
        theirs, _ = drain3(d)
        scores.append((mine, theirs))
        print(f"| {d.name} | {len(d.messages)} | {mine:.3f} | {theirs:.3f} | {mine / theirs:.2f} |")
    mine = statistics.mean(s[0] for s in scores)
    theirs = statistics.mean(s[1] for s in scores)
    print(f"| **mean** | | **{mine:.3f}** | {theirs:.3f} | {mine / theirs:.2f} |")


def leave_one_out(datasets: list[Dataset]) -> None:
    grid = configs()
    print(f"{len(grid)} configurations x {len(datasets)} files ...", file=sys.stderr)
    table = [[ours(d, c)[0] for d in datasets] for c in grid]
    defaults = [ours(d, FingerprintConfig())[0] for d in datasets]
    reference = [drain3(d)[0] for d in datasets]
    whole = max(range(len(grid)), key=lambda c: (statistics.mean(table[c]), -c))

    print(
        "| held out | tuned on the other files | held-out GA | in-sample GA | defaults "
        "| drain3 defaults |"
    )
    print("|---|---|---:|---:|---:|---:|")
    held: list[float] = []
    for i, d in enumerate(datasets):
        others = [j for j in range(len(datasets)) if j != i]
        chosen = max(
            range(len(grid)), key=lambda c: (statistics.mean(table[c][j] for j in others), -c)
        )
        held.append(table[chosen][i])
        print(
            f"| {d.name} | {describe(grid[chosen])} | {table[chosen][i]:.3f} "
            f"| {table[whole][i]:.3f} | {defaults[i]:.3f} | {reference[i]:.3f} |"
        )
    print(
        f"| **mean** | | **{statistics.mean(held):.3f}** | {statistics.mean(table[whole]):.3f} "
        f"| {statistics.mean(defaults):.3f} | {statistics.mean(reference):.3f} |"
    )
    print(
        f"| **worst** | | **{min(held):.3f}** | {min(table[whole]):.3f} "
        f"| {min(defaults):.3f} | {min(reference):.3f} |"
    )
    print(f"\nin-sample: the best configuration on all files is {describe(grid[whole])}")
    print(f"shipped defaults: {describe(FingerprintConfig())}")


class ScanEveryTemplate(Fingerprinter):
    """The baseline: a new shape compared with every template of its length."""

    def _candidates(self, scope: tuple[str, str], key: tuple[str, ...]) -> set[int]:
        return set(self._buckets.get(self._bucket(scope, key), set()))


def storm_lines(count: int, seed: int = 7) -> list[str]:
    r = random.Random(seed)
    return [
        " ".join(
            "".join(r.choice(string.ascii_lowercase) for _ in range(6))
            for _ in range(r.randint(3, 12))
        )
        for _ in range(count)
    ]


def _per_line(fingerprinter: Fingerprinter, lines: list[str]) -> float:
    started = time.perf_counter()
    for line in lines:
        fingerprinter.add(line)
    return (time.perf_counter() - started) / len(lines)


def storm(database_url: str | None) -> None:
    uncapped = FingerprintConfig(max_templates_per_scope=10**9)
    print("| new shapes | scan every template (before) | indexed | indexed, capped | ratio |")
    print("|---:|---:|---:|---:|---:|")
    for count in (2_000, 8_000, 32_000):
        lines = storm_lines(count)
        # the old way is quadratic: 32,000 shapes would take minutes, so it stops at 8,000
        scan = _per_line(ScanEveryTemplate(uncapped), lines) if count <= 8_000 else None
        indexed = _per_line(Fingerprinter(uncapped), lines)
        capped = _per_line(Fingerprinter(), lines)
        before = "-" if scan is None else f"{scan * 1000:.3f} ms"
        ratio = "-" if scan is None else f"{scan / indexed:.0f}x"
        print(
            f"| {count:,} | {before} | {indexed * 1000:.3f} ms | {capped * 1000:.3f} ms | {ratio} |"
        )
    print(
        f"(per line; capped: the default {FingerprintConfig().max_templates_per_scope:,} "
        "templates per scope, the rest to its overflow template)"
    )
    if database_url is None:
        return
    lines = storm_lines(2_000, seed=int(time.time()))
    store = SharedTemplates(database_url, refresh_s=5.0)
    try:
        shared = _per_line(Fingerprinter(shared=store), lines)
    finally:
        store.close()
    local = _per_line(Fingerprinter(), lines)
    print(
        f"\nshared store, 2,000 new shapes: {shared * 1000:.2f} ms each under the lock "
        f"(local miner alone {local * 1000:.3f} ms each, in this run)"
    )


@contextmanager
def embedded_postgres() -> Iterator[str]:
    home = Path(tempfile.mkdtemp(prefix="aiops-bench-fingerprint-"))
    stack = DevStack(
        home, postgres_port=free_port(), redis_port=free_port(), services=("postgres",)
    )
    print(f"starting PostgreSQL under {home} ...", file=sys.stderr, flush=True)
    state = asyncio.run(stack.up()).state
    try:
        url = state.services["postgres"].url
        asyncio.run(migrate(url, 384))
        yield url
    finally:
        stack.down()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--leave-one-out", action="store_true", help="tune on all files but one, score that one"
    )
    parser.add_argument("--storm", action="store_true", help="a storm of never-seen shapes")
    parser.add_argument("--database-url", help="with --storm: also through the shared store")
    parser.add_argument(
        "--postgres", action="store_true", help="with --storm: start one for the shared store"
    )
    args = parser.parse_args()
    if args.storm and args.postgres:
        with embedded_postgres() as url:
            storm(url)
        return 0
    if args.storm:
        storm(args.database_url)
        return 0
    files = sorted(args.data_dir.glob("*.csv"))
    if not files:
        print(f"no CSV files in {args.data_dir}", file=sys.stderr)
        return 1
    datasets = [load(path) for path in files]
    started = time.perf_counter()
    print(f"Grouping Accuracy on {len(datasets)} files in {args.data_dir}\n")
    if args.leave_one_out:
        leave_one_out(datasets)
    else:
        plain(datasets)
    speed(datasets)
    print(f"whole bench {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
