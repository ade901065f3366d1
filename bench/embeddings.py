"""Throughput of the local all-MiniLM-L6-v2 embedder on one core: a figure, not a test.

    .venv/bin/python bench/embeddings.py [--sentences 200] [--repeats 3]

Prints sentences/s for batched embedding (the default batch size), with two baselines from
the same run: batch size 1 (what batching buys) and the tokenizer alone (the ceiling set
by word-piece splitting). Best of --repeats runs, since the machine is shared.
"""

from __future__ import annotations

import os

# One core: BLAS and the tokenizer's thread pool read these when first imported.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[_name] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import asyncio  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

from aiops.embeddings.base import DEFAULT_BATCH_SIZE  # noqa: E402
from aiops.embeddings.minilm import MiniLMEmbedder  # noqa: E402

_SERVICES = ["checkout-api", "payments", "auth", "search", "postgres", "redis", "ingress"]
_TEMPLATES = [
    "{ts} ERROR [{svc}] connection refused to {ip}:5432 after {n} retries",
    "{ts} WARN  [{svc}] p99 latency {n} ms above SLO on /api/v1/orders",
    "{ts} INFO  [{svc}] pod {svc}-{h} restarted (OOMKilled, limit 512Mi)",
    "{ts} ERROR [{svc}] disk usage {n}% on /var/lib/data",
    "{ts} WARN  [{svc}] certificate for {svc}.example.com expires in {n} days",
    "{ts} ERROR [{svc}] upstream timed out while reading response header from {ip}",
]


def log_lines(count: int) -> list[str]:
    rng = random.Random(42)
    return [
        rng.choice(_TEMPLATES).format(
            ts=f"2024-05-01T12:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z",
            svc=rng.choice(_SERVICES),
            ip=f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
            n=rng.randrange(1, 1000),
            h=f"{rng.getrandbits(24):06x}",
        )
        for _ in range(count)
    ]


def best_rate(run: Callable[[], object], count: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    texts = log_lines(args.sentences)
    embedder = MiniLMEmbedder(batch_size=DEFAULT_BATCH_SIZE)
    asyncio.run(embedder.embed(texts[:8]))  # load the weights outside the timings
    tokenizer = embedder._model().tokenizer

    def embed_with(batch_size: int) -> Callable[[], object]:
        def run() -> object:
            embedder.batch_size = batch_size
            return asyncio.run(embedder.embed(texts))

        return run

    n, r = len(texts), args.repeats
    batched = best_rate(embed_with(DEFAULT_BATCH_SIZE), n, r)
    single = best_rate(embed_with(1), n, r)
    tokenize = best_rate(lambda: tokenizer.encode_batch(texts), n, r)
    tokens = sum(len(e.ids) for e in tokenizer.encode_batch(texts)) / n

    print(f"all-MiniLM-L6-v2 on numpy, 1 core, {n} log lines (~{tokens:.0f} tokens each)")
    print(f"  batched (batch size {DEFAULT_BATCH_SIZE}): {batched:8.0f} sentences/s")
    print(
        f"  baseline, batch size 1:   {single:8.0f} sentences/s"
        f"  -> batching is {batched / single:.1f}x faster"
    )
    print(
        f"  baseline, tokenizer only: {tokenize:8.0f} sentences/s"
        f"  -> the model is {tokenize / batched:.0f}x slower than tokenizing"
    )


if __name__ == "__main__":
    main()
