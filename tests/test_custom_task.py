"""The Task interface carries a task it has never seen: sentence classification, defined only here.

The task below labels a sentence ``disease`` when it mentions one (gold from NCBI-disease) and
``none`` otherwise. It is registered from this module, and fine-tuned with Ray Train, evaluated and
run over a real articles table through the shared code (``finetune``, ``evaluation``, ``annotate``
and the CLI), with nothing of it outside this file. Ray's worker processes get the task's class by
value (``cloudpickle.register_pickle_by_value``): they cannot import a test module.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import torch
from conftest import SAMPLES
from ray import cloudpickle
from transformers import AutoModelForSequenceClassification

from biobert_ray import annotate, cli, evaluation, finetune, models, tasks, text
from biobert_ray.config import AnnotateConfig, EvaluateConfig, FinetuneConfig, option
from biobert_ray.tasks.base import ModelInfo, attention_mask, pad
from biobert_ray.tasks.conll import read_conll

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.timeout(600)]

SCHEMA = pa.schema(
    [
        pa.field("pmid", pa.int64(), nullable=False),
        pa.field("section", pa.string(), nullable=False),
        pa.field("sentence_index", pa.int32(), nullable=False),
        pa.field("char_start", pa.int32(), nullable=False),
        pa.field("char_end", pa.int32(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True, kw_only=True)
class SentenceOptions:
    """Options of the sentence classifier."""

    min_score: float = option(0.0, "keep labels at or above this probability", commands=("annotate",))


@dataclass(frozen=True)
class Example:
    text: str
    label: str


@dataclass(frozen=True)
class Sentence:
    pmid: int
    section: str
    sentence_index: int
    start: int
    text: str


class SentenceTask:
    """Sentence classification: one label per sentence."""

    name = "sentence-class"
    model_class = AutoModelForSequenceClassification
    Options = SentenceOptions
    table = "sentence_labels"
    schema = SCHEMA
    sort_keys = ("pmid", "section", "sentence_index", "model")
    unit_name = "sentences"
    article_columns = ("pmid", "title", "abstract")

    def __init__(self, options: SentenceOptions | None = None) -> None:
        self.options = options or SentenceOptions()

    def read(self, uri: str, model: dict[str, Any] | None = None) -> list[Example]:
        with open(uri, encoding="utf-8") as f:
            return [Example(*reversed(line.rstrip("\n").split("\t", 1))) for line in f]

    def labels(self, examples: Sequence[Example]) -> list[str]:
        return sorted({e.label for e in examples})

    def metadata(self, examples: Sequence[Example], labels: Sequence[str]) -> dict[str, Any]:
        return {"classes": list(labels)}

    def side_tables(self) -> dict[str, str]:
        return {}

    def for_models(self, metadata: Sequence[dict[str, Any]]) -> SentenceTask:
        return self

    def units(self, articles: pa.Table, side: dict[str, pa.Table]) -> list[Sentence]:
        units = []
        for article in articles.to_pylist():
            for section in ("title", "abstract"):
                body = article[section] or ""
                for index, (start, end) in enumerate(text.split_sentences(body)):
                    units.append(Sentence(article["pmid"], section, index, start, body[start:end]))
        return units

    def encode(self, units, tokenizer, max_length, stride, label2id=None) -> list[list[dict[str, Any]]]:
        encoded = tokenizer([u.text for u in units], truncation=True, max_length=max_length)["input_ids"]
        windows = []
        for unit, input_ids in zip(units, encoded, strict=True):
            window = {"input_ids": input_ids}
            if label2id is not None:
                window["label"] = label2id[unit.label]
            windows.append([window])
        return windows

    def collate(self, windows, pad_id: int, labelled: bool) -> dict[str, torch.Tensor]:
        batch = {"input_ids": pad(windows, "input_ids", pad_id), "attention_mask": attention_mask(windows)}
        if labelled:
            batch["labels"] = torch.tensor([w["label"] for w in windows], dtype=torch.long)
        return batch

    def select(self, window: dict[str, Any], outputs: dict[str, np.ndarray]) -> np.ndarray:
        return outputs["logits"]

    def decode(self, units, windows, selected, model: ModelInfo) -> list[tuple[str, float]]:
        predictions = []
        for (logits,) in selected:
            probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            predictions.append((model.id2label[int(probs.argmax())], float(probs.max())))
        return predictions

    def rows(self, units, predictions) -> list[dict[str, Any]]:
        return [
            {
                "pmid": u.pmid,
                "section": u.section,
                "sentence_index": u.sentence_index,
                "char_start": u.start,
                "char_end": u.start + len(u.text),
                "label": label,
                "score": score,
            }
            for u, (label, score) in zip(units, predictions, strict=True)
            if score >= self.options.min_score
        ]

    def score(self, examples, predictions) -> dict[str, Any]:
        correct = sum(e.label == label for e, (label, _) in zip(examples, predictions, strict=True))
        accuracy = correct / len(examples)
        return {
            "accuracy": accuracy,
            "examples": len(examples),
            "primary": {"name": "accuracy", "value": accuracy},
        }

    def report(self, scores: dict[str, Any]) -> str:
        return f"accuracy {scores['accuracy']:.4f} over {scores['examples']} sentences"


cloudpickle.register_pickle_by_value(sys.modules[__name__])
tasks.register(SentenceTask)


def labelled_file(path, split: str, limit: int) -> str:
    """NCBI-disease sentences of ``split``, labelled ``disease`` when they mention one."""
    sentences = read_conll(str(SAMPLES / "ncbi_disease" / f"{split}.tsv.gz"), entity_type="Disease")[:limit]
    with open(path, "w", encoding="utf-8") as f:
        for s in sentences:
            f.write(f"{'disease' if 'B-Disease' in s.tags else 'none'}\t{' '.join(s.words)}\n")
    return str(path)


def test_a_task_defined_in_a_test_finetunes_evaluates_and_annotates(
    tiny_bert, tiny_ner_model, medline_160, tmp_path, capsys
):
    train, dev = (
        labelled_file(tmp_path / "train.tsv", "train", 400),
        labelled_file(tmp_path / "dev.tsv", "devel", 100),
    )
    model = str(tmp_path / "model")
    config = FinetuneConfig(
        base_model=tiny_bert, train=train, dev=dev, out=model, epochs=2, batch_size=16, learning_rate=1e-3,
        max_seq_length=48, num_workers=1, cpus_per_worker=0.5,
    )  # fmt: skip
    summary = finetune.finetune("sentence-class", config, log=lambda *_: None)
    metadata = models.read_metadata(model)
    assert metadata["task"] == "sentence-class" and metadata["classes"] == ["disease", "none"]
    assert summary["dev_scores"]["primary"]["name"] == "accuracy" and summary["dev_scores"]["examples"] == 100

    # evaluation through the shared code and the CLI, whose subcommand comes from the registry
    scores = evaluation.evaluate("sentence-class", EvaluateConfig(model=model, data=dev))
    assert scores["examples"] == 100 and 0.0 <= scores["accuracy"] <= 1.0
    assert scores["accuracy"] == summary["dev_scores"]["accuracy"], "the dev score of the exported epoch"
    assert cli.main(["evaluate", "sentence-class", "--model", model, "--data", dev]) == 0
    assert f"accuracy {scores['accuracy']:.4f} over 100 sentences" in capsys.readouterr().out

    # annotation of a real articles table: one row per sentence, pointing into its section
    out = str(tmp_path / "labels")
    report = annotate.run("sentence-class", AnnotateConfig(articles=medline_160, model=(model,), out=out))
    assert (
        report["status"] == "ok"
        and report["counts"]["articles"] == 160
        and report["table"] == "sentence_labels"
    )
    table = pl.read_parquet(f"{out}/*.parquet")
    assert table.height == report["counts"]["units"] == report["counts"]["rows"] > 160
    assert set(table["label"].unique()) <= {"disease", "none"} and table["model"].unique().to_list() == [
        model
    ]
    articles = pl.read_parquet(f"{medline_160}/*.parquet").select("pmid", "title", "abstract")
    row = table.join(articles, on="pmid").filter(pl.col("section") == "abstract").row(0, named=True)
    sentence = row["abstract"][row["char_start"] : row["char_end"]]
    assert sentence and sentence == sentence.strip()

    # a task option reaches annotation (and the run's identity: the shards are redone)
    options = SentenceOptions(min_score=1.01)
    again = annotate.run(
        "sentence-class", AnnotateConfig(articles=medline_160, model=(model,), out=out), options
    )
    assert again["counts"]["shards_processed"] == 2 and again["counts"]["rows"] == 0

    # models of another task are refused, naming both tasks
    ner_out = str(tmp_path / "ner")
    assert cli.main(["annotate", "ner", "--articles", medline_160, "--model", model, "--out", ner_out]) == 2
    assert "is a 'sentence-class' model" in capsys.readouterr().err
    assert cli.main(["evaluate", "sentence-class", "--model", tiny_ner_model, "--data", dev]) == 2
    assert "is a 'ner' model (biobert_ray.json), not a 'sentence-class' model" in capsys.readouterr().err
