"""Pretraining on Ray Train: loss falls, an interrupted run resumes where it stopped, S3, a Ray job."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray.train
from conftest import submit_job

from biobert_ray import cli, models, pretrain, storage
from biobert_ray.config import PretrainConfig
from biobert_ray.pretrain.driver import FAIL_AT_STEP_ENV
from biobert_ray.pretrain.loop import latest_state
from biobert_ray.training import raytrain

SEQ_LEN, GLOBAL_BATCH = 64, 16


def small_run(corpus: str, out: str, **overrides) -> PretrainConfig:
    """2 workers x micro-batch 4 x 2 accumulation; titles only: about 23 steps per epoch.

    No CPU reservation is given: two workers at Ray's default of 1 CPU each hung this 2-core machine
    (nothing was left for the packing tasks); they must be sized to fit.
    """
    options = {
        "corpus": corpus, "out": out, "num_workers": 2, "seq_len": SEQ_LEN,
        "micro_batch": 4, "global_batch": GLOBAL_BATCH, "max_steps": 30, "checkpoint_every": 5,
        "keep_checkpoints": 2, "eval_every": 10, "eval_documents": 16, "log_every": 5, "learning_rate": 3e-3,
        "text_columns": ("title",), "max_failures": 0, **overrides,
    }  # fmt: skip
    return PretrainConfig(**options)


def read_metrics(run_dir: str) -> list[dict]:
    fs, path = storage.filesystem(storage.join(run_dir, "metrics.jsonl"))
    with fs.open(path, "rb") as f:
        return [json.loads(line) for line in f.read().decode().splitlines()]


@contextlib.contextmanager
def logged(logger: str) -> Iterator[list[str]]:
    """The messages of ``logger``'s warnings (and worse) while the block runs."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger(logger).addHandler(handler)
    try:
        yield messages
    finally:
        logging.getLogger(logger).removeHandler(handler)


def checkpoint_dirs(run_dir: str) -> list[str]:
    fs, path = storage.filesystem(run_dir)
    names = [storage.basename(p) for p in fs.ls(path, detail=False) if fs.isdir(p)]
    return sorted(name for name in names if name.startswith("checkpoint_"))


def test_options_that_do_not_fit_are_refused(capsys):
    assert cli.main(["pretrain", "--corpus", "x", "--global-batch", "10", "--micro-batch", "4"]) == 2
    assert "not a multiple of micro_batch=4" in capsys.readouterr().err
    with pytest.raises(ValueError, match="cannot be combined"):
        pretrain.run(PretrainConfig(corpus="x", train_vocab=True, base_model="y"))


@pytest.mark.timeout(420)
def test_interrupted_run_resumes_from_its_newest_loadable_checkpoint_and_finishes(
    ray_local, sample_articles, tiny_bert, tmp_path, monkeypatch
):
    out = str(tmp_path / "model")
    run_dir = storage.join(f"{out}.checkpoints", raytrain.default_run_name(out, "pretrain"))
    monkeypatch.setenv(FAIL_AT_STEP_ENV, "13")
    config = small_run(sample_articles, out, base_model=tiny_bert)
    said: list[str] = []
    with pytest.raises(ray.train.TrainingFailedError, match="injected failure after step 13"):
        pretrain.run(config, log=said.append)
    assert any("2 training worker(s) x 0.75 CPUs" in line for line in said), said
    assert checkpoint_dirs(run_dir) == ["checkpoint_00000005", "checkpoint_00000010"]
    assert not storage.exists(storage.join(out, models.METADATA_FILE))
    # the newest checkpoint is corrupt: the driver (resume check, data plan) and the workers both take
    # the newest one that loads, and say so
    weights = Path(run_dir) / "checkpoint_00000010" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with logged("biobert_ray.training.checkpoints") as warnings:
        assert latest_state(f"{out}.checkpoints", storage.basename(run_dir))["step"] == 5
    assert any(
        "checkpoint checkpoint_00000010 of" in line and "resuming from checkpoint_00000005" in line
        for line in warnings
    ), warnings
    with pytest.raises(ValueError, match="pass --resume"):
        pretrain.run(config)

    with pytest.raises(ValueError, match="differ from the checkpoint's"):
        pretrain.run(small_run(sample_articles, out, base_model=tiny_bert, resume=True, seq_len=32))
    summary = pretrain.run(small_run(sample_articles, out, base_model=tiny_bert, resume=True), log=print)
    assert summary["start_step"] == 5 and summary["steps"] == 30 and summary["epoch"] == 1
    # the resumed data plan skipped exactly what the first 5 steps consumed, in the one shard it read
    assert summary["resumed"]["sequences_consumed"] == 5 * GLOBAL_BATCH
    assert summary["resumed"]["shards_partial"] == 1

    records = read_metrics(run_dir)
    train = [r for r in records if r["event"] == "train"]
    evals = [r for r in records if r["event"] == "eval"]
    assert [r["step"] for r in train] == [5, 10, 15, 20, 25, 30]  # each step once, across the restart
    assert [r["step"] for r in evals] == [10, 20, 30] and train[-1]["epoch"] == 1
    assert train[-1]["loss"] < train[0]["loss"] - 0.5 and evals[-1]["loss"] < evals[0]["loss"]
    assert all(r["tokens_per_second"] > 0 and r["learning_rate"] >= 0 for r in train)
    assert checkpoint_dirs(run_dir) == ["checkpoint_00000025", "checkpoint_00000030"]  # keep_checkpoints=2
    assert latest_state(f"{out}.checkpoints", storage.basename(run_dir))["step"] == 30

    metadata = models.read_metadata(out)
    assert metadata["task"] == "mlm" and metadata["steps"] == 30 and metadata["corpus"] == sample_articles
    assert metadata["tokens_seen"] == 30 * GLOBAL_BATCH * SEQ_LEN and len(metadata["heldout_pmids"]) == 16
    assert metadata["eval"]["loss"] == pytest.approx(evals[-1]["loss"])
    from transformers import AutoModelForTokenClassification

    tagger = models.load_model(out, AutoModelForTokenClassification, num_labels=3)
    assert tagger.config.num_labels == 3 and tagger.config.num_hidden_layers == 2


@pytest.mark.timeout(420)
def test_pretrain_job_from_scratch_on_s3_retries_after_a_worker_failure(ray_head, sample_articles, s3_bucket):
    fs, _ = storage.filesystem(s3_bucket)
    fs.put(f"{sample_articles}/", f"{s3_bucket}/articles/".removeprefix("s3://"), recursive=True)
    out = f"{s3_bucket}/models/scratch"
    logs = submit_job(
        ray_head,
        *("env", f"{FAIL_AT_STEP_ENV}=6", "python", "jobs/pretrain.py"),
        *("--corpus", f"{s3_bucket}/articles", "--out", out, "--train-vocab", "--scratch-size", "tiny"),
        *("--vocab-size", "800", "--num-workers", "2", "--cpus-per-worker", "0.5", "--seq-len", "32"),
        *("--micro-batch", "4", "--global-batch", "8", "--max-steps", "10", "--checkpoint-every", "5"),
        *("--eval-every", "5", "--log-every", "5", "--eval-documents", "8", "--max-failures", "1"),
        timeout=360,
    )
    assert "failed: RuntimeError: injected failure after step 6" in logs, (
        logs
    )  # the first worker group failed
    assert "pretrain: step 10 (this run from step 5)" in logs  # ... and Ray Train resumed it from step 5
    metadata = models.read_metadata(out)
    assert metadata["steps"] == 10 and metadata["config"]["train_vocab"]
    run_dir = metadata["checkpoints"]
    assert run_dir.startswith(f"{s3_bucket}/models/scratch.checkpoints/")
    assert storage.exists(storage.join(run_dir, "initial_model", models.METADATA_FILE))
    assert [r["step"] for r in read_metrics(run_dir) if r["event"] == "train"] == [5, 10]
    from transformers import AutoModelForTokenClassification

    tagger = models.load_model(out, AutoModelForTokenClassification, num_labels=3)
    assert tagger.config.hidden_size == 128 and tagger.config.vocab_size <= 800
