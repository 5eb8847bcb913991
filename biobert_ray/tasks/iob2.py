"""Entity-level precision, recall and F1 for IOB2 tags, equal to seqeval's strict IOB2 mode.

``seqeval.metrics.classification_report(gold, pred, mode="strict", scheme=IOB2, zero_division=0)`` gives
the same numbers; this module is a dependency-free, faster rewrite of it, also used to decode predicted tags
into entity mentions. Strict IOB2 (``seqeval.scheme.IOB2`` with ``Tokens.entities``) means:

- an entity starts only at ``B-X`` and extends over the ``I-X`` tags right after it (same type X);
- an ``I-X`` that does not continue a ``B-X``/``I-X`` run of type X starts nothing and is ignored:
  ``O I-X``, ``I-X`` at the start of a sentence and the ``I-Y`` of ``B-X I-Y`` belong to no entity;
- tags are read as seqeval reads them: the first character is the prefix (``B``, ``I`` or ``O``, anything
  else is a ``ValueError``) and the rest, stripped of ``-``, the type (``_`` when empty).

A prediction is correct when its sentence, type, start and end all equal those of a gold entity.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence

from biobert_ray.tasks.base import score_table


def spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities of one tagged sentence as ``(type, start, end)`` word indices, ``end`` exclusive.

    Raises ``ValueError`` on a tag whose prefix is not ``B``, ``I`` or ``O`` (for example ``E-X``).
    """
    found = []
    start = -1
    current = ""
    for i, tag in enumerate(tags):
        prefix, kind = _parse(tag)
        if prefix == "I" and start >= 0 and kind == current:
            continue
        if start >= 0:
            found.append((current, start, i))
            start = -1
        if prefix == "B":
            start, current = i, kind
    if start >= 0:
        found.append((current, start, len(tags)))
    return found


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """Micro-averaged and per-type entity scores of ``pred`` against ``gold`` (lists of tag sequences).

    Returns ``{"overall": row, "per_type": {type: row}}`` where a row holds precision, recall, f1 (0.0 on a
    zero division), support (gold entities), predicted and correct (entity counts); per_type lists every
    type found in gold or predictions, sorted. Raises ``ValueError`` when the sentence counts differ or a
    sentence has a different number of gold and predicted tags.
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    gold_entities: set[tuple[int, str, int, int]] = set()
    pred_entities: set[tuple[int, str, int, int]] = set()
    for n, (gold_tags, pred_tags) in enumerate(zip(gold, pred, strict=True)):
        if len(gold_tags) != len(pred_tags):
            raise ValueError(f"sentence {n}: {len(gold_tags)} gold tags but {len(pred_tags)} predicted")
        gold_entities.update((n, *span) for span in spans(gold_tags))
        pred_entities.update((n, *span) for span in spans(pred_tags))
    support = Counter(e[1] for e in gold_entities)
    predicted = Counter(e[1] for e in pred_entities)
    correct = Counter(e[1] for e in gold_entities & pred_entities)
    types = sorted(support.keys() | predicted.keys())
    return {
        "overall": _row(sum(support.values()), sum(predicted.values()), sum(correct.values())),
        "per_type": {t: _row(support[t], predicted[t], correct[t]) for t in types},
    }


def format_report(scores: dict) -> str:
    """``scores`` from :func:`entity_scores` as an aligned text table, one row per type, overall last."""
    lines = score_table("type", [*scores["per_type"].items(), ("overall", scores["overall"])])
    return "\n".join(lines)


@functools.lru_cache(maxsize=4096)
def _parse(tag: str) -> tuple[str, str]:
    """``(prefix, type)`` of one tag, read as seqeval's IOB2 ``Token`` reads it."""
    if not tag or tag[0] not in "BIO":
        raise ValueError(f"invalid IOB2 tag {tag!r}: it must start with B, I or O")
    return tag[0], tag[1:].strip("-") or "_"


def _row(support: int, predicted: int, correct: int) -> dict:
    """One score row, with seqeval's arithmetic (so that the floats are equal, not only close)."""
    precision = correct / predicted if predicted else 0.0
    recall = correct / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
        "predicted": predicted,
        "correct": correct,
    }
