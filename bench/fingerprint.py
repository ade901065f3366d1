"""Grouping Accuracy of the problem fingerprinter on labelled real logs, against drain3.

    .venv/bin/python bench/fingerprint.py [DATA_DIR]

DATA_DIR holds Loghub-style CSV files (column ``Content`` the message, ``EventId`` its true
group); it defaults to ../shared/data/loghub-dev beside the repository. For every file it
prints GA of our fingerprints as emitted online, message by message in file order (what
keys incidents), GA of the final groups (each message matched again once the stream is
over), and GA of drain3 0.9.11 with its default configuration, fed the same messages in the
same run. One configuration for every file. A figure, not a test.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from aiops.fingerprint import Fingerprinter
from aiops.fingerprint.evaluation import grouping_accuracy

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "loghub-dev"


@dataclass
class Row:
    dataset: str
    messages: int
    online: float
    final: float
    drain3: float
    ours_s: float
    drain3_s: float


def load(path: Path) -> tuple[list[str], list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    return [r["Content"] for r in records], [r["EventId"] for r in records]


def measure(path: Path) -> Row:
    messages, truth = load(path)

    started = time.perf_counter()
    ours = Fingerprinter()
    online = [ours.add(message).fingerprint for message in messages]
    ours_s = time.perf_counter() - started
    final: list[str] = []
    for i, message in enumerate(messages):
        result = ours.match(message)
        final.append(result.fingerprint if result else f"unmatched-{i}")

    started = time.perf_counter()
    miner = TemplateMiner(config=TemplateMinerConfig())
    drain = [miner.add_log_message(message)["cluster_id"] for message in messages]
    drain3_s = time.perf_counter() - started

    return Row(
        dataset=path.name.split("_")[0],
        messages=len(messages),
        online=grouping_accuracy(online, truth),
        final=grouping_accuracy(final, truth),
        drain3=grouping_accuracy(drain, truth),
        ours_s=ours_s,
        drain3_s=drain3_s,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    files = sorted(args.data_dir.glob("*.csv"))
    if not files:
        print(f"no CSV files in {args.data_dir}", file=sys.stderr)
        return 1

    started = time.perf_counter()
    rows = [measure(path) for path in files]
    elapsed = time.perf_counter() - started

    print(f"Grouping Accuracy on {len(rows)} files in {args.data_dir}\n")
    print("| dataset | messages | ours (online) | ours (final groups) | drain3 defaults | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = r.online / r.drain3 if r.drain3 else float("inf")
        print(
            f"| {r.dataset} | {r.messages} | {r.online:.3f} | {r.final:.3f} "
            f"| {r.drain3:.3f} | {ratio:.2f} |"
        )
    n = len(rows)
    online = sum(r.online for r in rows) / n
    final = sum(r.final for r in rows) / n
    drain3 = sum(r.drain3 for r in rows) / n
    print(
        f"| **mean** | {sum(r.messages for r in rows)} | **{online:.3f}** | {final:.3f} "
        f"| {drain3:.3f} | {online / drain3:.2f} |"
    )
    ours_s = sum(r.ours_s for r in rows)
    drain3_s = sum(r.drain3_s for r in rows)
    total = sum(r.messages for r in rows)
    print(
        f"\nours: {ours_s:.2f} s to fingerprint {total} messages ({total / ours_s:,.0f}/s); "
        f"drain3: {drain3_s:.2f} s ({total / drain3_s:,.0f}/s); whole bench {elapsed:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
