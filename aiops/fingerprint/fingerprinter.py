"""Online problem fingerprinting: lines in, stable group ids and templates out.

A line is reduced to its shape (`aiops.fingerprint.tokens`: words, marks, and ``<*>`` for
data) and looked up by it. A shape not seen before is compared with the templates of the
same length, scope and leading token, as Drain does: it joins the one it differs from in
the fewest words when that is at most ``(1 - similarity)`` of the template's words (so a
two-word template must match exactly, a twenty-word one may differ in six), and those
positions become ``<*>``. A template that generalises until it covers another one of its
bucket absorbs it: the younger is recorded as merged into the older, whose fingerprint
stays.

A template's fingerprint is fixed when it is created, from its scope and its first shape,
so it keys one incident for the life of the stream however it generalises later. With a
shared store (`aiops.fingerprint.store`) every decision on a new shape is taken under a
lock with every template any process has learnt, so the ids do not depend on which
process saw a line first: the same line gets the same fingerprint in every listener, and
in one restarted. Groups never span two (service, category) scopes.

Not thread-safe: one fingerprinter per consumer, or a lock around it.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Protocol, TypeVar

from aiops.fingerprint.models import (
    ClusterState,
    FingerprintConfig,
    FingerprintResult,
    FingerprintState,
    RememberedKey,
    TemplateToken,
)
from aiops.fingerprint.tokens import WILDCARD, Token, key_of, render, tokenize

Key = tuple[str, ...]
Scope = tuple[str, str]
Bucket = tuple[Scope, int]
_K = TypeVar("_K")

log = logging.getLogger("aiops.fingerprint")

# the first shape of a scope's overflow template: "<" and ">" split words, so no line has it
OVERFLOW_KEY: Key = ("<overflow>",)


def _is_word(token: str) -> bool:
    return token != WILDCARD and any(ch.isalnum() for ch in token)


def _words(key: Key) -> int:
    return sum(1 for token in key if _is_word(token))


def _slots(key: Key) -> list[Key]:
    """The key with one of its words made ``<*>``, for each of its words, when one remains."""
    words = [i for i, token in enumerate(key) if _is_word(token)]
    if len(words) < 2:
        return []
    return [(*key[:i], WILDCARD, *key[i + 1 :]) for i in words]


@dataclass
class _Cluster:
    index: int
    fingerprint: str
    scope: Scope
    first_key: Key
    tokens: list[Token]
    size: int
    merged_into: int | None = None
    overflow: bool = False
    key: Key = ()
    words: int = 0
    template: str = ""

    def __post_init__(self) -> None:
        self.retemplate(self.tokens)

    def retemplate(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.key = tuple(t.text for t in tokens)
        self.words = _words(self.key)
        self.template = render(tokens)

    def result(self) -> FingerprintResult:
        # built for every line: its fields are known valid, so skip validation
        return FingerprintResult.model_construct(
            fingerprint=self.fingerprint, template=self.template, cluster_size=self.size
        )


def _covers(general: Key, specific: Key) -> bool:
    """Whether every line of ``specific`` is a line of ``general`` (same length)."""
    return all(a in (b, WILDCARD) for a, b in zip(general, specific, strict=True))


class TemplateSharing(Protocol):
    """What a fingerprinter asks of the store it shares templates through (SharedTemplates
    in aiops.fingerprint.store, which drives the fingerprinter and so imports it)."""

    def attach(self, fingerprinter: Fingerprinter) -> None: ...

    def due(self) -> bool: ...

    def refresh(self, fingerprinter: Fingerprinter) -> None: ...

    def learn(self, fingerprinter: Fingerprinter, scope: Scope, key: Key, message: str) -> int: ...

    def placed(self, scope: Scope, key: Key) -> str | None: ...


class Fingerprinter:
    """Groups lines into problems as they stream in; see the module docstring."""

    def __init__(
        self, config: FingerprintConfig | None = None, *, shared: TemplateSharing | None = None
    ) -> None:
        self.config = config or FingerprintConfig()
        self._shared = shared
        self._clusters: list[_Cluster] = []
        self._by_fingerprint: dict[str, int] = {}
        # a template's first shape always finds it again, even after the LRU forgets it
        self._first: dict[tuple[Scope, Key], int] = {}
        self._remembered: OrderedDict[tuple[Scope, Key], int] = OrderedDict()
        self._buckets: dict[Bucket, set[int]] = {}
        # A template a shape may join differs from it in at most K positions, K fixed by the
        # length; cut into K + 1 blocks, the two agree on one whole block. Each template is
        # indexed by its blocks (its <*> kept as <*>), so a new shape is compared with the
        # templates that agree with it on a block, not with its whole bucket.
        self._block_index: dict[tuple[Bucket, int, Key], set[int]] = {}
        self._block_masks: dict[tuple[Bucket, int], Counter[tuple[int, ...]]] = {}
        self._block_cuts: dict[int, list[range] | None] = {}
        # templates by a word at a position: the ones a generalised template may now cover
        self._at: dict[tuple[Bucket, int, str], set[int]] = {}
        self._alive_in: Counter[Scope] = Counter()
        self._overflow: dict[Scope, int] = {}
        # templates one word apart, by that word made <*>: a slot many words fill is data
        self._slots: dict[tuple[Scope, Key], list[int]] = {}
        # templates created or changed since the shared store last took them
        self._changed: set[int] = set()
        if shared is not None:
            shared.attach(self)

    def __len__(self) -> int:
        return sum(1 for c in self._clusters if c.merged_into is None)

    # --- public interface -------------------------------------------------------------

    def add(
        self, message: str, service: str | None = None, category: str | None = None
    ) -> FingerprintResult:
        """Fingerprint a line and learn from it (a template grows, or a new one starts)."""
        return self._add(message, service, category).result()

    def identify(
        self, message: str, service: str | None = None, category: str | None = None
    ) -> tuple[str, str]:
        """add(), answering (fingerprint, template) only: the listener's hot path, where a
        result model per line costs more than the lookup."""
        cluster = self._add(message, service, category)
        return cluster.fingerprint, cluster.template

    def _add(self, message: str, service: str | None, category: str | None) -> _Cluster:
        scope: Scope = (service or "", category or "")
        key = key_of(message)
        if self._shared is not None and self._shared.due():
            self._shared.refresh(self)
        index = self._lookup(scope, key, touch=True)
        if index is None:
            if self._shared is not None:
                index = self._shared.learn(self, scope, key, message)
            else:
                index = self.learn(scope, key, message)
            self._remember(scope, key, index)
        cluster = self._clusters[self._alive(index)]
        cluster.size += 1
        return cluster

    def match(
        self, message: str, service: str | None = None, category: str | None = None
    ) -> FingerprintResult | None:
        """The group a line would join, without learning from it; None for a new problem."""
        scope: Scope = (service or "", category or "")
        key = key_of(message)
        index = self._lookup(scope, key, touch=False)
        if index is None:
            index = self._best_candidate(scope, key)
        return None if index is None else self._clusters[self._alive(index)].result()

    def groups(self) -> list[FingerprintResult]:
        """Every group so far (merged ones left out), in the order they were created."""
        return [c.result() for c in self._clusters if c.merged_into is None]

    def resolve(self, fingerprint: str) -> str:
        """The fingerprint a group's lines get now: itself, or the one it was merged into."""
        index = self._by_fingerprint.get(fingerprint)
        return fingerprint if index is None else self._clusters[self._alive(index)].fingerprint

    def state(self) -> FingerprintState:
        return FingerprintState(
            config=self.config,
            clusters=[
                ClusterState(
                    fingerprint=c.fingerprint,
                    service=c.scope[0],
                    category=c.scope[1],
                    first_key=list(c.first_key),
                    tokens=[TemplateToken(**t._asdict()) for t in c.tokens],
                    size=c.size,
                    merged_into=None
                    if c.merged_into is None
                    else self._clusters[c.merged_into].fingerprint,
                )
                for c in self._clusters
            ],
            remembered=[
                RememberedKey(cluster=index, key=list(key))
                for (_, key), index in self._remembered.items()
            ],
        )

    def to_bytes(self) -> bytes:
        return self.state().model_dump_json().encode()

    @classmethod
    def from_state(cls, state: FingerprintState | bytes | str) -> Fingerprinter:
        """A fingerprinter that carries on where the one that saved ``state`` stopped."""
        if not isinstance(state, FingerprintState):
            state = FingerprintState.model_validate_json(state)
        restored = cls(state.config)
        for saved in state.clusters:
            restored.apply(
                fingerprint=saved.fingerprint,
                scope=(saved.service, saved.category),
                first_key=tuple(saved.first_key),
                tokens=[Token(t.text, t.variable, t.space_before) for t in saved.tokens],
                size=saved.size,
            )
        for saved in state.clusters:
            if saved.merged_into is not None:
                restored.apply_merge(saved.fingerprint, saved.merged_into)
        for remembered in state.remembered:
            if remembered.cluster >= len(restored._clusters):
                raise ValueError(f"remembered key points at missing group {remembered.cluster}")
            scope = restored._clusters[remembered.cluster].scope
            restored._remembered[(scope, tuple(remembered.key))] = remembered.cluster
        restored._changed.clear()
        return restored

    # --- what the shared store drives ---------------------------------------------------

    def learn(self, scope: Scope, key: Key, message: str) -> int:
        """Place a shape not seen before: into the best template, or a new one. Its index."""
        best = self._best_candidate(scope, key)
        if best is None:
            best = self._crowded_slot(scope, key)
        if best is None:
            if self._alive_in[scope] >= self.config.max_templates_per_scope:
                return self._overflow_of(scope)
            return self._create(scope, key, tokenize(message)).index
        cluster = self._clusters[best]
        self._generalise(cluster, key)
        return cluster.index

    def apply(
        self,
        *,
        fingerprint: str,
        scope: Scope,
        first_key: Key,
        tokens: list[Token],
        size: int = 0,
    ) -> int:
        """Take a template as another process (or a saved state) has it: create or update."""
        index = self._by_fingerprint.get(fingerprint)
        if index is None:
            cluster = _Cluster(len(self._clusters), fingerprint, scope, first_key, tokens, size)
            self._clusters.append(cluster)
            self._by_fingerprint[fingerprint] = cluster.index
            if first_key == OVERFLOW_KEY:
                cluster.overflow = True
                self._overflow.setdefault(scope, cluster.index)
                return cluster.index
            self._first[(scope, first_key)] = cluster.index
            self._alive_in[scope] += 1
            self._index(cluster)
            return cluster.index
        cluster = self._clusters[index]
        if tuple(t.text for t in tokens) != cluster.key:
            self._unindex(cluster)
            cluster.retemplate(tokens)
            self._index(cluster)
        return index

    def apply_merge(self, fingerprint: str, into: str) -> None:
        absorbed, survivor = self._by_fingerprint[fingerprint], self._by_fingerprint[into]
        cluster = self._clusters[absorbed]
        if cluster.merged_into is None:
            self._merge(cluster, survivor)

    def fold(self, fingerprint: str, into: str) -> None:
        """Merge a template into another one (that the store placed its shape in): pushed."""
        absorbed = self._clusters[self._by_fingerprint[fingerprint]]
        survivor = self._clusters[self._alive(self._by_fingerprint[into])]
        if absorbed.merged_into is not None or absorbed is survivor:
            return
        self._merge(absorbed, survivor.index)
        survivor.size += absorbed.size
        self._changed.add(absorbed.index)
        if not survivor.overflow and len(survivor.key) == len(absorbed.key):
            self._generalise(survivor, absorbed.key)

    def replace(self, fingerprint: str) -> str | None:
        """Where the miner puts a template's first shape among the other templates, if in one.

        For a template made while the store was down: had the store been up, its first
        shape might have joined a template another process had made meanwhile.
        """
        cluster = self._clusters[self._by_fingerprint[fingerprint]]
        if cluster.overflow or cluster.merged_into is not None:
            return None
        self._unindex(cluster)
        try:
            best = self._best_candidate(cluster.scope, cluster.first_key)
            if best is None:
                best = self._crowded_slot(cluster.scope, cluster.first_key)
        finally:
            self._index(cluster)
        return None if best is None else self._clusters[best].fingerprint

    def overflowing(self, scope: Scope, key: Key) -> int | None:
        """The scope's overflow template if a new shape goes there whatever the others know.

        The scope is full and no template of it takes the shape: no decision to share.
        """
        overflow = self._overflow.get(scope)
        if overflow is None or self._alive_in[scope] < self.config.max_templates_per_scope:
            return None
        if self._best_candidate(scope, key) is not None:
            return None
        if self._crowded_slot(scope, key) is not None:
            return None
        return overflow

    def restore_changes(self, changes: list[tuple[_Cluster, str | None]]) -> None:
        """Put back changes taken for a write that did not happen, for the next one."""
        self._changed.update(cluster.index for cluster, _ in changes)

    def take_changes(self) -> list[tuple[_Cluster, str | None]]:
        """Templates created or changed since last asked, each with what it merged into."""
        changed = sorted(self._changed)
        self._changed.clear()
        out: list[tuple[_Cluster, str | None]] = []
        for index in changed:
            cluster = self._clusters[index]
            into = cluster.merged_into
            out.append((cluster, None if into is None else self._clusters[into].fingerprint))
        return out

    def index_of(self, fingerprint: str) -> int | None:
        return self._by_fingerprint.get(fingerprint)

    def fingerprint_of(self, index: int) -> str:
        return self._clusters[index].fingerprint

    def template_count(self) -> int:
        """Templates ever made or taken, merged and overflow ones included (the next index)."""
        return len(self._clusters)

    def is_template(self, index: int) -> bool:
        """Whether the index is a template of lines (not a scope's overflow template)."""
        return not self._clusters[index].overflow

    # --- internals --------------------------------------------------------------------

    def _alive(self, index: int) -> int:
        while (into := self._clusters[index].merged_into) is not None:
            index = into
        return index

    def _lookup(self, scope: Scope, key: Key, *, touch: bool) -> int | None:
        entry = (scope, key)
        index = self._remembered.get(entry)
        if index is not None:
            if touch:
                self._remembered.move_to_end(entry)
            return index
        if self._shared is not None:
            # the database's placement first: a template made while the store was down may
            # have this shape as its first one, though the others placed it elsewhere
            placed = self._shared.placed(scope, key)
            if placed is not None and (index := self._by_fingerprint.get(placed)) is not None:
                return index
        return self._first.get(entry)

    def _remember(self, scope: Scope, key: Key, index: int) -> None:
        limit = self.config.max_remembered_keys
        if limit == 0:
            return
        self._remembered[(scope, key)] = index
        self._remembered.move_to_end((scope, key))
        while len(self._remembered) > limit:
            self._remembered.popitem(last=False)

    def _bucket(self, scope: Scope, key: Key) -> Bucket:
        return (scope, len(key))

    def _crowded_slot(self, scope: Scope, key: Key) -> int | None:
        """The oldest template of a slot that this shape's word makes ``slot_values`` deep.

        Templates differing in one word stay apart (``VM Paused``, ``VM Resumed``) until
        that word has taken ``slot_values`` different values: then it is data
        (``removing echo``, ``removing chargen``, ``removing daytime``...).
        """
        needed = self.config.slot_values
        if needed == 0:
            return None
        found: int | None = None
        for pattern in _slots(key):
            members = self._slots.get((scope, pattern))
            if members and len(members) + 1 >= needed:
                oldest = min(members)
                if found is None or oldest < found:
                    found = oldest
        return found

    def _best_candidate(self, scope: Scope, key: Key) -> int | None:
        """The template the shape differs from in fewest words, within what its length allows."""
        best: tuple[int, int] | None = None  # (differing words, index): ties go to the oldest
        slack = 1.0 - self.config.similarity
        prefix = self.config.prefix_tokens
        for index in self._candidates(scope, key):
            template = self._clusters[index].key
            allowed = int(slack * self._clusters[index].words + 1e-9)
            differing = 0
            for position, (a, b) in enumerate(zip(template, key, strict=True)):
                if a in (b, WILDCARD):
                    continue
                if position < prefix:
                    differing = allowed + 1
                    break
                # a mark is structure: never a variable
                if not any(ch.isalnum() for ch in a) or (
                    b != WILDCARD and not any(ch.isalnum() for ch in b)
                ):
                    differing = allowed + 1
                    break
                differing += 1
                if differing > allowed:
                    break
            if differing <= allowed and (best is None or (differing, index) < best):
                best = (differing, index)
        return None if best is None else best[1]

    def _cuts(self, length: int) -> list[range] | None:
        """The blocks of a bucket's positions; None when a candidate may differ everywhere."""
        if length in self._block_cuts:
            return self._block_cuts[length]
        # the most words a template of this length may differ in (it has at most this many)
        most = int((1.0 - self.config.similarity) * length + 1e-9)
        if most + 1 > length:
            found: list[range] | None = None
        else:
            size, extra = divmod(length, most + 1)
            found, start = [], 0
            for block in range(most + 1):
                end = start + size + (1 if block < extra else 0)
                found.append(range(start, end))
                start = end
        self._block_cuts[length] = found
        return found

    def _candidates(self, scope: Scope, key: Key) -> set[int]:
        """The templates of the shape's bucket that agree with it on one whole block."""
        bucket = self._bucket(scope, key)
        cuts = self._cuts(len(key))
        if cuts is None:
            return self._buckets.get(bucket, set())
        found: set[int] = set()
        for number, block in enumerate(cuts):
            masks = self._block_masks.get((bucket, number))
            if not masks:
                continue
            for mask in masks:
                signature = tuple(
                    WILDCARD if position in mask else key[position] for position in block
                )
                members = self._block_index.get((bucket, number, signature))
                if members:
                    found |= members
        return found

    def _overflow_of(self, scope: Scope) -> int:
        """The scope's overflow template: every new shape once it has too many templates."""
        index = self._overflow.get(scope)
        if index is not None:
            return index
        cluster = _Cluster(
            index=len(self._clusters),
            fingerprint=self._new_fingerprint(scope, OVERFLOW_KEY),
            scope=scope,
            first_key=OVERFLOW_KEY,
            tokens=[Token(WILDCARD, True, False)],
            size=0,
            overflow=True,
        )
        self._clusters.append(cluster)
        self._by_fingerprint[cluster.fingerprint] = cluster.index
        self._overflow[scope] = cluster.index
        self._changed.add(cluster.index)
        log.warning(
            "scope %s has %d templates (max_templates_per_scope): its new line shapes go to "
            "one overflow template %s from now on",
            scope,
            self._alive_in[scope],
            cluster.fingerprint,
        )
        return cluster.index

    def _merge(self, cluster: _Cluster, survivor: int) -> None:
        self._unindex(cluster)
        cluster.merged_into = survivor
        if not cluster.overflow:
            self._alive_in[cluster.scope] -= 1

    def _create(self, scope: Scope, key: Key, tokens: list[Token]) -> _Cluster:
        cluster = _Cluster(
            index=len(self._clusters),
            fingerprint=self._new_fingerprint(scope, key),
            scope=scope,
            first_key=key,
            tokens=list(tokens),
            size=0,
        )
        self._clusters.append(cluster)
        self._by_fingerprint[cluster.fingerprint] = cluster.index
        self._first[(scope, key)] = cluster.index
        self._alive_in[scope] += 1
        self._index(cluster)
        self._changed.add(cluster.index)
        return cluster

    def _new_fingerprint(self, scope: Scope, key: Key) -> str:
        # the first shape is unique within a scope, so a clash is a hash collision (or a
        # shape forgotten by the LRU): salt until unique, deterministically
        base = f"{scope[0]}|{scope[1]}|{' '.join(key)}"
        salt = 0
        while True:
            text = base if salt == 0 else f"{base}|{salt}"
            digest = hashlib.sha256(text.encode()).hexdigest()[: self.config.fingerprint_hex_chars]
            if digest not in self._by_fingerprint:
                return digest
            salt += 1

    def _generalise(self, cluster: _Cluster, key: Key) -> None:
        """Turn the template's positions where the shape differs into ``<*>``."""
        if _covers(cluster.key, key):
            return
        merged = [
            mine if mine.text == theirs else Token(WILDCARD, True, mine.space_before)
            for mine, theirs in zip(cluster.tokens, key, strict=True)
        ]
        self._unindex(cluster)
        cluster.retemplate(merged)
        self._index(cluster)
        self._changed.add(cluster.index)
        self._absorb_covered(cluster)

    def _absorb_covered(self, cluster: _Cluster) -> None:
        """Merge the templates of the bucket this one now covers; the oldest id survives."""
        bucket = self._bucket(cluster.scope, cluster.key)
        # a covered template has this one's word wherever it has one: the rarest is enough
        postings = [
            self._at.get((bucket, position, token), set())
            for position, token in enumerate(cluster.key)
            if token != WILDCARD
        ]
        pool = min(postings, key=len) if postings else self._buckets.get(bucket, set())
        covered = [
            i for i in pool if i != cluster.index and _covers(cluster.key, self._clusters[i].key)
        ]
        if not covered:
            return
        survivor = self._clusters[min([*covered, cluster.index])]
        for index in sorted(set([*covered, cluster.index]) - {survivor.index}):
            absorbed = self._clusters[index]
            self._merge(absorbed, survivor.index)
            survivor.size += absorbed.size
            self._changed.add(index)
        if survivor is not cluster:
            self._unindex(survivor)
            survivor.retemplate(cluster.tokens)
            self._index(survivor)
        self._changed.add(survivor.index)

    def _index(self, cluster: _Cluster) -> None:
        if cluster.merged_into is not None or cluster.overflow:
            return
        bucket = self._bucket(cluster.scope, cluster.key)
        self._buckets.setdefault(bucket, set()).add(cluster.index)
        key = cluster.key
        for position, token in enumerate(key):
            if token != WILDCARD:
                self._at.setdefault((bucket, position, token), set()).add(cluster.index)
        for number, block in enumerate(self._cuts(len(key)) or ()):
            signature = tuple(key[position] for position in block)
            mask = tuple(p for p in block if key[p] == WILDCARD)
            self._block_masks.setdefault((bucket, number), Counter())[mask] += 1
            self._block_index.setdefault((bucket, number, signature), set()).add(cluster.index)
        if self.config.slot_values:
            for pattern in _slots(cluster.key):
                self._slots.setdefault((cluster.scope, pattern), []).append(cluster.index)

    def _unindex(self, cluster: _Cluster) -> None:
        bucket = self._bucket(cluster.scope, cluster.key)
        members = self._buckets.get(bucket)
        if members and cluster.index in members:
            members.remove(cluster.index)
            key = cluster.key
            for position, token in enumerate(key):
                if token != WILDCARD:
                    self._discard(self._at, (bucket, position, token), cluster.index)
            for number, block in enumerate(self._cuts(len(key)) or ()):
                signature = tuple(key[position] for position in block)
                mask = tuple(p for p in block if key[p] == WILDCARD)
                masks = self._block_masks[(bucket, number)]
                masks[mask] -= 1
                if masks[mask] <= 0:
                    del masks[mask]
                self._discard(self._block_index, (bucket, number, signature), cluster.index)
            if self.config.slot_values:
                for pattern in _slots(cluster.key):
                    slot = self._slots.get((cluster.scope, pattern))
                    if slot and cluster.index in slot:
                        slot.remove(cluster.index)

    @staticmethod
    def _discard(index: dict[_K, set[int]], entry: _K, member: int) -> None:
        members = index.get(entry)
        if members is not None:
            members.discard(member)
            if not members:
                del index[entry]
