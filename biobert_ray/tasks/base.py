"""The Task interface: what NER, relation extraction and question answering give the shared code.

Fine-tuning (:mod:`biobert_ray.finetune`), evaluation (:mod:`biobert_ray.evaluation`) and corpus
annotation (:mod:`biobert_ray.annotate`) know nothing of any task: they call a task object, built
by :func:`biobert_ray.tasks.make_task` from the task's name and its options, through the methods
below. A new task is one module in ``biobert_ray/tasks/`` implementing them, its table schema in
:mod:`biobert_ray.schemas`, and a line in ``biobert_ray.tasks.TASKS``.

The flow of data, with the methods that shape it:

- **training and evaluation**: ``read`` a labelled file into examples; ``labels`` gives the label
  list a new head is created with; ``encode`` turns each example into model windows (a unit longer
  than one window becomes several overlapping ones; nothing is truncated); ``collate`` pads a batch
  of windows into the model's keyword arguments (with the labels when training); the model runs;
  ``select`` keeps, from one window's row of the model's output dict, what decoding needs; ``decode``
  turns the selected outputs of a batch of units into predictions (free to aggregate across the
  windows of a unit and across units, as question answering does across a question's documents);
  ``score`` compares predictions with the examples (its ``primary`` metric picks the best
  checkpoint) and ``report`` prints the scores;
- **annotation**: ``for_models`` fits the task to the models' metadata; ``units`` turns one row
  group of the ``articles`` table (with the rows of the ``side_tables`` for the same articles, e.g.
  ``entities`` for relation extraction) into units that keep their provenance; ``encode``,
  ``collate``, ``select`` and ``decode`` as above, with no labels; ``rows`` turns the predictions
  into rows of the task's ``table`` (``schema``), sorted by ``sort_keys``. Question answering runs the
  same chain per question batch (``answers_questions = True``, :mod:`biobert_ray.answers`): its side
  rows are each batch's work list, its rows the spans of each section, merged per question afterwards.

Windows are plain dicts (``input_ids`` and the task's bookkeeping) and units and predictions plain
picklable objects: the shared code moves them between Ray processes and never looks inside, except
for ``len(window["input_ids"])`` (batches are sorted by length).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import torch


@dataclass(frozen=True)
class ModelInfo:
    """What decoding needs to know of a fine-tuned model: its label map and saved metadata."""

    ref: str
    id2label: dict[int, str]
    metadata: dict[str, Any]


class Task(Protocol):
    """What a task provides; see the module docstring for the flow."""

    #: The task's name on the command line and in a model's metadata (``biobert_ray.json``).
    name: str
    #: The ``transformers`` auto class of the task's model head.
    model_class: Any
    #: The frozen dataclass of the task's options; the CLI adds one flag per field to the commands
    #: its ``commands`` metadata names (``finetune``, ``evaluate``, ``annotate``).
    Options: type
    #: This task's options (an ``Options`` instance).
    options: Any
    #: The table annotation writes, its schema and the columns its shards are sorted by.
    table: str
    schema: pa.Schema
    sort_keys: tuple[str, ...]
    #: What one unit of annotation is called in summaries ("sentences").
    unit_name: str
    #: Columns of the ``articles`` table that :meth:`units` reads.
    article_columns: tuple[str, ...]

    def read(self, uri: str, model: dict[str, Any] | None = None) -> list[Any]:
        """The labelled examples of a file (``model``: the saved metadata of the model evaluated)."""
        ...

    def labels(self, examples: Sequence[Any]) -> list[str]:
        """The label list of a new model head trained on ``examples``."""
        ...

    def metadata(self, examples: Sequence[Any], labels: Sequence[str]) -> dict[str, Any]:
        """What the task saves in a fine-tuned model's metadata beside the label list (``examples``:
        the training examples), e.g. what annotation must repeat to mark its units as in training."""
        ...

    def side_tables(self) -> dict[str, str]:
        """Tables whose shard of the same name annotation reads beside each articles shard (name ->
        table directory; e.g. ``{"entities": ...}`` for relation extraction), or none."""
        ...

    def for_models(self, metadata: Sequence[dict[str, Any]]) -> Task:
        """This task as annotation runs it for models with this saved ``metadata`` (e.g. marking
        candidates as they were in training); refuses models that cannot share one run."""
        ...

    def units(self, articles: pa.Table, side: dict[str, pa.Table]) -> list[Any]:
        """The units of one row group of articles (and side-table rows of the same articles): a list,
        or a :class:`Units` that also reports counts and the input records it could not use."""
        ...

    def encode(
        self,
        units: Sequence[Any],
        tokenizer: Any,
        max_length: int,
        stride: int,
        label2id: dict[str, int] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """The windows of each unit; with ``label2id``, each window carries its training labels."""
        ...

    def collate(
        self, windows: Sequence[dict[str, Any]], pad_id: int, labelled: bool
    ) -> dict[str, torch.Tensor]:
        """A padded batch: the model's keyword arguments (with its labels when ``labelled``)."""
        ...

    def select(self, window: dict[str, Any], outputs: dict[str, np.ndarray]) -> Any:
        """What decoding needs of one window, from its row of every model output (padded length)."""
        ...

    def decode(
        self,
        units: Sequence[Any],
        windows: Sequence[Sequence[dict[str, Any]]],
        selected: Sequence[Sequence[Any]],
        model: ModelInfo,
    ) -> list[Any]:
        """Predictions from the selected outputs of every window of every unit of a batch."""
        ...

    def rows(self, units: Sequence[Any], predictions: Sequence[Any]) -> list[dict[str, Any]]:
        """Rows of the task's table (all columns but ``model`` and ``run_id``)."""
        ...

    def score(self, examples: Sequence[Any], predictions: Sequence[Any]) -> dict[str, Any]:
        """The task's official scores, with ``primary``: ``{"name": ..., "value": ...}``."""
        ...

    def report(self, scores: dict[str, Any]) -> str:
        """``scores`` as text for the console."""
        ...


class Units(list):
    """The units of a row group, with what annotation reports beside them: ``counts`` (name -> number,
    summed over the run, e.g. candidate pairs a cap left out) and ``rejected`` input records (dicts with
    ``table``, ``pmid``, ``reason`` and ``record``, an excerpt), written to ``<out>/_rejected``."""

    def __init__(
        self,
        units: Sequence[Any] = (),
        counts: dict[str, int] | None = None,
        rejected: Sequence[dict[str, Any]] = (),
    ) -> None:
        super().__init__(units)
        self.counts = dict(counts or {})
        self.rejected = list(rejected)

    @classmethod
    def of(cls, units: Sequence[Any]) -> Units:
        """``units`` as :class:`Units` (a plain list has no counts and rejects nothing)."""
        return units if isinstance(units, Units) else cls(units)


def score_table(heading: str, rows: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """The lines of an aligned score table: a header (``heading`` over the names, then precision, recall,
    F1 and support) and one line per ``(name, row)``."""
    keys = ("precision", "recall", "f1", "support")
    width = max(len(heading), *(len(name) for name, _ in rows))
    lines = [f"{heading:<{width}}" + "".join(f"{key:>11}" for key in keys)]
    for name, row in rows:
        ratios = "".join(f"{row[key]:>11.4f}" for key in keys[:3])
        lines.append(f"{name:<{width}}{ratios}{row['support']:>11d}")
    return lines


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Probabilities of ``logits`` along ``axis`` (float64, shifted by the maximum for stability)."""
    shifted = np.asarray(logits, dtype=np.float64)
    exp = np.exp(shifted - shifted.max(axis=axis, keepdims=True))
    return exp / exp.sum(axis=axis, keepdims=True)


def pad(windows: Sequence[dict[str, Any]], key: str, value: int) -> torch.Tensor:
    """The ``key`` lists of ``windows`` as one ``long`` tensor, right-padded with ``value``."""
    width = max(len(w[key]) for w in windows)
    batch = torch.full((len(windows), width), value, dtype=torch.long)
    for row, window in enumerate(windows):
        batch[row, : len(window[key])] = torch.as_tensor(window[key], dtype=torch.long)
    return batch


def attention_mask(windows: Sequence[dict[str, Any]]) -> torch.Tensor:
    """1 over each window's ``input_ids``, 0 over its padding."""
    width = max(len(w["input_ids"]) for w in windows)
    mask = torch.zeros((len(windows), width), dtype=torch.long)
    for row, window in enumerate(windows):
        mask[row, : len(window["input_ids"])] = 1
    return mask


@dataclass(frozen=True)
class WindowSpan:
    """Words ``[first, last)`` of a unit packed into one window, and the words it owns.

    A word that falls into several overlapping windows is owned by exactly one: the window where it
    has the most context on its shorter side (the "max context" rule of BERT's SQuAD code). Decoding
    reads each word's prediction from its owning window.
    """

    first: int
    last: int
    owned: tuple[int, ...]


def plan_windows(lengths: Sequence[int], capacity: int, stride: int) -> list[WindowSpan]:
    """Split words with sub-token ``lengths`` into windows of at most ``capacity`` sub-tokens.

    Consecutive windows share at least ``stride`` sub-tokens of context where the words allow it; a
    single word longer than ``capacity`` gets a window of its own (its sub-tokens are cut to fit, its
    first sub-token, which carries its prediction, is kept). Every word is owned by exactly one window.
    """
    if capacity < 1:
        raise ValueError("window capacity must be at least one sub-token")
    stride = max(0, min(stride, capacity // 2))
    n = len(lengths)
    spans: list[tuple[int, int]] = []
    first = 0
    while first < n:
        last, used = first, 0
        while last < n and (used + lengths[last] <= capacity or last == first):
            used += min(lengths[last], capacity)
            last += 1
        spans.append((first, last))
        if last >= n:
            break
        # the next window starts at the earliest word that keeps >= stride sub-tokens of overlap
        start, overlap = last, 0
        while start - 1 > first and overlap + lengths[start - 1] <= stride:
            start -= 1
            overlap += lengths[start]
        first = start
    prefix = [0]
    for length in lengths:
        prefix.append(prefix[-1] + length)
    return [WindowSpan(a, b, _owned(spans, i, prefix)) for i, (a, b) in enumerate(spans)]


def _owned(spans: Sequence[tuple[int, int]], index: int, prefix: Sequence[int]) -> tuple[int, ...]:
    """Words of window ``index`` that no other window gives more context (``prefix``: cumulative lengths)."""
    first, last = spans[index]
    owned = []
    for word in range(first, last):
        best, best_score = index, -1.0
        for other, (a, b) in enumerate(spans):
            if a <= word < b:
                score = min(prefix[word] - prefix[a], prefix[b] - prefix[word + 1]) + 0.01 * (b - a)
                if score > best_score:
                    best, best_score = other, score
        if best == index:
            owned.append(word)
    return tuple(owned)
