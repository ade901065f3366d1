"""Where on a numeric field each action works: the threshold search behind evolution.

Input: outcomes as (value of the field at the time, action, success). Output: the value
axis cut into consecutive segments, each labelled with one action or with none, chosen to
maximise

    sum over segments labelled a of (successes of a there - failures of a there)
    - cost x (number of label changes, starting from "none")

so a segment goes to the action whose successes outnumber its failures there by the
most, and a cut is made only where it pays for itself (`cost`, default 1: a segment must
win by more than one outcome to exist, which keeps a single odd outcome from splitting a
pattern). Values with no action worth taking are labelled none. It is exact (dynamic
programming over the sorted distinct values, O(values x actions^2)) and assumes nothing
about where the cuts are: the same search moves one threshold, or splits one pattern into
"scale from 70, restart above 85" when the outcomes say so.

Cuts sit on observed values: a segment ends at its last value (`lte`), the next starts
above it (`gt`), so every recorded outcome stays on the side it was seen on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

DEFAULT_COST = 1.0


@dataclass(frozen=True)
class Point:
    value: float
    action: str
    success: bool


@dataclass
class Segment:
    label: str | None
    low: float
    high: float
    successes: int = 0
    failures: int = 0

    @property
    def posterior(self) -> float:
        """Mean of Beta(1 + successes, 1 + failures) for the label's action here."""
        return (1 + self.successes) / (2 + self.successes + self.failures)


@dataclass
class Segmentation:
    segments: list[Segment]
    objective: float


def _gains(
    points: Sequence[Point], labels: list[str | None]
) -> tuple[list[float], list[list[float]]]:
    values = sorted({p.value for p in points})
    row = {v: i for i, v in enumerate(values)}
    column = {label: j for j, label in enumerate(labels)}
    gain = [[0.0] * len(labels) for _ in values]
    for p in points:
        gain[row[p.value]][column[p.action]] += 1.0 if p.success else -1.0
    return values, gain


def score(
    points: Sequence[Point], label_at: Callable[[float], str | None], cost: float = DEFAULT_COST
) -> float:
    """The objective of a given labelling (the pattern as it is), for comparison."""
    labels: list[str | None] = [None, *sorted({p.action for p in points})]
    values, gain = _gains(points, labels)
    column = {label: j for j, label in enumerate(labels)}
    total, previous = 0.0, None
    for i, value in enumerate(values):
        label = label_at(value)
        if label != previous:
            total -= cost
            previous = label
        if label is not None:
            total += gain[i][column[label]] if label in column else 0.0
    return total


def segment(points: Sequence[Point], cost: float = DEFAULT_COST) -> Segmentation:
    """The best labelling of the value axis (see the module docstring)."""
    if not points:
        return Segmentation([], 0.0)
    labels: list[str | None] = [None, *sorted({p.action for p in points})]
    values, gain = _gains(points, labels)
    n, m = len(values), len(labels)
    best = [[0.0] * m for _ in range(n)]
    back = [[0] * m for _ in range(n)]
    for j in range(m):
        best[0][j] = gain[0][j] - (cost if j else 0.0)
    for i in range(1, n):
        previous = best[i - 1]
        top = max(range(m), key=previous.__getitem__)
        for j in range(m):
            # staying wins ties: no cut without a gain
            if previous[top] - cost > previous[j]:
                best[i][j], back[i][j] = gain[i][j] + previous[top] - cost, top
            else:
                best[i][j], back[i][j] = gain[i][j] + previous[j], j
    j = max(range(m), key=lambda k: (best[n - 1][k], k == 0))
    objective = best[n - 1][j]
    chosen = [0] * n
    for i in range(n - 1, -1, -1):
        chosen[i] = j
        j = back[i][j]
    segments: list[Segment] = []
    for i, value in enumerate(values):
        label = labels[chosen[i]]
        if segments and segments[-1].label == label:
            segments[-1].high = value
        else:
            segments.append(Segment(label, value, value))
    for p in points:
        for s in segments:
            if s.low <= p.value <= s.high:
                if s.label == p.action:
                    if p.success:
                        s.successes += 1
                    else:
                        s.failures += 1
                break
    return Segmentation(segments, objective)
