"""Extractive question answering (BioASQ factoid and list questions) as start/end span prediction.

A unit is a :class:`~biobert_ray.tasks.qa.formats.QaExample`: one question with one context (a
snippet or an abstract). :mod:`.spans` turns it into windows (``--max-seq-length``, ``--stride``, which
is run_qa's ``--doc-stride``, and ``--max-query-length``) and reads each context's ``--n-best`` spans
(at most ``--max-answer-length`` sub-tokens) back from the start and end logits of
``AutoModelForQuestionAnswering``, mapped to character offsets of the context.

**A question's answers** are aggregated over all its contexts: the spans of every context are merged by
their normalised text (:func:`.metrics.normalize`), an answer's score being the highest probability
any context gives it (BioBERT's rule: sort all contexts' n-best spans by probability, keep the first of
each distinct answer); the answer keeps the context and offsets of that best occurrence. Answers are
ranked by score. A factoid question is scored on its first five; a list question keeps the answers
scoring at least the list threshold (always at least its first): ``--list-threshold``, else the one
chosen on the model's dev set (the threshold of the best dev list F1, saved with the model), else 0.5.

Scores (:mod:`.metrics`): strict and lenient accuracy and MRR of the factoid questions, mean precision,
recall and F1 of the list questions and the list F1 each threshold of a grid would give (the best one
is what a dev set chooses). The primary score is the factoid MRR, or the list F1 without factoid
questions. Gold answers come from the file (BioASQ golden files; a SQuAD file's answers: one entity
per distinct answer of a list question, all of them synonyms for a factoid one) or, for a file
without answers, from a BioASQ golden file (``--gold``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from transformers import AutoModelForQuestionAnswering

from biobert_ray import schemas, text
from biobert_ray.config import option
from biobert_ray.tasks.base import ModelInfo
from biobert_ray.tasks.qa import metrics, spans
from biobert_ray.tasks.qa.formats import FORMATS, QaExample, read_examples

#: List thresholds tried on a dev set.
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))
#: The list threshold when neither the options nor the model give one.
DEFAULT_LIST_THRESHOLD = 0.5


@dataclass(frozen=True, kw_only=True)
class QaOptions:
    """Options of the question answering task."""

    format: str = option(
        "auto", "format of the question files (auto: recognised from the file)",
        choices=("auto", *FORMATS), commands=("finetune", "evaluate"),
    )  # fmt: skip
    gold: str | None = option(
        None, "BioASQ golden file with the exact answers of a file that has none (e.g. a test batch)",
        commands=("finetune", "evaluate"),
    )  # fmt: skip
    max_query_length: int = option(
        64, "question sub-tokens kept at most", commands=("finetune", "evaluate", "annotate")
    )
    max_answer_length: int = option(
        30, "answer spans of at most this many sub-tokens", commands=("finetune", "evaluate", "annotate")
    )
    n_best: int = option(
        20, "spans considered per context (start and end candidates per window)",
        commands=("finetune", "evaluate", "annotate"),
    )  # fmt: skip
    questions: str | None = option(
        None, "questions to answer: JSON lines (id, question, type, pmids) or BioASQ JSON",
        commands=("annotate",),
    )  # fmt: skip
    index: str | None = option(
        None, "the articles' retrieval index (default: <articles>/_index/bm25, built by `biobert-ray index`)",
        commands=("annotate",),
    )  # fmt: skip
    yesno_model: str | None = option(
        None, "a `finetune yesno` model that answers the yes/no questions over their articles",
        commands=("annotate",),
    )  # fmt: skip
    top_docs: int = option(50, "articles retrieved per question (BM25)", commands=("annotate",))
    top_answers: int = option(
        5, "answers kept per factoid question (list questions: those above the list threshold)",
        commands=("annotate",),
    )  # fmt: skip
    questions_per_batch: int = option(
        256, "questions answered, written and marked complete together (the unit a rerun skips)",
        commands=("annotate",),
    )  # fmt: skip
    list_threshold: float | None = option(
        None,
        "keep list answers scoring at least this (default: the model's, chosen on its dev set; else 0.5)",
        commands=("evaluate", "annotate"),
    )  # fmt: skip


@dataclass(frozen=True)
class ContextAnswers:
    """The n-best spans of one context, and the list threshold of the model that found them."""

    spans: tuple[spans.Span, ...]
    list_threshold: float


@dataclass(frozen=True)
class Answer:
    """One distinct answer of a question: its text, score, and the example (context) and offsets of
    its best occurrence."""

    text: str
    score: float
    example: int
    char_start: int
    char_end: int


def rank_answers(
    examples: Sequence[QaExample], predictions: Sequence[ContextAnswers]
) -> dict[str, list[Answer]]:
    """Each question's distinct answers over all its contexts, best first (module docstring)."""
    best: dict[str, dict[str, Answer]] = defaultdict(dict)
    for index, (example, prediction) in enumerate(zip(examples, predictions, strict=True)):
        merged = best[example.question_id]
        for span in prediction.spans:
            key = metrics.normalize(span.text)
            if key and (key not in merged or span.probability > merged[key].score):
                merged[key] = Answer(span.text, span.probability, index, span.char_start, span.char_end)
    return {qid: sorted(found.values(), key=lambda a: (-a.score, a.text)) for qid, found in best.items()}


def list_size(scores: Sequence[float], threshold: float) -> int:
    """How many of a list question's ranked answers (``scores``, best first) it keeps: those scoring at
    least ``threshold``, and at least the first one."""
    return min(len(scores), max(1, sum(score >= threshold for score in scores)))


def evidence(sentences: Sequence[tuple[int, int]], start: int, end: int, length: int) -> tuple[int, int]:
    """The character span of the sentences that hold ``[start, end)`` (the sentence of its first
    character to that of its last; the whole text of ``length`` when no sentence does)."""
    first = next((a for a, b in sentences if a <= start < b), 0)
    last = next((b for a, b in sentences if a <= end - 1 < b), length)
    return first, max(last, end)


def gold_entities(group: Sequence[QaExample]) -> tuple[tuple[str, ...], ...]:
    """A question's gold entities: from its file or golden file, else from its examples' answers."""
    if group[0].gold is not None:
        return group[0].gold
    texts = list(dict.fromkeys(text for e in group for text, _ in e.answers))
    if not texts:
        raise ValueError(
            f"question {group[0].question_id} has no gold answer: score a file with answers, or pass --gold"
        )
    return tuple((t,) for t in texts) if group[0].kind == "list" else (tuple(texts),)


def question_scores(
    examples: Sequence[QaExample], ranked: dict[str, list[tuple[str, float]]], threshold: float
) -> dict[str, Any]:
    """Factoid and list scores of the questions of ``examples`` from each question's ranked ``(answer,
    score)`` list (module docstring): the list scores at ``threshold`` and at every threshold of
    :data:`THRESHOLD_GRID` with the best one; primary: the factoid MRR, else the list F1."""
    groups: dict[str, list[QaExample]] = defaultdict(list)
    for example in examples:
        groups[example.question_id].append(example)
    gold = {
        kind: {qid: gold_entities(g) for qid, g in groups.items() if g[0].kind == kind}
        for kind in ("factoid", "list")
    }
    scores: dict[str, Any] = {}
    if gold["factoid"]:
        texts = {qid: [text for text, _ in answers] for qid, answers in ranked.items()}
        scores["factoid"] = metrics.factoid_scores(texts, gold["factoid"])
    if gold["list"]:

        def kept(t: float) -> dict[str, list[str]]:
            return {
                qid: [text for text, _ in answers[: list_size([score for _, score in answers], t)]]
                for qid, answers in ranked.items()
            }

        search = {t: metrics.list_scores(kept(t), gold["list"])["f1"] for t in THRESHOLD_GRID}
        best = max(search, key=lambda t: (search[t], -abs(t - DEFAULT_LIST_THRESHOLD)))
        scores["list"] = {
            **metrics.list_scores(kept(threshold), gold["list"]),
            "threshold": threshold,
            "best_threshold": best,
            "f1_by_threshold": search,
        }
    if "factoid" in scores:
        scores["primary"] = {"name": "factoid mrr", "value": scores["factoid"]["mrr"]}
    elif "list" in scores:
        scores["primary"] = {"name": "list f1", "value": scores["list"]["f1"]}
    else:
        raise ValueError("no factoid or list questions to score")
    return scores


class QaTask:
    """Extractive question answering: answer spans of contexts, ranked per question."""

    name = "qa"
    model_class = AutoModelForQuestionAnswering
    Options = QaOptions
    unit_name = "question-section pairs"
    #: Corpus annotation answers questions (:mod:`biobert_ray.answers`): the parts of a run hold each
    #: section's answer spans, which the run merges per question into the ``answers`` table.
    answers_questions = True
    table = "answers"
    schema = schemas.QA_CANDIDATES
    sort_keys = ("question_id", "pmid", "section", "char_start", "model")
    article_columns = ("pmid", "title", "abstract")

    def __init__(self, options: QaOptions | None = None) -> None:
        self.options = options or QaOptions()

    def read(self, uri: str, model: dict[str, Any] | None = None) -> list[QaExample]:
        """The examples of a SQuAD-format or BioASQ file; a file without answers or gold takes its gold
        answers from ``--gold``."""
        examples = read_examples(uri, self.options.format)
        has_answers = any(e.answers or e.gold is not None for e in examples)
        if self.options.gold and not has_answers:
            examples = read_examples(uri, self.options.format, gold=self.options.gold)
        return examples

    def labels(self, examples: Sequence[QaExample]) -> list[str]:
        """The two outputs of a span head: start and end logits."""
        return ["start", "end"]

    def metadata(self, examples: Sequence[QaExample], labels: Sequence[str]) -> dict[str, Any]:
        """The question types trained on; ValueError naming a training example without an answer span."""
        missing = next((e for e in examples if not e.answers), None)
        if missing is not None:
            raise ValueError(f"training example {missing.id} has no answer span (a test file?)")
        return {"question_types": sorted({e.kind for e in examples})}

    def side_tables(self) -> dict[str, str]:
        """None: each question batch's work list comes with its work items (:mod:`biobert_ray.answers`)."""
        return {}

    def for_models(self, metadata: Sequence[dict[str, Any]]) -> QaTask:
        """This task, as it is for any span model."""
        return self

    def units(self, articles: pa.Table, side: dict[str, pa.Table]) -> list[QaExample]:
        """The (question, section) pairs of one row group: each question of the ``work`` side rows
        (``schemas.QA_WORK``) with the title and with the abstract of its article."""
        sections = {a["pmid"]: a for a in articles.select(["pmid", "title", "abstract"]).to_pylist()}
        units = []
        for row in side["work"].to_pylist():
            article = sections.get(row["pmid"])
            if article is None:
                continue
            qid, pmid = row["question_id"], row["pmid"]
            for section in ("title", "abstract"):
                if article[section]:
                    units.append(
                        QaExample(
                            id=f"{qid}/{pmid}/{section}", question_id=qid, question=row["question"],
                            context=article[section], kind=row["question_type"], pmid=pmid, section=section,
                            retrieval_rank=row["retrieval_rank"],
                        )
                    )  # fmt: skip
        return units

    def rows(self, units: Sequence[QaExample], predictions: Sequence[ContextAnswers]) -> list[dict[str, Any]]:
        """One ``schemas.QA_CANDIDATES`` row per n-best span of each section, with its sentence(s)."""
        rows = []
        for unit, prediction in zip(units, predictions, strict=True):
            sentences = text.split_sentences(unit.context) if prediction.spans else []
            for span in prediction.spans:
                start, end = evidence(sentences, span.char_start, span.char_end, len(unit.context))
                rows.append(
                    {
                        "question_id": unit.question_id, "pmid": unit.pmid, "section": unit.section,
                        "char_start": span.char_start, "char_end": span.char_end, "answer": span.text,
                        "score": span.probability, "evidence_sentence": unit.context[start:end],
                        "retrieval_rank": unit.retrieval_rank,
                    }
                )  # fmt: skip
        return rows

    def encode(
        self,
        units: Sequence[QaExample],
        tokenizer: Any,
        max_length: int,
        stride: int,
        label2id: dict[str, int] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """The windows of each question-context pair (:func:`.spans.encode_pair`); with ``label2id``
        (training), labelled with the pair's first answer ([CLS] for a pair without one, such as a dev
        example scored against gold answers only)."""
        result = []
        for unit in units:
            answer = unit.answers[0] if unit.answers else None
            limits = (max_length, stride, self.options.max_query_length)
            labelled = label2id is not None
            result.append(
                spans.encode_pair(unit.question, unit.context, tokenizer, *limits, answer, labelled)
            )
        return result

    def collate(
        self, windows: Sequence[dict[str, Any]], pad_id: int, labelled: bool
    ) -> dict[str, torch.Tensor]:
        """``input_ids``, ``attention_mask``, ``token_type_ids`` (BERT) and, when ``labelled``, the start and
        end positions."""
        batch = spans.pair_inputs(windows, pad_id)
        if labelled:
            for key in ("start_positions", "end_positions"):
                batch[key] = torch.tensor([w[key] for w in windows], dtype=torch.long)
        return batch

    def select(self, window: dict[str, Any], outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The start and end logits over the window's context sub-tokens."""
        first, n = window["context_start"], len(window["offsets"])
        return outputs["start_logits"][first : first + n].copy(), outputs["end_logits"][
            first : first + n
        ].copy()

    def _list_threshold(self, model: ModelInfo) -> float:
        """``--list-threshold``, else the model's dev choice, else :data:`DEFAULT_LIST_THRESHOLD`."""
        if self.options.list_threshold is not None:
            return self.options.list_threshold
        chosen = ((model.metadata.get("dev_scores") or {}).get("list") or {}).get("best_threshold")
        return chosen if chosen is not None else DEFAULT_LIST_THRESHOLD

    def decode(
        self,
        units: Sequence[QaExample],
        windows: Sequence[Sequence[dict[str, Any]]],
        selected: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]],
        model: ModelInfo,
    ) -> list[ContextAnswers]:
        """The n-best spans of each context (:func:`.spans.best_spans`)."""
        threshold = self._list_threshold(model)
        limits = (self.options.n_best, self.options.max_answer_length)
        return [
            ContextAnswers(tuple(spans.best_spans(unit.context, unit_windows, logits, *limits)), threshold)
            for unit, unit_windows, logits in zip(units, windows, selected, strict=True)
        ]

    def score(self, examples: Sequence[QaExample], predictions: Sequence[ContextAnswers]) -> dict[str, Any]:
        """Factoid and list scores of the questions of ``examples`` (:func:`question_scores`)."""
        ranked = {
            qid: [(a.text, a.score) for a in answers]
            for qid, answers in rank_answers(examples, predictions).items()
        }
        threshold = predictions[0].list_threshold if predictions else DEFAULT_LIST_THRESHOLD
        return question_scores(examples, ranked, threshold)

    def report(self, scores: dict[str, Any]) -> str:
        """Factoid accuracy and MRR, and list precision, recall and F1 at the threshold used."""
        lines = []
        if "factoid" in scores:
            f = scores["factoid"]
            lines.append(
                f"factoid ({f['questions']} questions): strict accuracy {f['strict_accuracy']:.4f}, "
                f"lenient accuracy {f['lenient_accuracy']:.4f}, MRR {f['mrr']:.4f}"
            )
        if "list" in scores:
            s = scores["list"]
            lines.append(
                f"list ({s['questions']} questions, threshold {s['threshold']:.2f}): precision "
                f"{s['precision']:.4f}, recall {s['recall']:.4f}, F1 {s['f1']:.4f} (best threshold here: "
                f"{s['best_threshold']:.2f}, F1 {s['f1_by_threshold'][s['best_threshold']]:.4f})"
            )
        return "\n".join(lines)
