"""Named entity recognition as a token-classification task over words.

A unit is a sentence given as words: a :class:`~biobert_ray.tasks.conll.Sentence` (words and gold
IOB2 tags) in training and evaluation, a :class:`CorpusSentence` (words with their character offsets
and provenance) in annotation, cut from an article's title and abstract by
:func:`biobert_ray.text.split_sentences` and :func:`biobert_ray.text.split_words`. Each word is
labelled on its first sub-token (the other sub-tokens get label -100 and are ignored); a sentence
longer than one window is split into overlapping windows at word boundaries, so no word is dropped or
silently labelled ``O``. Decoding reads each word's logits from the window that owns it, takes the
most probable tag, and turns the tag sequence into mentions with strict IOB2
(:func:`biobert_ray.tasks.iob2.spans`). A mention's ``score`` is the mean, over its words, of the
softmax probability of each word's predicted tag. Annotation writes the ``entities`` table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from transformers import AutoModelForTokenClassification

from biobert_ray import schemas, text
from biobert_ray.config import option
from biobert_ray.tasks import conll, iob2
from biobert_ray.tasks.base import ModelInfo, attention_mask, pad, plan_windows

IGNORE = -100
#: The sections of an article that annotation reads, in order.
SECTIONS = ("title", "abstract")


@dataclass(frozen=True, kw_only=True)
class NerOptions:
    """Options of the NER task."""

    entity_type: str | None = option(
        None,
        "entity type of untyped B/I/O tags (evaluate: default the model's, when it has one)",
        commands=("finetune", "evaluate"),
    )


@dataclass(frozen=True)
class CorpusSentence:
    """A sentence of an article, as words with character offsets into the sentence.

    ``start`` is the sentence's offset in its section's text; ``word_starts``/``word_ends`` are
    offsets into ``text``.
    """

    pmid: int
    section: str
    sentence_index: int
    start: int
    text: str
    words: tuple[str, ...]
    word_starts: tuple[int, ...]
    word_ends: tuple[int, ...]


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
            for kind, start, end in iob2.spans(self.tags)
        ]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def corpus_sentences(articles: pa.Table) -> list[CorpusSentence]:
    """Every sentence of the title and abstract of ``articles`` (columns ``pmid`` and the sections)."""
    units = []
    for article in articles.select(["pmid", *SECTIONS]).to_pylist():
        for section in SECTIONS:
            section_text = article[section] or ""
            for index, (start, end) in enumerate(text.split_sentences(section_text)):
                sentence = section_text[start:end]
                spans = text.split_words(sentence)
                units.append(
                    CorpusSentence(
                        pmid=article["pmid"], section=section, sentence_index=index, start=start,
                        text=sentence, words=tuple(sentence[a:b] for a, b in spans),
                        word_starts=tuple(a for a, _ in spans), word_ends=tuple(b for _, b in spans),
                    )
                )  # fmt: skip
    return units


class NerTask:
    """Token classification over words with BIO tags (see the module docstring)."""

    name = "ner"
    model_class = AutoModelForTokenClassification
    Options = NerOptions
    table = "entities"
    schema = schemas.ENTITIES
    sort_keys = ("pmid", "section", "sentence_index", "char_start", "model")
    unit_name = "sentences"
    article_columns = ("pmid", *SECTIONS)

    def __init__(self, options: NerOptions | None = None) -> None:
        self.options = options or NerOptions()

    def read(self, uri: str, model: dict[str, Any] | None = None) -> list[conll.Sentence]:
        """Sentences of a CoNLL/BioBERT token-per-line file.

        Untyped B/I/O tags take ``--entity-type``, or else the entity type of the evaluated
        ``model`` when it has exactly one.
        """
        entity_type = self.options.entity_type
        types = (model or {}).get("entity_types", [])
        if entity_type is None and len(types) == 1:
            entity_type = types[0]
        return conll.read_conll(uri, entity_type=entity_type)

    def labels(self, examples: Sequence[conll.Sentence]) -> list[str]:
        """``O`` then ``B-T``/``I-T`` for every entity type in ``examples``."""
        return conll.label_list(conll.entity_types(examples))

    def metadata(self, examples: Sequence[conll.Sentence], labels: Sequence[str]) -> dict[str, Any]:
        """The entity types the model tags."""
        return {"entity_types": sorted({label[2:] for label in labels if label != conll.OUTSIDE})}

    def side_tables(self) -> dict[str, str]:
        """None: NER reads the articles alone."""
        return {}

    def for_models(self, metadata: Sequence[dict[str, Any]]) -> NerTask:
        """The same task: NER units do not depend on the models."""
        return self

    def units(self, articles: pa.Table, side: dict[str, pa.Table]) -> list[CorpusSentence]:
        """The sentences of the articles' titles and abstracts (:func:`corpus_sentences`)."""
        return corpus_sentences(articles)

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

    def collate(
        self, windows: Sequence[dict[str, Any]], pad_id: int, labelled: bool
    ) -> dict[str, torch.Tensor]:
        """``input_ids``, ``attention_mask`` and, when ``labelled``, per-token ``labels`` (-100 padded)."""
        batch = {"input_ids": pad(windows, "input_ids", pad_id), "attention_mask": attention_mask(windows)}
        if labelled:
            batch["labels"] = pad(windows, "labels", IGNORE)
        return batch

    def select(self, window: dict[str, Any], outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The part of a window's logits that decoding needs: the rows of the words it owns."""
        return outputs["logits"][window["positions"]]

    def decode(
        self,
        units: Sequence[Any],
        windows: Sequence[Sequence[dict[str, Any]]],
        selected: Sequence[Sequence[np.ndarray]],
        model: ModelInfo,
    ) -> list[Prediction]:
        """Per-word tags and probabilities of each unit from the selected logits of its windows."""
        return [
            self._decode(unit, unit_windows, unit_selected, model.id2label)
            for unit, unit_windows, unit_selected in zip(units, windows, selected, strict=True)
        ]

    @staticmethod
    def _decode(
        unit: Any, windows: Sequence[dict[str, Any]], selected: Sequence[np.ndarray], id2label: dict
    ) -> Prediction:
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

    def rows(self, units: Sequence[CorpusSentence], predictions: Sequence[Prediction]) -> list[dict]:
        """One ``entities`` row per predicted mention, with offsets into its section's text."""
        rows = []
        for unit, prediction in zip(units, predictions, strict=True):
            for mention in prediction.mentions():
                start, end = unit.word_starts[mention.start], unit.word_ends[mention.end - 1]
                rows.append(
                    {
                        "pmid": unit.pmid,
                        "section": unit.section,
                        "sentence_index": unit.sentence_index,
                        "char_start": unit.start + start,
                        "char_end": unit.start + end,
                        "text": unit.text[start:end],
                        "entity_type": mention.entity_type,
                        "score": mention.score,
                    }
                )
        return rows

    def score(self, examples: Sequence[conll.Sentence], predictions: Sequence[Prediction]) -> dict[str, Any]:
        """Entity-level precision, recall and F1 (strict IOB2, as seqeval), overall and per type;
        the primary metric is the overall F1."""
        scores = iob2.entity_scores([e.tags for e in examples], [p.tags for p in predictions])
        return {**scores, "primary": {"name": "f1", "value": scores["overall"]["f1"]}}

    def report(self, scores: dict[str, Any]) -> str:
        """Precision, recall, F1 and support per entity type, overall last."""
        return iob2.format_report(scores)
