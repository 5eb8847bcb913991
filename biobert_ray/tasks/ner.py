"""Named entity recognition as a token-classification task over words.

A unit is a sentence given as words (``conll.Sentence`` in training and evaluation; the words of a
corpus sentence in annotation). Each word is labelled on its first sub-token (the other sub-tokens
get label -100 and are ignored); a sentence longer than one window is split into overlapping windows
at word boundaries, so no word is dropped or silently labelled ``O``. Decoding reads each word's
logits from the window that owns it, takes the most probable tag, and turns the tag sequence into
mentions with strict IOB2 (``metrics.spans``). A mention's ``score`` is the mean, over its words, of
the softmax probability of each word's predicted tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import AutoModelForTokenClassification

from biobert_ray import conll, metrics, schemas
from biobert_ray.tasks.base import plan_windows

IGNORE = -100


@dataclass(frozen=True)
class Mention:
    """An entity mention over words ``[start, end)`` of its sentence."""

    entity_type: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class Prediction:
    """Per-word predicted tags and their probabilities for one sentence."""

    tags: tuple[str, ...]
    probs: tuple[float, ...]

    def mentions(self) -> list[Mention]:
        """The predicted entity mentions (strict IOB2), each scored by its words' mean tag probability."""
        return [
            Mention(kind, start, end, float(np.mean(self.probs[start:end])))
            for kind, start, end in metrics.spans(self.tags)
        ]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class NerTask:
    """Token classification over words with BIO tags (see the module docstring)."""

    name = "ner"
    model_class = AutoModelForTokenClassification
    #: The table corpus annotation writes, and its schema.
    table = "entities"
    schema = schemas.ENTITIES

    def read(self, uri: str, entity_type: str | None = None) -> list[conll.Sentence]:
        """Sentences of a CoNLL/BioBERT token-per-line file."""
        return conll.read_conll(uri, entity_type=entity_type)

    def labels(self, examples: Sequence[conll.Sentence]) -> list[str]:
        """``O`` then ``B-T``/``I-T`` for every entity type in ``examples``."""
        return conll.label_list(conll.entity_types(examples))

    def encode(
        self,
        units: Sequence[Any],
        tokenizer: Any,
        max_length: int,
        stride: int,
        label2id: dict[str, int] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Windows of every unit: ``input_ids``, ``positions``/``word_ids`` of owned words, ``labels``.

        ``units`` have ``.words`` (and ``.tags`` when ``label2id`` is given). ``positions[k]`` is the
        index in ``input_ids`` of the first sub-token of word ``word_ids[k]``; ``labels`` (only with
        ``label2id``) holds the tag id of every word of the window at its first sub-token.
        """
        if not units:
            return []
        encoded = tokenizer(
            [list(u.words) for u in units], is_split_into_words=True, add_special_tokens=False
        )
        capacity = max_length - 2
        result = []
        for index, unit in enumerate(units):
            pieces: list[list[int]] = [[] for _ in unit.words]
            for token_id, word in zip(encoded["input_ids"][index], encoded.word_ids(index), strict=True):
                pieces[word].append(token_id)
            for word_pieces in pieces:
                if not word_pieces:  # e.g. a zero-width character: the tokenizer gives it no sub-token
                    word_pieces.append(tokenizer.unk_token_id)
            tag_ids = [label2id[t] for t in unit.tags] if label2id is not None else None
            result.append(self._windows(pieces, tag_ids, capacity, stride, tokenizer))
        return result

    @staticmethod
    def _windows(pieces, tag_ids, capacity, stride, tokenizer) -> list[dict[str, Any]]:
        windows = []
        for span in plan_windows([len(p) for p in pieces], capacity, stride):
            input_ids = [tokenizer.cls_token_id]
            labels = [IGNORE]
            first_position = {}
            for word in range(span.first, span.last):
                first_position[word] = len(input_ids)
                word_pieces = pieces[word][:capacity]
                input_ids.extend(word_pieces)
                labels.append(tag_ids[word] if tag_ids is not None else IGNORE)
                labels.extend([IGNORE] * (len(word_pieces) - 1))
            input_ids.append(tokenizer.sep_token_id)
            labels.append(IGNORE)
            window = {
                "input_ids": input_ids,
                "positions": [first_position[w] for w in span.owned],
                "word_ids": list(span.owned),
            }
            if tag_ids is not None:
                window["labels"] = labels
            windows.append(window)
        return windows

    def select(self, window: dict[str, Any], logits: np.ndarray) -> np.ndarray:
        """The part of a window's logits that decoding needs: the rows of the words it owns."""
        return logits[window["positions"]]

    def decode(
        self, unit: Any, windows: Sequence[dict[str, Any]], selected: Sequence[np.ndarray], id2label: dict
    ) -> Prediction:
        """Per-word tags and probabilities of one unit from the :meth:`select`-ed logits of its windows."""
        n_words = len(unit.words)
        word_logits = np.zeros((n_words, len(id2label)), dtype=np.float32)
        for window, rows in zip(windows, selected, strict=True):
            word_logits[window["word_ids"]] = rows
        probs = _softmax(word_logits)
        best = probs.argmax(axis=-1)
        return Prediction(
            tags=tuple(id2label[int(i)] for i in best),
            probs=tuple(float(p) for p in probs[np.arange(n_words), best]),
        )

    def rows(
        self, prediction: Prediction, sentence: str, starts: Sequence[int], ends: Sequence[int]
    ) -> list[dict]:
        """The ``entities`` columns of each predicted mention; offsets into ``sentence`` from word spans."""
        rows = []
        for mention in prediction.mentions():
            start, end = starts[mention.start], ends[mention.end - 1]
            rows.append(
                {
                    "char_start": start,
                    "char_end": end,
                    "text": sentence[start:end],
                    "entity_type": mention.entity_type,
                    "score": mention.score,
                }
            )
        return rows

    def score(self, examples: Sequence[conll.Sentence], predictions: Sequence[Prediction]) -> dict[str, Any]:
        """Entity-level precision, recall and F1 (strict IOB2, as seqeval), overall and per type."""
        return metrics.entity_scores([e.tags for e in examples], [p.tags for p in predictions])
