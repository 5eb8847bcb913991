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

Annotation of a corpus (units: candidate pairs of mentions from the ``entities`` table; rows of the
``relations`` table) is not implemented yet: ``annotate`` lists only the tasks that have ``units``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

from biobert_ray.config import option
from biobert_ray.tasks import relation_metrics
from biobert_ray.tasks.base import ModelInfo, attention_mask, pad
from biobert_ray.tasks.relation_formats import (
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

    def __init__(self, options: RelationOptions | None = None) -> None:
        self.options = options or RelationOptions()

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
        return {
            "marking": MARKING[file_format],
            "negative_label": negative_label(labels, self.options.negative_label),
        }

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

    def score(self, examples: Sequence[RelationExample], predictions: Sequence[Prediction]) -> dict[str, Any]:
        """:func:`relation_metrics.relation_scores` without the model's negative class."""
        negative = predictions[0].negative if predictions else None
        return relation_metrics.relation_scores(
            [e.label for e in examples], [p.label for p in predictions], negative
        )

    def report(self, scores: dict[str, Any]) -> str:
        """Precision, recall, F1 and support per class, the micro average and the macro F1."""
        return relation_metrics.format_report(scores)
