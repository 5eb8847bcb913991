"""A question batch's answer spans, merged per question into rows of the ``answers`` table.

Each model's spans of a question, over every section of every article it read, are merged by
normalised text (:func:`biobert_ray.tasks.qa.metrics.normalize`) as evaluation merges a question's
contexts (:func:`biobert_ray.tasks.qa.task.rank_answers`): an answer's score is the highest probability
any section gives it, and its row points at that best occurrence (PMID, section, offsets, sentence;
ties go to the better-retrieved article). Answers are ranked by score: a factoid question keeps its
``--top-answers`` best, a list question those at or above the model's list threshold (at least its
first). A question without an answer gets one row with a null answer and a ``note``: yes/no questions
(not read by a span model), questions that retrieved no article, and questions whose articles gave no
span.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from biobert_ray.tasks.qa import metrics
from biobert_ray.tasks.qa.questions import Question
from biobert_ray.tasks.qa.task import list_size


def _best(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per normalised answer text: the highest score, then the best retrieval rank; best first."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = metrics.normalize(row["answer"])
        if not key:
            continue
        rank = row["retrieval_rank"] if row["retrieval_rank"] is not None else 0
        order = (-row["score"], rank, row["pmid"], row["section"], row["char_start"])
        if key not in best or order < best[key]["_order"]:
            best[key] = {**row, "_order": order}
    return sorted(best.values(), key=lambda r: r["_order"])


def answer_rows(
    questions: Sequence[Question],
    candidates: Sequence[dict[str, Any]],
    notes: dict[str, str],
    thresholds: dict[str, float],
    top_answers: int,
    run_id: str,
) -> list[dict[str, Any]]:
    """``schemas.ANSWERS`` rows of a batch from its ``schemas.QA_CANDIDATES`` rows (module docstring);
    ``thresholds`` maps each model to its list threshold, ``notes`` questions to why they read nothing."""
    spans: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in candidates:
        spans[(row["question_id"], row["model"])].append(row)
    rows = []
    for question in questions:
        base = {"question_id": question.id, "question": question.text, "question_type": question.kind,
                "run_id": run_id}  # fmt: skip
        found = False
        for model, threshold in thresholds.items():
            ranked = _best(spans.get((question.id, model), ()))
            keep = (
                list_size([r["score"] for r in ranked], threshold) if question.kind == "list" else top_answers
            )
            ranked = ranked[:keep]
            for rank, row in enumerate(ranked, 1):
                found = True
                evidence = (
                    "answer",
                    "score",
                    "pmid",
                    "section",
                    "char_start",
                    "char_end",
                    "evidence_sentence",
                )
                rows.append({**base, "rank": rank, **{k: row[k] for k in evidence}, "model": model})
        if not found:
            note = notes.get(question.id, "its articles gave no answer span")
            rows.append({**base, "note": note})
    return rows
