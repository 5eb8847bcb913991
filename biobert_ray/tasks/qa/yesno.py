"""Yes/no question answering (BioASQ yes/no questions, PubMedQA yes/no/maybe) as sequence classification.

A unit is a :class:`~biobert_ray.tasks.qa.yesno_files.YesNoExample`: a question with the text that
answers it (PubMedQA's abstract without its conclusion, or a BioASQ question's snippets). The model
(``AutoModelForSequenceClassification``) reads ``[CLS] question [SEP] context [SEP]``; a context longer
than one window is split into overlapping windows as for span questions (:func:`.spans.encode_pair`,
``--max-seq-length``, ``--stride``, ``--max-query-length``), each trained with the question's label, and
the question's answer is the class of the highest mean probability over its windows (``score``: that
mean). Scores (:func:`.metrics.classification_scores`): accuracy, macro-F1 over the classes in the gold
labels or the predictions, and per class; the primary score is the macro-F1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

from biobert_ray.config import option
from biobert_ray.tasks.base import ModelInfo, score_table, softmax
from biobert_ray.tasks.qa import metrics, spans
from biobert_ray.tasks.qa.yesno_files import YesNoExample, read_yesno


@dataclass(frozen=True, kw_only=True)
class YesNoOptions:
    """Options of the yes/no task."""

    max_query_length: int = option(
        64, "question sub-tokens kept at most", commands=("finetune", "evaluate", "annotate")
    )


@dataclass(frozen=True)
class YesNoPrediction:
    """The answer to one question, its mean probability over the question's windows, and the mean
    probability of every class."""

    label: str
    score: float
    probabilities: dict[str, float]


class YesNoTask:
    """Yes/no(/maybe) answers to questions about a text, by sequence classification."""

    name = "yesno"
    model_class = AutoModelForSequenceClassification
    Options = YesNoOptions
    unit_name = "questions"

    def __init__(self, options: YesNoOptions | None = None) -> None:
        self.options = options or YesNoOptions()

    def read(self, uri: str, model: dict[str, Any] | None = None) -> list[YesNoExample]:
        """The examples of a PubMedQA file or directory (``#train|dev|test``) or a BioASQ golden file."""
        return read_yesno(uri)

    def labels(self, examples: Sequence[YesNoExample]) -> list[str]:
        """The distinct answers of ``examples``, sorted."""
        return sorted({e.label for e in examples})

    def metadata(self, examples: Sequence[YesNoExample], labels: Sequence[str]) -> dict[str, Any]:
        """Nothing beyond the label list."""
        return {}

    def encode(
        self,
        units: Sequence[YesNoExample],
        tokenizer: Any,
        max_length: int,
        stride: int,
        label2id: dict[str, int] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """The question-context windows of each unit; with ``label2id``, each carries the answer."""
        result = []
        for unit in units:
            windows = spans.encode_pair(
                unit.question, unit.context, tokenizer, max_length, stride, self.options.max_query_length
            )
            for window in windows:
                del window["offsets"]  # classification needs no character offsets
                if label2id is not None:
                    window["label"] = label2id[unit.label]
            result.append(windows)
        return result

    def collate(
        self, windows: Sequence[dict[str, Any]], pad_id: int, labelled: bool
    ) -> dict[str, torch.Tensor]:
        """The span task's inputs, and one label per window when ``labelled``."""
        batch = spans.pair_inputs(windows, pad_id)
        if labelled:
            batch["labels"] = torch.tensor([w["label"] for w in windows], dtype=torch.long)
        return batch

    def select(self, window: dict[str, Any], outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The window's class logits."""
        return outputs["logits"]

    def decode(
        self,
        units: Sequence[YesNoExample],
        windows: Sequence[Sequence[dict[str, Any]]],
        selected: Sequence[Sequence[np.ndarray]],
        model: ModelInfo,
    ) -> list[YesNoPrediction]:
        """The class of the highest mean softmax probability over each question's windows."""
        predictions = []
        for logits in selected:
            mean = softmax(np.stack(logits)).mean(axis=0)
            best = int(mean.argmax())
            probabilities = {model.id2label[i]: float(p) for i, p in enumerate(mean)}
            predictions.append(YesNoPrediction(model.id2label[best], float(mean[best]), probabilities))
        return predictions

    def score(
        self, examples: Sequence[YesNoExample], predictions: Sequence[YesNoPrediction]
    ) -> dict[str, Any]:
        """Accuracy, macro-F1 and per-class scores (module docstring); primary: macro-F1."""
        gold, predicted = [e.label for e in examples], [p.label for p in predictions]
        scores = metrics.classification_scores(gold, predicted, sorted(set(gold) | set(predicted)))
        return {**scores, "primary": {"name": "macro f1", "value": scores["macro_f1"]}}

    def report(self, scores: dict[str, Any]) -> str:
        """Accuracy and macro-F1, then precision, recall, F1 and support per class."""
        head = f"yes/no ({scores['questions']} questions): accuracy {scores['accuracy']:.4f}, "
        lines = [head + f"macro-F1 {scores['macro_f1']:.4f}"]
        lines += score_table("answer", sorted(scores["per_class"].items()))
        return "\n".join(lines)
