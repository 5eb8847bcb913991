"""Relation extraction as sequence classification: one label per sentence whose two arguments are marked.

A unit is a :class:`~biobert_ray.tasks.relation_formats.RelationExample`: a sentence in which the two
arguments are marked, by BioBERT's anonymisation (``@GENE$ ... @DISEASE$``, which GAD and EU-ADR
require) or by positional brackets (``<< first >> ... [[ second ]]``, SciBERT's ChemProt). The model
(``AutoModelForSequenceClassification``) reads ``[CLS] sentence [SEP]`` and classifies the
``[CLS]`` representation. The marking a model was trained with is saved in its metadata
(``marking``), so that annotation marks its candidates the same way.

A sentence longer than ``--max-seq-length`` sub-tokens becomes one window centred on its two
arguments (from the first mark to the last, with the context on both sides shared out), rather than
its first sub-tokens, which may not hold them; when the arguments themselves are further apart than
a window, the window starts at the first argument. Decoding takes the softmax of the logits: the
label is the most probable class and ``score`` its probability. Scores: :mod:`relation_metrics`.

**Annotation** reads each ``articles`` shard with the ``entities`` shard of the same name
(``--entities``). Its units are candidate pairs: two mentions in one sentence (the sentences of
:func:`biobert_ray.text.split_sentences`, as NER annotation numbered them) whose entity types are the
model's two argument types (from its training file's ``@TYPE$`` marks, matched to entity types
case-insensitively, or ``--arg-types MODEL=ENTITIES``) and whose spans do not overlap. Each
candidate is marked as the model was trained: anonymised (both mentions replaced by ``@TYPE$``) or
with positional brackets (``<< first >>``, ``[[ second ]]``). A sentence with more than
``--max-pairs-per-sentence`` candidates keeps its first ones in text order. Rows of the
``relations`` table (``schemas.RELATIONS``) are the candidates predicted as a relation (not the
negative class) with a score at or above ``--min-score``; ``--keep-negative`` keeps every candidate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from transformers import AutoModelForSequenceClassification

from biobert_ray import schemas, text
from biobert_ray.config import option
from biobert_ray.tasks import relation_metrics
from biobert_ray.tasks.base import ModelInfo, attention_mask, pad
from biobert_ray.tasks.relation_formats import (
    ANONYMIZED_RE,
    FORMATS,
    MARKING,
    RelationExample,
    argument_spans,
    read_relations,
)


@dataclass(frozen=True, kw_only=True)
class RelationOptions:
    """Options of the relation extraction task."""

    format: str = option(
        "auto", "format of the labelled files (auto: recognised from the file)",
        choices=("auto", *FORMATS), commands=("finetune", "evaluate"),
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
        "candidate pairs classified per sentence at most (the first in text order)",
        commands=("annotate",),
    )
    min_score: float = option(
        0.5, "keep relations predicted with at least this probability", commands=("annotate",)
    )
    keep_negative: bool = option(
        False, "also keep candidates predicted as no relation", commands=("annotate",)
    )


@dataclass(frozen=True)
class Candidate:
    """Two mentions of one sentence, marked for the model: ``text`` is the marked sentence; each
    argument is ``(text, entity type, char_start, char_end)`` with offsets into its section."""

    pmid: int
    section: str
    sentence_index: int
    text: str
    arg1: tuple[str, str, int, int]
    arg2: tuple[str, str, int, int]


@dataclass(frozen=True)
class Prediction:
    """The predicted label of one sentence, its probability, and the model's negative class (which
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


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


class RelationTask:
    """Sequence classification of sentences with two marked arguments (see the module docstring)."""

    name = "re"
    model_class = AutoModelForSequenceClassification
    Options = RelationOptions

    table = "relations"
    schema = schemas.RELATIONS
    sort_keys = ("pmid", "section", "sentence_index", "arg1_char_start", "arg2_char_start", "model")
    unit_name = "candidate pairs"
    article_columns = ("pmid", "title", "abstract")

    def __init__(
        self, options: RelationOptions | None = None, marking: str = "anonymized", types: dict | None = None
    ) -> None:
        self.options = options or RelationOptions()
        #: How annotation marks candidates, and the model's argument types -> entity types.
        self.marking, self.types = marking, types or {}

    def read(self, uri: str, model: dict[str, Any] | None = None) -> list[RelationExample]:
        """The examples of a relation file (``--format``, or the format recognised from the file).

        With a ``model``, the file must use the marking the model was trained with.
        """
        file_format, examples = read_relations(uri, self.options.format)
        trained = (model or {}).get("marking")
        if trained is not None and trained != MARKING[file_format]:
            raise ValueError(
                f"{uri} marks its arguments as {MARKING[file_format]!r} ({file_format}) but the model was "
                f"trained on {trained!r} marking"
            )
        return examples

    def labels(self, examples: Sequence[RelationExample]) -> list[str]:
        """The distinct labels of ``examples``, sorted."""
        return sorted({e.label for e in examples})

    def metadata(self, examples: Sequence[RelationExample], labels: Sequence[str]) -> dict[str, Any]:
        """The marking of the training file and the negative class, which scoring leaves out."""
        file_format = self.options.format
        if file_format == "auto":
            file_format = "chemprot-jsonl" if examples and "<<" in examples[0].text else "biobert-tsv"
        marks = sorted({m[1:-1] for e in examples for m in ANONYMIZED_RE.findall(e.text)})
        return {
            "marking": MARKING[file_format],
            "negative_label": negative_label(labels, self.options.negative_label),
            "argument_types": marks if MARKING[file_format] == "anonymized" else [],
        }

    def side_tables(self) -> dict[str, str]:
        """The ``entities`` table (``--entities``), whose mentions make the candidate pairs."""
        if not self.options.entities:
            raise ValueError("annotate re needs --entities: the entities table of the articles")
        return {"entities": self.options.entities}

    def for_models(self, metadata: Sequence[dict[str, Any]]) -> RelationTask:
        """This task marking candidates as the models were trained (all must agree), with the models'
        argument types mapped to entity types (``--arg-types``, else case-insensitively)."""
        settings = {(m.get("marking"), tuple(m.get("argument_types", []))) for m in metadata}
        if len(settings) != 1:
            raise ValueError(f"relation models of one run must share marking and argument types: {settings}")
        ((marking, model_types),) = settings
        mapping = dict(pair.split("=", 1) for pair in self.options.arg_types)
        if marking == "positional" and len(mapping) != 2:
            raise ValueError(
                "a model trained on positional marks needs --arg-types A=EntityTypeA B=EntityTypeB"
            )
        types = {t: mapping.get(t, t) for t in model_types} if marking == "anonymized" else mapping
        return RelationTask(self.options, marking, types)

    def units(self, articles: pa.Table, side: dict[str, pa.Table]) -> list[Candidate]:
        """Candidate pairs of the articles' sentences from their ``entities`` rows (module docstring)."""
        wanted = {entity.lower(): model for model, entity in self.types.items()}
        mentions: dict[tuple, list[dict]] = defaultdict(list)
        for row in side["entities"].to_pylist():
            if row["entity_type"].lower() in wanted:
                mentions[(row["pmid"], row["section"], row["sentence_index"])].append(row)
        units = []
        for article in articles.select(["pmid", "title", "abstract"]).to_pylist():
            for section in ("title", "abstract"):
                body = article[section] or ""
                for index, (start, end) in enumerate(text.split_sentences(body)):
                    found = mentions.get((article["pmid"], section, index))
                    if found:
                        where = (article["pmid"], section, index, start)
                        units.extend(self._candidates(where, body[start:end], found, wanted))
        return units

    def _candidates(self, where: tuple, sentence: str, found: list[dict], wanted: dict) -> list[Candidate]:
        """The candidate pairs of one sentence among its mentions ``found`` (``where``: pmid, section,
        sentence index and the sentence's offset in its section)."""
        pmid, section, index, offset = where
        found = sorted(found, key=lambda m: (m["char_start"], m["char_end"]))
        pairs = []
        for i, a in enumerate(found):
            for b in found[i + 1 :]:
                types = {wanted[a["entity_type"].lower()], wanted[b["entity_type"].lower()]}
                if b["char_start"] < a["char_end"] or (len(self.types) == 2 and len(types) != 2):
                    continue  # overlapping mentions, or not the model's two argument types
                pairs.append((a, b))
        result = []
        for a, b in pairs[: self.options.max_pairs_per_sentence]:
            marked = self._mark(sentence, offset, a, b, wanted)
            args = [(m["text"], m["entity_type"], m["char_start"], m["char_end"]) for m in (a, b)]
            result.append(Candidate(pmid, section, index, marked, args[0], args[1]))
        return result

    def _mark(self, sentence: str, offset: int, a: dict, b: dict, wanted: dict) -> str:
        """``sentence`` with mentions ``a`` (first) and ``b`` marked as the model was trained."""
        (a0, a1), (b0, b1) = [(m["char_start"] - offset, m["char_end"] - offset) for m in (a, b)]
        if self.marking == "anonymized":
            first = f"@{wanted[a['entity_type'].lower()]}$"
            second = f"@{wanted[b['entity_type'].lower()]}$"
        else:
            first, second = f"<< {sentence[a0:a1]} >>", f"[[ {sentence[b0:b1]} ]]"
        return f"{sentence[:a0]}{first}{sentence[a1:b0]}{second}{sentence[b1:]}"

    def encode(
        self,
        units: Sequence[RelationExample],
        tokenizer: Any,
        max_length: int,
        stride: int,
        label2id: dict[str, int] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """One window per sentence: ``input_ids`` (centred on the arguments when too long) and, with
        ``label2id``, its ``label``."""
        if not units:
            return []
        encoded = tokenizer([u.text for u in units], add_special_tokens=False, return_offsets_mapping=True)
        capacity = max_length - 2
        result = []
        for unit, ids, offsets in zip(units, encoded["input_ids"], encoded["offset_mapping"], strict=True):
            first, last = self._window(unit.text, offsets, capacity)
            window = {"input_ids": [tokenizer.cls_token_id, *ids[first:last], tokenizer.sep_token_id]}
            if label2id is not None:
                window["label"] = label2id[unit.label]
            result.append([window])
        return result

    @staticmethod
    def _window(text: str, offsets: Sequence[tuple[int, int]], capacity: int) -> tuple[int, int]:
        """Sub-tokens ``[first, last)`` of at most ``capacity``, centred on the marked arguments."""
        n = len(offsets)
        if n <= capacity:
            return 0, n
        marking = "positional" if "<<" in text and "[[" in text else "anonymized"
        spans = argument_spans(text, marking)
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
            probs = _softmax(np.asarray(logits, dtype=np.float64))
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
            row = {"pmid": unit.pmid, "section": unit.section, "sentence_index": unit.sentence_index}
            for n, (arg_text, arg_type, start, end) in ((1, unit.arg1), (2, unit.arg2)):
                row |= {f"arg{n}_text": arg_text, f"arg{n}_type": arg_type}
                row |= {f"arg{n}_char_start": start, f"arg{n}_char_end": end}
            rows.append({**row, "relation": prediction.label, "score": prediction.score})
        return rows

    def score(self, examples: Sequence[RelationExample], predictions: Sequence[Prediction]) -> dict[str, Any]:
        """:func:`relation_metrics.relation_scores` without the model's negative class."""
        negative = predictions[0].negative if predictions else None
        return relation_metrics.relation_scores(
            [e.label for e in examples], [p.label for p in predictions], negative
        )

    def report(self, scores: dict[str, Any]) -> str:
        """Precision, recall, F1 and support per class, the micro average and the macro F1."""
        return relation_metrics.format_report(scores)
