"""The console is for people: a command prints its own lines once, and none of Ray's.

Before, `finetune` printed every training line twice among hundreds of Ray Train controller lines
("Failed to query Ray Train Controller actor state..."), Ray Data's execution plans and deprecation
warnings. The commands run here as a user runs them, in their own process, on the session's Ray.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import ray
import torch
from conftest import REPO, SAMPLES
from transformers import AutoModelForTokenClassification

from biobert_ray import finetune
from biobert_ray.config import FinetuneConfig
from biobert_ray.tasks.ner import NerOptions

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.timeout(300)]
RAY_NOISE = (
    "INFO",
    "WARNING",
    "Failed to query",
    "(raylet)",
    "(RayTrainWorker",
    "(TrainController",
    "Warning:",
)


def run(*args: str) -> list[str]:
    """Run ``biobert-ray ARGS`` on the session's Ray; its console lines (stdout and stderr together)."""
    command = [
        sys.executable,
        "-m",
        "biobert_ray.cli",
        *args,
        "--address",
        ray.get_runtime_context().gcs_address,
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    return (done.stdout + done.stderr).splitlines()


def test_finetune_prints_its_progress_once_and_none_of_rays_lines_and_the_same_seed_gives_the_same_model(
    tiny_bert, tmp_path
):
    """Two workers, same data and seed, two runs (this command, then the same settings in-process):
    identical weights, whatever order Ray's tasks finish in (600 examples: two encode tasks)."""
    ncbi = SAMPLES / "ncbi_disease"
    settings = {"train": str(ncbi / "train.tsv.gz"), "dev": str(ncbi / "devel.tsv.gz"), "epochs": 2,
                "max_train_samples": 600, "max_eval_samples": 40, "max_seq_length": 32, "batch_size": 32,
                "num_workers": 2, "seed": 7}  # fmt: skip
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
    # no CPU flag: sized to fit, not a hang
    lines = run(
        "finetune",
        "ner",
        *flags,
        "--entity-type",
        "Disease",
        "--base-model",
        tiny_bert,
        "--out",
        str(tmp_path / "a"),
    )
    noise = [line for line in lines if any(word in line for word in RAY_NOISE)]
    assert not noise, noise
    assert len(lines) == len(set(lines)), "every line is printed once"
    evaluations = [line.split(" | ")[0] for line in lines if " | dev f1 " in line]
    assert [line.split(" epoch ")[1] for line in evaluations] == ["0", "1"], lines  # one per epoch
    assert any(line.startswith("best epoch") for line in lines) and len(lines) < 20, lines
    assert "2 training worker(s) x 0.75 CPUs" in lines[0], lines

    config = FinetuneConfig(**settings, base_model=tiny_bert, out=str(tmp_path / "b"))
    finetune.finetune("ner", config, NerOptions(entity_type="Disease"), log=lambda *_: None)
    weights = [AutoModelForTokenClassification.from_pretrained(tmp_path / run).state_dict() for run in "ab"]
    assert weights[0].keys() == weights[1].keys()
    different = [name for name in weights[0] if not torch.equal(weights[0][name], weights[1][name])]
    assert not different, different


def test_ingest_prints_a_summary_and_nothing_of_ray_data(tmp_path):
    lines = run("ingest", str(SAMPLES / "pubmed"), "--out", str(tmp_path / "articles"))
    assert not [line for line in lines if any(word in line for word in RAY_NOISE)], lines
    assert lines[0].startswith("ingest: 3 files (3 processed") and len(lines) == 2, lines
