"""`finetune ner` with Ray Train: 2 CPU workers, checkpoints each epoch, resume after a worker dies."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import SAMPLES
from transformers import AutoModelForTokenClassification

from biobert_ray import cli, finetune, runtime, storage
from biobert_ray.config import FinetuneConfig
from biobert_ray.tasks.ner import NerOptions

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.timeout(400)]
NCBI = SAMPLES / "ncbi_disease"

DISEASE = NerOptions(entity_type="Disease")


def config(tiny_bert: str, out: Path, **kw) -> FinetuneConfig:
    settings = {
        "base_model": tiny_bert, "train": str(NCBI / "train.tsv.gz"), "dev": str(NCBI / "devel.tsv.gz"),
        "out": str(out), "num_workers": 2, "cpus_per_worker": 0.5, "epochs": 3,
        "batch_size": 16, "max_train_samples": 1600, "max_eval_samples": 80, "max_seq_length": 32,
        "learning_rate": 1e-3, **kw,
    }  # fmt: skip
    return FinetuneConfig(**settings)


def registered_checkpoints(storage: Path) -> list[dict]:
    """Checkpoints Ray Train has registered for the run (a checkpoint counts once all workers reported)."""
    snapshots = list(storage.glob("*/checkpoint_manager_snapshot.json"))
    return json.loads(snapshots[0].read_text())["checkpoint_results"] if snapshots else []


def kill_a_training_worker() -> int:
    """Kill one Ray Train worker of this test session's Ray (its processes descend from pytest)."""
    for proc in psutil.Process().children(recursive=True):
        if any("RayTrainWorker" in part for part in proc.cmdline()):
            proc.kill()
            return proc.pid
    raise AssertionError("no Ray Train worker process found")


def test_the_local_ray_polls_its_training_workers_often_and_watches_no_preemption():
    """The session's Ray was started by `runtime.connect`, so its training controllers inherit these
    (Ray's own 2 s poll made a 6-step run take 21 s instead of 16 s)."""
    for name, value in runtime.LOCAL_TRAIN_ENV.items():
        assert os.environ.get(name) == value, name


def test_two_workers_checkpoint_every_epoch_and_resume_after_a_worker_dies(tiny_bert, tmp_path):
    out = tmp_path / "model"
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(finetune.finetune("ner", config(tiny_bert, out), DISEASE))
    )
    thread.start()
    checkpoints = tmp_path / "model.checkpoints"
    deadline = time.monotonic() + 180
    while not registered_checkpoints(checkpoints) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(registered_checkpoints(checkpoints)) == 1, "no checkpoint after the first epoch"
    killed_at = registered_checkpoints(checkpoints)[-1]["metrics"]["epoch"]
    kill_a_training_worker()
    thread.join(timeout=300)
    assert result, "fine-tuning did not finish"
    assert killed_at == 0 and result["resumed_from_epoch"] == 1, (killed_at, result)
    # one per epoch, in directories named by epoch (Ray Train lists them in dev-F1 order, not by epoch)
    registered = registered_checkpoints(checkpoints)
    assert sorted(c["metrics"]["epoch"] for c in registered) == [0, 1, 2], "one per epoch"
    assert sorted(c["checkpoint_dir_name"] for c in registered) == [
        f"checkpoint_epoch_000{e}" for e in range(3)
    ]
    # the export is a plain Hugging Face directory with our metadata
    model = AutoModelForTokenClassification.from_pretrained(out)
    assert model.config.id2label == {0: "O", 1: "B-Disease", 2: "I-Disease"}
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    metadata = json.loads((out / "biobert_ray.json").read_text())
    assert metadata["task"] == "ner" and metadata["entity_types"] == ["Disease"]
    assert metadata["base_model"] == tiny_bert and metadata["train_examples"] == 1600
    assert metadata["dev_scores"]["overall"]["support"] > 0 and metadata["best_epoch"] in (0, 1, 2)


def test_malformed_training_file_is_refused_with_file_and_line(tiny_bert, tmp_path, capsys):
    bad = tmp_path / "train.tsv"
    bad.write_text("Mutations\tO\ncause\tO\nataxia B\n")
    code = cli.main(
        ["finetune", "ner", "--train", str(bad), "--entity-type", "Disease", "--base-model", tiny_bert]
    )
    assert code == 2
    assert f"{bad}:3" in capsys.readouterr().err


def test_a_model_counts_as_exported_by_a_run_only_if_its_metadata_names_that_run(tmp_path):
    out = str(tmp_path / "model")
    assert finetune.exported_by(out, "finetune-1") is None  # nothing there
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.safetensors").write_bytes(b"weights, metadata not written yet")
    assert finetune.exported_by(out, "finetune-1") is None  # half-written: the metadata comes last
    storage.write_json({"task": "ner", "run_name": "finetune-1"}, f"{out}/biobert_ray.json")
    assert finetune.exported_by(out, "finetune-1")["task"] == "ner"
    assert finetune.exported_by(out, "finetune-2") is None  # another run's model (other data or settings)
