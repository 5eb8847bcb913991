"""The Task interface shared by NER, relation extraction and question answering.

Training, evaluation and corpus annotation all go through one task object:

- ``read(uri, **options)``: a labelled benchmark file as a list of examples;
- ``labels(examples)``: the label list a new model head is created with;
- ``encode(units, tokenizer, max_length, stride)``: text units (examples, or sentences of a corpus)
  become model windows, each a dict with ``input_ids`` and the task's bookkeeping (word positions,
  ``labels`` when the units carry gold labels). A unit longer than one window becomes several
  overlapping windows, so nothing is ever truncated;
- ``select(window, logits)``: the part of one window's logits that decoding needs (run next to the
  model, so that only that part travels to the decode stage);
- ``decode(unit, windows, selected, id2label)``: the selected logits of a unit's windows become the
  unit's prediction (for NER, a tag and a probability per word, hence mentions);
- ``score(examples, predictions)``: the task's official metric.

A new task is one module implementing these methods plus an entry in ``biobert_ray.tasks.TASKS``.
This module also holds the window arithmetic the tasks share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Task(Protocol):
    """What a task provides to the shared training, evaluation and annotation code."""

    name: str
    #: The ``transformers`` auto class of the task's model head.
    model_class: Any

    def read(self, uri: str, **options: Any) -> list[Any]: ...

    def labels(self, examples: Sequence[Any]) -> list[str]: ...

    def encode(
        self,
        units: Sequence[Any],
        tokenizer: Any,
        max_length: int,
        stride: int,
        label2id: dict[str, int] | None,
    ) -> list[list[dict[str, Any]]]: ...

    def select(self, window: dict[str, Any], logits: Any) -> Any: ...

    def decode(
        self, unit: Any, windows: Sequence[dict[str, Any]], selected: Sequence[Any], id2label: dict
    ) -> Any: ...

    def score(self, examples: Sequence[Any], predictions: Sequence[Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class WindowSpan:
    """Words ``[first, last)`` of a unit packed into one window, and the words it owns.

    A word that falls into several overlapping windows is owned by exactly one: the window where it
    has the most context on its shorter side (the "max context" rule of BERT's SQuAD code). Decoding
    reads each word's prediction from its owning window.
    """

    first: int
    last: int
    owned: tuple[int, ...]


def plan_windows(lengths: Sequence[int], capacity: int, stride: int) -> list[WindowSpan]:
    """Split words with sub-token ``lengths`` into windows of at most ``capacity`` sub-tokens.

    Consecutive windows share at least ``stride`` sub-tokens of context where the words allow it; a
    single word longer than ``capacity`` gets a window of its own (its sub-tokens are cut to fit, its
    first sub-token, which carries its prediction, is kept). Every word is owned by exactly one window.
    """
    if capacity < 1:
        raise ValueError("window capacity must be at least one sub-token")
    stride = max(0, min(stride, capacity // 2))
    n = len(lengths)
    spans: list[tuple[int, int]] = []
    first = 0
    while first < n:
        last, used = first, 0
        while last < n and (used + lengths[last] <= capacity or last == first):
            used += min(lengths[last], capacity)
            last += 1
        spans.append((first, last))
        if last >= n:
            break
        # the next window starts at the earliest word that keeps >= stride sub-tokens of overlap
        start, overlap = last, 0
        while start - 1 > first and overlap + lengths[start - 1] <= stride:
            start -= 1
            overlap += lengths[start]
        first = start
    prefix = [0]
    for length in lengths:
        prefix.append(prefix[-1] + length)
    return [WindowSpan(a, b, _owned(spans, i, prefix)) for i, (a, b) in enumerate(spans)]


def _owned(spans: Sequence[tuple[int, int]], index: int, prefix: Sequence[int]) -> tuple[int, ...]:
    """Words of window ``index`` that no other window gives more context (``prefix``: cumulative lengths)."""
    first, last = spans[index]
    owned = []
    for word in range(first, last):
        best, best_score = index, -1.0
        for other, (a, b) in enumerate(spans):
            if a <= word < b:
                score = min(prefix[word] - prefix[a], prefix[b] - prefix[word + 1]) + 0.01 * (b - a)
                if score > best_score:
                    best, best_score = other, score
        if best == index:
            owned.append(word)
    return tuple(owned)
