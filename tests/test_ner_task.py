"""NER encode/decode: windows at word boundaries, and the oracle (gold tags -> one-hot logits -> gold)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import SAMPLES

from biobert_ray import models
from biobert_ray.tasks import conll, iob2
from biobert_ray.tasks.base import ModelInfo, plan_windows
from biobert_ray.tasks.ner import IGNORE, NerTask

TASK = NerTask()


@pytest.fixture(scope="module")
def ncbi_dev() -> list[conll.Sentence]:
    return conll.read_conll(str(SAMPLES / "ncbi_disease" / "devel.tsv.gz"), entity_type="Disease")


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    return models.load_tokenizer(tiny_bert)


def long_sentence(sentences: list[conll.Sentence], copies: int = 12) -> conll.Sentence:
    """Several gold sentences glued into one far longer than a window."""
    words, tags = [], []
    for sentence in sentences[:copies]:
        words += sentence.words
        tags += sentence.tags
    return conll.Sentence(tuple(words), tuple(tags), "glued", 1)


def one_hot_logits(task, windows, tags, label2id):
    """Per window: logits that are one-hot on each owned word's gold tag at its first sub-token."""
    out = []
    for window in windows:
        logits = np.zeros((len(window["input_ids"]), len(label2id)), dtype=np.float32)
        for position, word in zip(window["positions"], window["word_ids"], strict=True):
            logits[position, label2id[tags[word]]] = 10.0
        out.append(task.select(window, {"logits": logits}))
    return out


@pytest.mark.parametrize(("max_length", "stride"), [(128, 32), (24, 8), (12, 0)])
def test_oracle_gold_tags_decode_to_gold_spans(ncbi_dev, tokenizer, max_length, stride):
    examples = [*ncbi_dev[:200], long_sentence(ncbi_dev)]
    labels = TASK.labels(examples)
    label2id = {label: i for i, label in enumerate(labels)}
    model = ModelInfo("oracle", dict(enumerate(labels)), {})
    encoded = TASK.encode(examples, tokenizer, max_length, stride, label2id)
    assert len(encoded[-1]) > 1, "the glued sentence must need several windows"
    predictions = []
    for example, windows in zip(examples, encoded, strict=True):
        assert all(len(w["input_ids"]) <= max_length for w in windows)
        owned = sorted(word for w in windows for word in w["word_ids"])
        assert owned == list(range(len(example.words))), "every word owned by exactly one window"
        (prediction,) = TASK.decode(
            [example], [windows], [one_hot_logits(TASK, windows, example.tags, label2id)], model
        )
        assert prediction.tags == example.tags
        assert [(m.entity_type, m.start, m.end) for m in prediction.mentions()] == iob2.spans(example.tags)
        assert all(m.score > 0.99 for m in prediction.mentions())
        predictions.append(prediction)
    scores = TASK.score(examples, predictions)
    assert scores["overall"]["f1"] == 1.0 and scores["primary"] == {"name": "f1", "value": 1.0}


def test_training_labels_sit_on_first_subtokens(ncbi_dev, tokenizer):
    example = ncbi_dev[0]
    label2id = {label: i for i, label in enumerate(TASK.labels([example]))}
    (window,) = TASK.encode([example], tokenizer, 512, 32, label2id)[0]
    labelled = [i for i, label in enumerate(window["labels"]) if label != IGNORE]
    assert labelled == window["positions"]
    assert [window["labels"][p] for p in labelled] == [label2id[t] for t in example.tags]
    assert (
        window["input_ids"][0] == tokenizer.cls_token_id and window["input_ids"][-1] == tokenizer.sep_token_id
    )


def test_words_without_subtokens_are_not_dropped(tokenizer):
    example = conll.Sentence(("Mutations", "\u200b", "cause", "ataxia"), ("O", "O", "O", "B-Disease"), "x", 1)
    (windows,) = TASK.encode([example], tokenizer, 64, 8, {"O": 0, "B-Disease": 1, "I-Disease": 2})
    assert sorted(w for window in windows for w in window["word_ids"]) == [0, 1, 2, 3]


def test_plan_windows_overlap_and_ownership():
    lengths = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9]
    spans = plan_windows(lengths, capacity=12, stride=4)
    assert spans[0].first == 0 and spans[-1].last == len(lengths)
    for previous, current in itertools.pairwise(spans):
        assert current.first <= previous.last, "no word between windows"
        if lengths[previous.last - 1] <= 4:
            assert current.first < previous.last, "windows overlap where the words fit the stride"
        assert current.first > previous.first, "windows advance"
    for span in spans:
        assert sum(min(n, 12) for n in lengths[span.first : span.last]) <= 12 or span.last - span.first == 1
    owned = sorted(w for span in spans for w in span.owned)
    assert owned == list(range(len(lengths)))
    (single,) = plan_windows([40], capacity=12, stride=4)  # one word longer than a window
    assert (single.first, single.last, single.owned) == (0, 1, (0,))


def test_corpus_units_and_rows_point_into_their_section(tokenizer):
    """Annotation units keep their provenance; rows carry offsets into the section's text."""
    import pyarrow as pa

    articles = pa.table(
        {
            "pmid": [7, 8],
            "title": ["Ataxia in mice.", None],
            "abstract": ["We saw it. Cystic fibrosis and ataxia-telangiectasia were found.", ""],
        }
    )
    units = TASK.units(articles, {})
    assert [(u.pmid, u.section, u.sentence_index) for u in units] == [
        (7, "title", 0), (7, "abstract", 0), (7, "abstract", 1),
    ]  # fmt: skip
    labels = ["O", "B-Disease", "I-Disease"]
    label2id = {label: i for i, label in enumerate(labels)}
    tags = {
        0: ("B-Disease", "O", "O", "O"),
        2: ("B-Disease", "I-Disease", "O", "B-Disease", "I-Disease", "I-Disease"),
    }
    windows = TASK.encode(units, tokenizer, 64, 8)
    selected = []
    for index, (unit, unit_windows) in enumerate(zip(units, windows, strict=True)):
        gold = tags.get(index, ()) + ("O",) * (len(unit.words) - len(tags.get(index, ())))
        selected.append(one_hot_logits(TASK, unit_windows, gold, label2id))
    predictions = TASK.decode(units, windows, selected, ModelInfo("m", dict(enumerate(labels)), {}))
    rows = TASK.rows(units, predictions)
    section = {"title": articles["title"][0].as_py(), "abstract": articles["abstract"][0].as_py()}
    assert [r["text"] for r in rows] == ["Ataxia", "Cystic fibrosis", "ataxia-telangiectasia"]
    for row in rows:
        assert section[row["section"]][row["char_start"] : row["char_end"]] == row["text"]
    batch = TASK.collate(windows[1] + windows[2], tokenizer.pad_token_id, labelled=False)
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["attention_mask"].sum(1).tolist() == [len(w["input_ids"]) for w in windows[1] + windows[2]]
