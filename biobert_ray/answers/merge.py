"""A question batch's answer spans and yes/no votes, merged per question into rows of the ``answers`` table.

**Factoid and list questions.** Each model's spans of a question, over every section of every article
it read, are merged by normalised text (:func:`biobert_ray.tasks.qa.metrics.normalize`) as evaluation
merges a question's contexts (:func:`biobert_ray.tasks.qa.task.rank_answers`): an answer's score is the
highest probability any section gives it, and its row points at that best occurrence (PMID, section,
offsets, sentence; ties go to the better-retrieved article). Answers are ranked by score: a factoid
question keeps its ``--top-answers`` best, a list question those at or above the model's list
threshold (at least its first).

**Yes/no questions** (with ``--yesno-model``; :mod:`biobert_ray.answers.votes`) get one row: each
class's probability is averaged over the question's articles (each article counting once, whatever its
retrieval rank), the answer is the class of the highest mean and ``score`` that mean;
``supporting_pmids`` are the articles whose own most probable class is the answer, most confident
first, and ``pmid`` the first of them (null when no article alone gives the answer).

A question without an answer gets one row with a null answer and a ``note``: yes/no questions without a
yes/no model, questions that retrieved no article, and questions whose articles gave no span or no text.
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


def _yesno(votes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The answer, score, supporting PMIDs and best PMID of one model's votes on a question."""
    by_article: dict[int, dict[str, float]] = defaultdict(dict)
    for vote in votes:
        by_article[vote["pmid"]][vote["answer"]] = vote["probability"]
    classes = sorted({label for probabilities in by_article.values() for label in probabilities})
    mean = {c: sum(p.get(c, 0.0) for p in by_article.values()) / len(by_article) for c in classes}
    answer = max(classes, key=lambda c: (mean[c], c))
    supporting = sorted(
        (pmid for pmid, p in by_article.items() if max(p, key=lambda c: (p[c], c)) == answer),
        key=lambda pmid: (-by_article[pmid][answer], pmid),
    )
    return {"answer": answer, "score": mean[answer], "supporting_pmids": supporting,
            "pmid": supporting[0] if supporting else None}  # fmt: skip


def answer_rows(
    questions: Sequence[Question],
    candidates: Sequence[dict[str, Any]],
    votes: Sequence[dict[str, Any]],
    notes: dict[str, str],
    thresholds: dict[str, float],
    top_answers: int,
    run_id: str,
) -> list[dict[str, Any]]:
    """``schemas.ANSWERS`` rows of a batch (module docstring) from its span rows (``candidates``,
    ``schemas.QA_CANDIDATES``) and yes/no rows (``votes``, ``schemas.YESNO_VOTES``); ``thresholds`` maps
    each span model to its list threshold, ``notes`` questions to why they read nothing."""
    spans: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in candidates:
        spans[(row["question_id"], row["model"])].append(row)
    yesno: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for vote in votes:
        yesno[vote["question_id"]][vote["model"]].append(vote)
    evidence = ("answer", "score", "pmid", "section", "char_start", "char_end", "evidence_sentence")
    rows = []
    for question in questions:
        base = {"question_id": question.id, "question": question.text, "question_type": question.kind,
                "run_id": run_id}  # fmt: skip
        found = []
        if question.kind == "yesno":
            for model, model_votes in sorted(yesno[question.id].items()):
                found.append({**base, "rank": 1, **_yesno(model_votes), "model": model})
        for model, threshold in thresholds.items():
            ranked = _best(spans.get((question.id, model), ()))
            keep = (
                list_size([r["score"] for r in ranked], threshold) if question.kind == "list" else top_answers
            )
            found += [
                {**base, "rank": rank, **{k: row[k] for k in evidence}, "model": model}
                for rank, row in enumerate(ranked[:keep], 1)
            ]
        if not found:
            empty = (
                "its articles have no text"
                if question.kind == "yesno"
                else "its articles gave no answer span"
            )
            found.append({**base, "note": notes.get(question.id, empty)})
        rows += found
    return rows
