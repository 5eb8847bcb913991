"""Relation extraction as sequence classification: one label per text whose two arguments are marked.

A unit is a :class:`~biobert_ray.tasks.relation.formats.RelationExample` (training, evaluation) or a
:class:`Candidate` (annotation): a sentence, or with ``--max-sentence-distance`` the sentences from
one argument to the other, in which the two arguments are marked (:mod:`.marking`: BioBERT's
anonymisation ``@GENE$``, which GAD and EU-ADR require; SciBERT's ``<< >>``/``[[ ]]``; or typed
entity markers ``<E1:Chemical> ... </E1:Chemical>`` for sets with offsets, added to the tokenizer as
tokens of their own). The model (``AutoModelForSequenceClassification``) reads ``[CLS] text [SEP]``
and classifies the ``[CLS]`` representation. A model's metadata records its ``marking``, argument
types, marker tokens and sentence distance, so that annotation makes and marks its candidates as in
training.

A text longer than ``--max-seq-length`` sub-tokens becomes one window centred on its two arguments
(from the first mark to the last, with the context on both sides shared out), rather than its first
sub-tokens, which may not hold them; when the arguments themselves are further apart than a window,
the window starts at the first argument. Decoding takes the softmax of the logits: the label is the
most probable class and ``score`` its probability. Scores: :mod:`.metrics` (and document-level
scores for PubTator files, whose relations hold between concepts of a document).

**Annotation** reads each ``articles`` shard with the ``entities`` shard of the same name
(``--entities``). Its units are the candidate pairs of :mod:`.candidates` among each section's
mentions whose entity types are the model's argument types (from its metadata, matched to entity
types case-insensitively, or ``--arg-types MODEL=ENTITIES``), marked as the model was trained. The
pairs a sentence's ``--max-pairs-per-sentence`` cap leaves out are counted in the run summary
(``pairs_skipped_by_cap``). An ``entities`` row whose text does not match its article's text at its
offsets, or whose article is not in the shard, is rejected (``<out>/_rejected``) and the rest
completes. Rows of the ``relations`` table (``schemas.RELATIONS``) are the candidates predicted as a
relation (not the negative class) with a score at or above ``--min-score``; ``--keep-negative``
keeps every candidate.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from transformers import AutoModelForSequenceClassification

from biobert_ray import schemas, text
from biobert_ray.config import option
from biobert_ray.tasks.base import ModelInfo, Units, attention_mask, pad, softmax
from biobert_ray.tasks.relation import candidates, marking, metrics
from biobert_ray.tasks.relation.formats import FORMATS, MARKING, ReadOptions, RelationExample, read_relations


@dataclass(frozen=True, kw_only=True)
class RelationOptions:
    """Options of the relation extraction task."""

    format: str = option(
        "auto", "format of the labelled files (auto: recognised from the file)",
        choices=("auto", *FORMATS), commands=("finetune", "evaluate"),
    )  # fmt: skip
    marking: str = option(
        "auto", "how files with offsets (pubtator, ddi-xml) mark the arguments (auto: typed entity markers)",
        choices=("auto", "typed", "anonymized"), commands=("finetune",),
    )  # fmt: skip
    max_sentence_distance: int | None = option(
        None, "pair mentions at most this many sentences apart (0: the same sentence; default: the "
        "model's, 0 for a new one)", commands=("finetune", "evaluate", "annotate"),
    )  # fmt: skip
    negative_label: str = option(
        "auto",
        "the label meaning 'no relation', left out of micro-averaged scores (auto: 0 for 0/1 labels, "
        "false where present, none otherwise; 'none': every label is a relation)",
        commands=("finetune",),
    )
    entities: str | None = option(
        None, "the entities table of the articles (annotate ner's output), read shard by shard",
        commands=("annotate",),
    )  # fmt: skip
    arg_types: tuple[str, ...] = option(
        (), "MODEL_TYPE=ENTITY_TYPE pairs mapping the model's argument types to the entities table's "
        "(default: matched case-insensitively, GENE=Gene)", commands=("annotate",),
    )  # fmt: skip
    max_pairs_per_sentence: int = option(
        200,
        "candidate pairs whose first argument lies in one sentence, at most (the first in text order; "
        "the rest are counted as skipped)",
        commands=("finetune", "evaluate", "annotate"),
    )
    min_score: float = option(
        0.5, "keep relations predicted with at least this probability", commands=("annotate",)
    )
    keep_negative: bool = option(
        False, "also keep candidates predicted as no relation", commands=("annotate",)
    )


@dataclass(frozen=True)
class Candidate:
    """Two mentions of one section, marked for the model: ``text`` is the marked text (``marking``);
    each argument is ``(text, entity type, char_start, char_end)`` with offsets into its section, and
    ``sentences`` the sentence indices of the first and the second."""

    pmid: int
    section: str
    sentences: tuple[int, int]
    text: str
    marking: str
    arg1: tuple[str, str, int, int]
    arg2: tuple[str, str, int, int]


@dataclass(frozen=True)
class Prediction:
    """The predicted label of one text, its probability, and the model's negative class (which
    scoring leaves out of the micro average; None when every label is a relation)."""

    label: str
    score: float
    negative: str | None


def negative_label(labels: Sequence[str], choice: str) -> str | None:
    """The negative class of a label set: ``choice``, or for ``auto`` ``0`` (binary), ``false`` or None."""
    if choice == "none":
        return None
    if choice != "auto":
        if choice not in labels:
            raise ValueError(f"--negative-label {choice!r} is not one of the labels {list(labels)}")
        return choice
    if set(labels) == {"0", "1"}:
        return "0"
    return "false" if "false" in labels else None


def _mismatch(row: dict[str, Any], bodies: dict[tuple[int, str], str]) -> str | None:
    """Why an ``entities`` row cannot be used with the articles' texts ``bodies``, or None."""
    body = bodies.get((row["pmid"], row["section"]))
    if body is None:
        return f"no article {row['pmid']} (section {row['section']!r}) in the articles shard"
    start, end = row["char_start"], row["char_end"]
    if body[start:end] != row["text"]:
        return f"text {row['text']!r} does not match the article's {body[start:end]!r} at {start}-{end}"
    return None


class RelationTask:
    """Sequence classification of texts with two marked arguments (see the module docstring)."""

    name = "re"
    model_class = AutoModelForSequenceClassification
    Options = RelationOptions

    table = "relations"
    schema = schemas.RELATIONS
    sort_keys = ("pmid", "section", "sentence_index", "arg1_char_start", "arg2_char_start", "model")
    unit_name = "candidate pairs"
    article_columns = ("pmid", "title", "abstract")

    def __init__(
        self, options: RelationOptions | None = None, style: str = "anonymized", types: dict | None = None
    ) -> None:
        self.options = options or RelationOptions()
        #: How annotation marks candidates, and the model's argument types -> entity types.
        self.style, self.types = style, types or {}

    def _read_options(self, model: dict[str, Any] | None) -> ReadOptions:
        """How files with offsets become examples: as the model was trained, unless the options say."""
        model = model or {}
        style = self.options.marking if self.options.marking != "auto" else model.get("marking", "typed")
        distance = self.options.max_sentence_distance
        if distance is None:
            distance = model.get("max_sentence_distance", 0)
        return ReadOptions(style, distance, self.options.max_pairs_per_sentence)

    def read(self, uri: str, model: dict[str, Any] | None = None) -> list[RelationExample]:
        """The examples of a relation file (``--format``, or the format recognised from the file).

        With a ``model``, the file must use the marking the model was trained with.
        """
        file_format, examples = read_relations(uri, self.options.format, self._read_options(model))
        trained = (model or {}).get("marking")
        used = examples[0].marking if examples else MARKING[file_format]
        if trained is not None and trained != used:
            raise ValueError(
                f"{uri} marks its arguments as {used!r} ({file_format}) but the model was "
                f"trained on {trained!r} marking"
            )
        return examples

    def labels(self, examples: Sequence[RelationExample]) -> list[str]:
        """The distinct labels of ``examples``, sorted."""
        return sorted({e.label for e in examples})

    def metadata(self, examples: Sequence[RelationExample], labels: Sequence[str]) -> dict[str, Any]:
        """The marking of the training examples, their argument types, the marker tokens the tokenizer
        gains (``added_tokens``), the sentence distance and the negative class, which scoring leaves out."""
        styles = sorted({e.marking for e in examples})
        if len(styles) != 1:
            raise ValueError(f"training examples must share one marking, found {styles}")
        style = styles[0]
        types = sorted({t for e in examples for t in e.types}) if style != "positional" else []
        return {
            "marking": style,
            "negative_label": negative_label(labels, self.options.negative_label),
            "argument_types": types,
            "added_tokens": marking.marker_tokens(types, style),
            "max_sentence_distance": self._read_options(None).max_sentence_distance,
        }

    def side_tables(self) -> dict[str, str]:
        """The ``entities`` table (``--entities``), whose mentions make the candidate pairs."""
        if not self.options.entities:
            raise ValueError("annotate re needs --entities: the entities table of the articles")
        return {"entities": self.options.entities}

    def for_models(self, metadata: Sequence[dict[str, Any]]) -> RelationTask:
        """This task making and marking candidates as the models were trained (all must agree), with the
        models' argument types mapped to entity types (``--arg-types``, else case-insensitively)."""
        keys = ("marking", "argument_types", "max_sentence_distance")
        settings = {json.dumps([m.get(k) for k in keys]) for m in metadata}
        if len(settings) != 1:
            raise ValueError(
                f"relation models of one run must share marking, argument types and sentence distance: "
                f"{sorted(settings)}"
            )
        style, model_types = metadata[0].get("marking"), metadata[0].get("argument_types") or []
        mapping = dict(pair.split("=", 1) for pair in self.options.arg_types)
        if style == "positional" and len(mapping) != 2:
            raise ValueError(
                "a model trained on positional marks needs --arg-types A=EntityTypeA B=EntityTypeB"
            )
        types = {t: mapping.get(t, t) for t in model_types} if style != "positional" else mapping
        distance = self._read_options(metadata[0]).max_sentence_distance
        return RelationTask(replace(self.options, max_sentence_distance=distance), style, types)

    def units(self, articles: pa.Table, side: dict[str, pa.Table]) -> Units:
        """Candidate pairs of the articles' sections from their ``entities`` rows (module docstring);
        rows that do not match their article are rejected."""
        wanted = {entity.lower(): model for model, entity in self.types.items()}
        bodies = {
            (a["pmid"], section): a[section] or ""
            for a in articles.select(["pmid", "title", "abstract"]).to_pylist()
            for section in ("title", "abstract")
        }
        mentions: dict[tuple, list[dict]] = defaultdict(list)
        rejected = []
        for row in side["entities"].to_pylist():
            if row["entity_type"].lower() not in wanted:
                continue
            reason = _mismatch(row, bodies)
            if reason:
                rejected.append({"table": "entities", "pmid": row["pmid"], "reason": reason, "record": row})
            else:
                mentions[(row["pmid"], row["section"])].append(row)
        units = Units(counts={"pairs_skipped_by_cap": 0}, rejected=rejected)
        for (pmid, section), body in bodies.items():
            found = mentions.get((pmid, section))
            if found:
                units.extend(self._candidates(pmid, section, body, found, wanted, units.counts))
        return units

    def _candidates(
        self, pmid: int, section: str, body: str, found: list[dict], wanted: dict, counts: dict
    ) -> list[Candidate]:
        """The marked candidate pairs of one section among its ``entities`` rows ``found``; the pairs the
        cap leaves out are added to ``counts``."""
        sentences = text.split_sentences(body)
        mentions = [
            candidates.Mention(
                row["text"], row["entity_type"], row["char_start"], row["char_end"], row["sentence_index"]
            )
            for row in found
        ]
        model_type = {m: wanted[m.entity_type.lower()] for m in mentions}
        two_types = len(set(self.types)) == 2
        pairs, skipped = candidates.pairs(
            mentions,
            lambda a, b: not two_types or model_type[a] != model_type[b],
            self._read_options(None).max_sentence_distance,
            self.options.max_pairs_per_sentence,
        )
        counts["pairs_skipped_by_cap"] += skipped
        result = []
        for a, b in pairs:
            types = (model_type[a], model_type[b])
            marked = candidates.marked_text(body, sentences, a, b, types, self.style)
            args = [(m.text, m.entity_type, m.start, m.end) for m in (a, b)]
            result.append(Candidate(pmid, section, (a.sentence, b.sentence), marked, self.style, *args))
        return result

    def encode(
        self,
        units: Sequence[RelationExample],
        tokenizer: Any,
        max_length: int,
        stride: int,
        label2id: dict[str, int] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """One window per unit: ``input_ids`` (centred on the arguments when too long) and, with
        ``label2id``, its ``label``."""
        if not units:
            return []
        encoded = tokenizer([u.text for u in units], add_special_tokens=False, return_offsets_mapping=True)
        capacity = max_length - 2
        result = []
        for unit, ids, offsets in zip(units, encoded["input_ids"], encoded["offset_mapping"], strict=True):
            first, last = self._window(marking.argument_spans(unit.text, unit.marking), offsets, capacity)
            window = {"input_ids": [tokenizer.cls_token_id, *ids[first:last], tokenizer.sep_token_id]}
            if label2id is not None:
                window["label"] = label2id[unit.label]
            result.append([window])
        return result

    @staticmethod
    def _window(
        spans: Sequence[tuple[int, int]], offsets: Sequence[tuple[int, int]], capacity: int
    ) -> tuple[int, int]:
        """Sub-tokens ``[first, last)`` of at most ``capacity``, centred on the marked arguments ``spans``
        (character spans, marks included; ``offsets``: each sub-token's character span)."""
        n = len(offsets)
        if n <= capacity:
            return 0, n
        if not spans:
            return 0, capacity
        start, end = spans[0][0], spans[-1][1]
        a = next((i for i, (_, e) in enumerate(offsets) if e > start), 0)
        b = next((i for i in range(n - 1, -1, -1) if offsets[i][0] < end), n - 1) + 1
        if b - a >= capacity:
            return a, a + capacity
        first = max(0, min(a - (capacity - (b - a)) // 2, n - capacity))
        return first, first + capacity

    def collate(
        self, windows: Sequence[dict[str, Any]], pad_id: int, labelled: bool
    ) -> dict[str, torch.Tensor]:
        """``input_ids``, ``attention_mask`` and, when ``labelled``, one label per window."""
        batch = {"input_ids": pad(windows, "input_ids", pad_id), "attention_mask": attention_mask(windows)}
        if labelled:
            batch["labels"] = torch.tensor([w["label"] for w in windows], dtype=torch.long)
        return batch

    def select(self, window: dict[str, Any], outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The window's class logits."""
        return outputs["logits"]

    def decode(
        self,
        units: Sequence[RelationExample],
        windows: Sequence[Sequence[dict[str, Any]]],
        selected: Sequence[Sequence[np.ndarray]],
        model: ModelInfo,
    ) -> list[Prediction]:
        """The most probable label of each sentence, with its softmax probability.

        The negative class is the model's (its metadata), or, for a model in training, the one
        ``--negative-label`` picks among its labels.
        """
        if "negative_label" in model.metadata:
            negative = model.metadata["negative_label"]
        else:
            negative = negative_label(sorted(model.id2label.values()), self.options.negative_label)
        predictions = []
        for (logits,) in selected:
            probs = softmax(logits)
            best = int(probs.argmax())
            predictions.append(Prediction(model.id2label[best], float(probs[best]), negative))
        return predictions

    def rows(self, units: Sequence[Candidate], predictions: Sequence[Prediction]) -> list[dict[str, Any]]:
        """``relations`` rows of the candidates predicted as a relation at ``--min-score`` or above
        (every candidate with ``--keep-negative``)."""
        rows = []
        for unit, prediction in zip(units, predictions, strict=True):
            positive = prediction.label != prediction.negative and prediction.score >= self.options.min_score
            if not (positive or self.options.keep_negative):
                continue
            row = {"pmid": unit.pmid, "section": unit.section}
            row |= {"sentence_index": unit.sentences[0], "last_sentence_index": unit.sentences[1]}
            for n, (arg_text, arg_type, start, end) in ((1, unit.arg1), (2, unit.arg2)):
                row |= {f"arg{n}_text": arg_text, f"arg{n}_type": arg_type}
                row |= {f"arg{n}_char_start": start, f"arg{n}_char_end": end}
            rows.append({**row, "relation": prediction.label, "score": prediction.score})
        return rows

    def score(self, examples: Sequence[RelationExample], predictions: Sequence[Prediction]) -> dict[str, Any]:
        """:func:`metrics.relation_scores` without the model's negative class; for examples of a file
        with document-level relations, also :func:`metrics.document_scores` (then the primary score)."""
        negative = predictions[0].negative if predictions else None
        gold, predicted = [e.label for e in examples], [p.label for p in predictions]
        scores = metrics.relation_scores(gold, predicted, negative)
        if examples and examples[0].document is not None:
            positive = [p.label != p.negative for p in predictions]
            scores["document"] = metrics.document_scores([e.document for e in examples], positive)
            scores["primary"] = {"name": "document f1", "value": scores["document"]["f1"]}
        return scores

    def report(self, scores: dict[str, Any]) -> str:
        """Precision, recall, F1 and support per class, the micro average and the macro F1, and the
        document-level scores with the recall ceiling of the candidates where there are some."""
        return metrics.format_report(scores)
