"""Question answering scores as BioASQ (task b, phase B) and PubMedQA compute them.

**Matching.** An answer matches a gold answer when their normalised forms are equal. Normalising
(:func:`normalize`) applies Unicode NFKC, lower-cases, turns every run of whitespace into one space and
strips whitespace and punctuation from both ends (``"IL-6."`` -> ``"il-6"``); punctuation inside an
answer is kept, so ``"IL-6"`` and ``"IL 6"`` differ. A gold answer of a factoid or list question is an
*entity*: a list of synonyms, any of which matches it.

**Factoid** (each question: a ranked list of answers, the first five count):

- strict accuracy: the share of questions whose first answer matches a gold synonym;
- lenient accuracy: the share whose top five hold a match;
- MRR: the mean over questions of ``1 / rank`` of the first match in the top five (0 without one).

**List** (each question: the answers kept, in any order): per question, precision = answers matching a
gold entity / answers given, recall = gold entities matched / gold entities, F1 their harmonic mean;
each gold entity is matched at most once (a second synonym of an entity already matched counts as a
wrong answer). The scores are the means over questions; a question with no answer given scores 0.

**Yes/no** (BioASQ yes/no and PubMedQA yes/no/maybe): accuracy and macro-F1, the mean F1 of the
classes (``yes`` and ``no``; with ``maybe`` for PubMedQA), each class's F1 computed as for a binary
task with that class positive.
"""

from __future__ import annotations

import statistics
import string
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

#: Answers of a factoid question that count (BioASQ scores the first five).
FACTOID_TOP = 5
_STRIP = string.whitespace + string.punctuation


def normalize(answer: str) -> str:
    """``answer`` as matching compares it (module docstring)."""
    return " ".join(unicodedata.normalize("NFKC", answer).lower().split()).strip(_STRIP)


def _entities(gold: Sequence[Sequence[str]]) -> list[set[str]]:
    """Gold entities as sets of normalised synonyms (empty synonyms dropped)."""
    return [{normalize(s) for s in synonyms if normalize(s)} for synonyms in gold]


def _rank(answers: Sequence[str], gold: Sequence[Sequence[str]]) -> int | None:
    """1-based rank of the first of ``answers`` (top five) matching a gold synonym, or None."""
    synonyms = set().union(*_entities(gold)) if gold else set()
    for rank, answer in enumerate(answers[:FACTOID_TOP], 1):
        if normalize(answer) in synonyms:
            return rank
    return None


def factoid_scores(
    predicted: Mapping[str, Sequence[str]], gold: Mapping[str, Sequence[Sequence[str]]]
) -> dict[str, Any]:
    """Strict and lenient accuracy and MRR over the questions of ``gold`` (id -> entities);
    ``predicted``: id -> ranked answers (a question without predictions scores 0)."""
    if not gold:
        return {"strict_accuracy": 0.0, "lenient_accuracy": 0.0, "mrr": 0.0, "questions": 0}
    ranks = [_rank(predicted.get(qid, ()), entities) for qid, entities in gold.items()]
    return {
        "strict_accuracy": sum(r == 1 for r in ranks) / len(ranks),
        "lenient_accuracy": sum(r is not None for r in ranks) / len(ranks),
        "mrr": sum(1 / r for r in ranks if r is not None) / len(ranks),
        "questions": len(ranks),
    }


def list_question_scores(answers: Sequence[str], gold: Sequence[Sequence[str]]) -> dict[str, float]:
    """Precision, recall and F1 of one list question's ``answers`` against its gold entities."""
    entities = _entities(gold)
    matched: set[int] = set()
    correct = 0
    for answer in answers:
        key = normalize(answer)
        hit = next((i for i, e in enumerate(entities) if key in e and i not in matched), None)
        if hit is not None:
            matched.add(hit)
            correct += 1
    precision = correct / len(answers) if answers else 0.0
    recall = len(matched) / len(entities) if entities else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def list_scores(
    predicted: Mapping[str, Sequence[str]], gold: Mapping[str, Sequence[Sequence[str]]]
) -> dict[str, Any]:
    """Mean precision, recall and F1 over the list questions of ``gold`` (id -> entities);
    ``predicted``: id -> the answers kept."""
    rows = [list_question_scores(predicted.get(qid, ()), entities) for qid, entities in gold.items()]
    means = {k: statistics.fmean(r[k] for r in rows) if rows else 0.0 for k in ("precision", "recall", "f1")}
    return {**means, "questions": len(rows)}


def classification_scores(
    gold: Sequence[str], predicted: Sequence[str], classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 over ``classes`` and each class's precision, recall, F1 and support."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold answers but {len(predicted)} predicted")
    per_class = {}
    for c in classes:
        tp = sum(g == c and p == c for g, p in zip(gold, predicted, strict=True))
        n_pred, n_gold = sum(p == c for p in predicted), sum(g == c for g in gold)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[c] = {"precision": precision, "recall": recall, "f1": f1, "support": n_gold}
    accuracy = sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold) if gold else 0.0
    return {
        "accuracy": accuracy,
        "macro_f1": statistics.fmean(r["f1"] for r in per_class.values()) if per_class else 0.0,
        "per_class": per_class,
        "questions": len(gold),
    }
