"""Online problem fingerprinting: messages in, stable group ids and templates out.

Each message is masked (`aiops.fingerprint.masking`) and looked up by its masked form.
A form not seen before joins the group whose template it aligns with best
(`aiops.fingerprint.alignment`), or starts a new group. Unlike Drain, a differing plain word
never becomes a wildcard on its own: log events are mostly told apart by such words
(GET/POST, Paused/Resumed, enabled/disabled), while their data is masked up front.

A group's fingerprint is fixed when the group is created, from its scope and its first
masked form, so it keys one incident for the life of the stream however the group's
template generalises later. Groups never span two (service, category) scopes.

Not thread-safe: one fingerprinter per consumer, or a lock around it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from aiops.fingerprint.alignment import NO_MATCH, align, is_word, positional
from aiops.fingerprint.masking import WILDCARD, Token, render, tokenize
from aiops.fingerprint.models import (
    ClusterState,
    FingerprintConfig,
    FingerprintResult,
    FingerprintState,
    RememberedKey,
    TemplateToken,
)

Key = tuple[str, ...]
Scope = tuple[str, str]


@dataclass
class _Cluster:
    index: int
    fingerprint: str
    scope: Scope
    first_key: Key
    tokens: list[Token]
    size: int
    key: Key = ()
    template: str = ""

    def __post_init__(self) -> None:
        self.retemplate(self.tokens)

    def retemplate(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.key = _generic(tokens)
        self.template = render(tokens)

    def result(self) -> FingerprintResult:
        return FingerprintResult(
            fingerprint=self.fingerprint, template=self.template, cluster_size=self.size
        )


def _generic(tokens: list[Token] | tuple[Token, ...]) -> Key:
    return tuple(WILDCARD if token.variable else token.text for token in tokens)


def _signature(key: Key) -> Key:
    """The plain words of a form: two forms one absorbed word apart differ here by one."""
    return tuple(token for token in key if is_word(token))


# Candidates are found by the first words of a signature, and by those words with one
# left out. Bounding the prefix keeps the index linear in message length; it stays exact as
# a filter, because a word absorbed beyond the prefix leaves the prefixes equal.
_PREFIX = 24


def _prefix(signature: Key) -> Key:
    return signature[:_PREFIX]


def _deletions(signature: Key) -> Iterator[Key]:
    """The prefix-long forms of a signature with one of its first words left out."""
    head = signature[: _PREFIX + 1]
    seen: set[Key] = set()
    for i in range(len(head)):
        shorter = head[:i] + head[i + 1 :]
        if shorter not in seen:
            seen.add(shorter)
            yield shorter


class Fingerprinter:
    """Groups messages into problems as they stream in; see the module docstring."""

    def __init__(self, config: FingerprintConfig | None = None) -> None:
        self.config = config or FingerprintConfig()
        self._clusters: list[_Cluster] = []
        self._fingerprints: set[str] = set()
        # a group's first form always finds it again, even after the LRU below forgets it
        self._first: dict[tuple[Scope, Key], int] = {}
        self._remembered: OrderedDict[tuple[Scope, Key], int] = OrderedDict()
        self._by_signature: dict[tuple[Scope, Key], list[int]] = {}
        self._by_deletion: dict[tuple[Scope, Key], list[int]] = {}

    def __len__(self) -> int:
        return len(self._clusters)

    # --- public interface -------------------------------------------------------------

    def add(
        self, message: str, service: str | None = None, category: str | None = None
    ) -> FingerprintResult:
        """Fingerprint a message and learn from it (a group grows, or a new one starts)."""
        scope: Scope = (service or "", category or "")
        tokens = tokenize(message)
        key = _generic(tokens)
        index = self._lookup(scope, key, touch=True)
        if index is not None:
            cluster = self._clusters[index]
            cluster.size += 1
            return cluster.result()
        best = self._best_candidate(scope, key)
        if best is None:
            cluster = self._create(scope, key, tokens)
        else:
            cluster = self._clusters[best]
            cluster.size += 1
            self._generalise(cluster, tokens)
        self._remember(scope, key, cluster.index)
        return cluster.result()

    def match(
        self, message: str, service: str | None = None, category: str | None = None
    ) -> FingerprintResult | None:
        """The group a message would join, without learning from it; None for a new problem."""
        scope: Scope = (service or "", category or "")
        key = _generic(tokenize(message))
        index = self._lookup(scope, key, touch=False)
        if index is None:
            index = self._best_candidate(scope, key)
        return None if index is None else self._clusters[index].result()

    def groups(self) -> list[FingerprintResult]:
        """Every group so far, in the order they were created."""
        return [cluster.result() for cluster in self._clusters]

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
            scope: Scope = (saved.service, saved.category)
            cluster = _Cluster(
                index=len(restored._clusters),
                fingerprint=saved.fingerprint,
                scope=scope,
                first_key=tuple(saved.first_key),
                tokens=[Token(t.text, t.variable, t.space_before) for t in saved.tokens],
                size=saved.size,
            )
            restored._clusters.append(cluster)
            restored._fingerprints.add(cluster.fingerprint)
            restored._first[(scope, cluster.first_key)] = cluster.index
            restored._index(cluster)
        for remembered in state.remembered:
            if remembered.cluster >= len(restored._clusters):
                raise ValueError(f"remembered key points at missing group {remembered.cluster}")
            scope = restored._clusters[remembered.cluster].scope
            restored._remembered[(scope, tuple(remembered.key))] = remembered.cluster
        return restored

    # --- internals --------------------------------------------------------------------

    def _lookup(self, scope: Scope, key: Key, *, touch: bool) -> int | None:
        entry = (scope, key)
        index = self._remembered.get(entry)
        if index is not None:
            if touch:
                self._remembered.move_to_end(entry)
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

    def _candidates(self, scope: Scope, key: Key) -> set[int]:
        signature = _signature(key)
        found = set(self._by_signature.get((scope, _prefix(signature)), ()))
        if self.config.max_absorbed_words:
            found.update(self._by_deletion.get((scope, _prefix(signature)), ()))
            for shorter in _deletions(signature):
                found.update(self._by_signature.get((scope, shorter), ()))
        return found

    def _best_candidate(self, scope: Scope, key: Key) -> int | None:
        best: tuple[int, int] | None = None  # (shared constants, -index): ties go to the oldest
        for index in self._candidates(scope, key):
            template = self._clusters[index].key
            shared = align(
                template,
                key,
                max_span=self.config.max_span,
                max_words=self.config.max_absorbed_words,
            )
            if shared == NO_MATCH:
                continue
            if shared < self.config.min_shared_tokens and template != key:
                continue
            if best is None or (shared, -index) > best:
                best = (shared, -index)
        return None if best is None else -best[1]

    def _create(self, scope: Scope, key: Key, tokens: list[Token]) -> _Cluster:
        cluster = _Cluster(
            index=len(self._clusters),
            fingerprint=self._new_fingerprint(scope, key),
            scope=scope,
            first_key=key,
            tokens=list(tokens),
            size=1,
        )
        self._clusters.append(cluster)
        self._fingerprints.add(cluster.fingerprint)
        self._first[(scope, key)] = cluster.index
        self._index(cluster)
        return cluster

    def _new_fingerprint(self, scope: Scope, key: Key) -> str:
        # the first form is unique within a scope, so a clash is a hash collision (or a
        # form forgotten by the LRU and no longer alignable): salt until unique, deterministically
        base = f"{scope[0]}|{scope[1]}|{' '.join(key)}"
        salt = 0
        while True:
            text = base if salt == 0 else f"{base}|{salt}"
            digest = hashlib.sha256(text.encode()).hexdigest()[: self.config.fingerprint_hex_chars]
            if digest not in self._fingerprints:
                return digest
            salt += 1

    def _generalise(self, cluster: _Cluster, tokens: list[Token]) -> None:
        """Turn the template's differing positions into wildcards when the two line up."""
        template = cluster.key
        key = _generic(tokens)
        if not positional(template, key, max_words=self.config.max_absorbed_words):
            return
        changed = False
        merged: list[Token] = []
        for mine, theirs in zip(cluster.tokens, tokens, strict=True):
            if mine.text == theirs.text:
                merged.append(mine)
            else:
                merged.append(Token(WILDCARD, True, mine.space_before))
                changed = changed or not mine.variable
        if merged != cluster.tokens:
            if changed:
                self._unindex(cluster)
            cluster.retemplate(merged)
            if changed:
                self._index(cluster)

    def _index(self, cluster: _Cluster) -> None:
        signature = _signature(cluster.key)
        self._by_signature.setdefault((cluster.scope, _prefix(signature)), []).append(cluster.index)
        for shorter in _deletions(signature):
            self._by_deletion.setdefault((cluster.scope, shorter), []).append(cluster.index)

    def _unindex(self, cluster: _Cluster) -> None:
        signature = _signature(cluster.key)
        self._by_signature[(cluster.scope, _prefix(signature))].remove(cluster.index)
        for shorter in _deletions(signature):
            self._by_deletion[(cluster.scope, shorter)].remove(cluster.index)
