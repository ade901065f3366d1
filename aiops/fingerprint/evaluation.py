"""Grouping Accuracy (Zhu et al., ICSE-SEIP 2019), the measure the fingerprinter is held to."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence


def grouping_accuracy(predicted: Sequence[Hashable], truth: Sequence[Hashable]) -> float:
    """Share of messages whose predicted group holds exactly the messages of their true group."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predictions for {len(truth)} labels")
    if not truth:
        return 1.0
    by_predicted: dict[Hashable, list[int]] = defaultdict(list)
    by_truth: dict[Hashable, set[int]] = defaultdict(set)
    for i, (group, label) in enumerate(zip(predicted, truth, strict=True)):
        by_predicted[group].append(i)
        by_truth[label].add(i)
    correct = 0
    for members in by_predicted.values():
        if by_truth[truth[members[0]]] == set(members):
            correct += len(members)
    return correct / len(truth)
