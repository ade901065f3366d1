"""Whether a message is another instance of a template, when their token counts differ.

A wildcard on either side may stand for a short span of the other side when that span is
itself variable (holds a wildcard, plus any punctuation), as in ``synchronized to <IP>``
against ``synchronized to LOCAL(<NUM>)``; or for one plain word, which is how a slot that
has already carried masked values takes a name like ``lo`` after ``sit0``. At most
``max_words`` plain words may be swallowed this way in one comparison: a wildcard never
stands for the words that tell two events apart (``VM Paused`` is not ``VM Resumed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from aiops.fingerprint.masking import WILDCARD

NO_MATCH = -1


def is_word(token: str) -> bool:
    return token != WILDCARD and any(ch.isalnum() for ch in token)


_KEY_MARKS = frozenset({"=", ":"})


def _span_words(span: Sequence[str]) -> int | None:
    """Plain words in a span a wildcard may stand for, or None when it may not."""
    words = sum(1 for token in span if is_word(token))
    if WILDCARD in span:
        # a key (``user=``, ``port:``) is structure: a line with one more field is another event
        for token, after in pairwise(span):
            if after in _KEY_MARKS and is_word(token):
                return None
        return words
    return 1 if len(span) == 1 and words == 1 else None


def align(template: Sequence[str], message: Sequence[str], *, max_span: int, max_words: int) -> int:
    """The most constant tokens the two can share in one alignment, or NO_MATCH.

    Both are generic token sequences (variables as ``<*>``). Equal constants pair up;
    wildcards pair with wildcards, or stand for spans as described in the module docstring.
    """
    # equal constants at either end can only pair with each other, so peel them off and
    # leave the dynamic programme the (usually short) differing middle
    head = 0
    limit = min(len(template), len(message))
    while head < limit and template[head] == message[head] and template[head] != WILDCARD:
        head += 1
    tail = 0
    while (
        tail < limit - head
        and template[-1 - tail] == message[-1 - tail]
        and template[-1 - tail] != WILDCARD
    ):
        tail += 1
    t = template[head : len(template) - tail]
    m = message[head : len(message) - tail]
    if len(t) > MAX_CORE or len(m) > MAX_CORE:
        return NO_MATCH
    core = _align_core(t, m, max_span, max_words)
    return NO_MATCH if core == NO_MATCH else core + head + tail


# differing middles longer than this are different events as far as grouping goes; the
# dynamic programme is quadratic in it
MAX_CORE = 128


def _align_core(t: Sequence[str], m: Sequence[str], max_span: int, max_words: int) -> int:
    n, k = len(t), len(m)
    # best[b][i][j]: most shared constants aligning t[i:] with m[j:] using at most b words
    best = [[[NO_MATCH] * (k + 1) for _ in range(n + 1)] for _ in range(max_words + 1)]
    spans_m = [[_span_words(m[j : j + length]) for length in range(max_span + 1)] for j in range(k)]
    spans_t = [[_span_words(t[i : i + length]) for length in range(max_span + 1)] for i in range(n)]
    for budget in range(max_words + 1):
        table = best[budget]
        table[n][k] = 0
        for i in range(n - 1, -1, -1):
            row, below = table[i], table[i + 1]
            a = t[i]
            for j in range(k - 1, -1, -1):
                b = m[j]
                a_wild, b_wild = a == WILDCARD, b == WILDCARD
                result = NO_MATCH
                if a_wild and b_wild:
                    result = below[j + 1]
                elif a == b and below[j + 1] != NO_MATCH:
                    result = below[j + 1] + 1
                if a_wild:
                    for length in range(2 if b_wild else 1, min(max_span, k - j) + 1):
                        words = spans_m[j][length]
                        if words is not None and words <= budget:
                            rest = best[budget - words][i + 1][j + length]
                            if rest > result:
                                result = rest
                if b_wild:
                    for length in range(2 if a_wild else 1, min(max_span, n - i) + 1):
                        words = spans_t[i][length]
                        if words is not None and words <= budget:
                            rest = best[budget - words][i + length][j + 1]
                            if rest > result:
                                result = rest
                row[j] = result
    return best[max_words][0][0]


def positional(template: Sequence[str], message: Sequence[str], *, max_words: int) -> bool:
    """Whether the two align token by token (same length), as Drain compares them."""
    if len(template) != len(message):
        return False
    words = 0
    for a, b in zip(template, message, strict=True):
        if a == b:
            continue
        if a == WILDCARD or b == WILDCARD:
            other = b if a == WILDCARD else a
            if not is_word(other):
                return False
            words += 1
        else:
            return False
    return words <= max_words
