"""Relation classification scores as BioBERT's ``re_eval`` and the ChemProt/DDI literature compute them.

- With a **negative class** (``0`` in GAD and EU-ADR, ``false`` in DDI and BLUE's ChemProt): precision,
  recall and F1 micro-averaged over the *positive* classes only. A prediction counts for the class it
  names; a negative prediction counts for none. For binary sets this is the precision, recall and F1
  of the positive class (BioBERT's ``re_eval``: ``sklearn`` with ``pos_label=1``).
- Without one (SciBERT's ChemProt keeps only positive relations): micro-F1 over all labels (equal to
  accuracy) and macro-F1 (the mean F1 of the classes with gold examples).

Every class also gets its own row (precision, recall, F1, support). Zero divisions give 0.0.

**Document level** (PubTator files such as BC5CDR-CID, whose relations hold between concepts of a
document): a document's predicted relations are the ``(type, concept, concept)`` triples of its
candidate pairs predicted positive; they are scored against the document's gold relations, micro over
all documents of the file, with gold mentions (BioCreative V's CID measure). Relations with no
candidate pair at all (no sentence window holds a mention of both concepts) count as missed; the
**recall ceiling** is the share of gold relations that some candidate stands for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from biobert_ray.tasks.base import score_table
from biobert_ray.tasks.relation.formats import DocumentPairs


def _row(support: int, predicted: int, correct: int) -> dict[str, Any]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": support, "predicted": predicted,
            "correct": correct}  # fmt: skip


def relation_scores(gold: Sequence[str], pred: Sequence[str], negative: str | None) -> dict[str, Any]:
    """Scores of predicted labels against gold labels (see the module docstring).

    Returns ``overall`` (micro over the positive classes, or over all without ``negative``),
    ``per_class``, ``macro_f1`` (classes with gold examples; positive ones only with a negative
    class) and ``primary`` (the overall F1, which picks the best checkpoint).
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predicted")
    support, predicted = Counter(gold), Counter(pred)
    correct = Counter(g for g, p in zip(gold, pred, strict=True) if g == p)
    classes = sorted(support.keys() | predicted.keys())
    per_class = {c: _row(support[c], predicted[c], correct[c]) for c in classes}
    counted = [c for c in classes if c != negative]
    overall = _row(*(sum(counter[c] for c in counted) for counter in (support, predicted, correct)))
    scored = [c for c in counted if support[c]]
    macro = sum(per_class[c]["f1"] for c in scored) / len(scored) if scored else 0.0
    name = "f1" if negative is not None else "micro_f1"
    return {
        "overall": overall, "per_class": per_class, "macro_f1": macro, "negative": negative,
        "primary": {"name": name, "value": overall["f1"]},
    }  # fmt: skip


def document_scores(documents: Sequence[DocumentPairs], positive: Sequence[bool]) -> dict[str, Any]:
    """Document-level precision, recall and F1 of the relations predicted by candidate pairs (one
    :class:`DocumentPairs` and one positive/negative prediction per candidate), with the recall
    ceiling of the candidates (module docstring)."""
    gold, reachable, predicted = set(), set(), set()
    for pairs, is_positive in zip(documents, positive, strict=True):
        gold |= {(pairs.document, *relation) for relation in pairs.gold}
        gold |= set(pairs.unreachable)
        stands_for = {(pairs.document, *relation) for relation in pairs.concepts}
        reachable |= stands_for
        if is_positive:
            predicted |= stands_for
    row = _row(len(gold), len(predicted), len(predicted & gold))
    ceiling = len(reachable & gold) / len(gold) if gold else 0.0
    return {**row, "recall_ceiling": ceiling, "documents": len({p.document for p in documents})}


def format_report(scores: dict[str, Any]) -> str:
    """One row per class, then the micro-averaged row and the macro F1, as an aligned table (and the
    document-level scores, when there are some)."""
    lines = score_table("class", [*scores["per_class"].items(), ("overall", scores["overall"])])
    negative = scores["negative"]
    scope = (
        f"positive classes (negative class {negative!r} excluded)" if negative is not None else "all classes"
    )
    lines.append(f"overall: micro-averaged over {scope}; macro F1 {scores['macro_f1']:.4f}")
    document = scores.get("document")
    if document:
        lines.append(
            f"document level ({document['documents']} documents with candidates, {document['support']} "
            f"gold relations): precision {document['precision']:.4f} recall {document['recall']:.4f} "
            f"F1 {document['f1']:.4f}; recall ceiling of the candidates {document['recall_ceiling']:.4f}"
        )
    return "\n".join(lines)
