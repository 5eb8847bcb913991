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
from conftest import REPO, SAMPLES

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


def test_finetune_prints_its_progress_once_and_none_of_rays_lines(tiny_bert, tmp_path):
    ncbi = SAMPLES / "ncbi_disease"
    lines = run(
        "finetune", "ner", "--train", str(ncbi / "train.tsv.gz"), "--dev", str(ncbi / "devel.tsv.gz"),
        "--entity-type", "Disease", "--base-model", tiny_bert, "--out", str(tmp_path / "model"),
        "--epochs", "2", "--max-train-samples", "200", "--max-eval-samples", "40", "--max-seq-length", "32",
        "--batch-size", "16", "--num-workers", "2",  # and no CPU flag: sized to fit, not a hang
    )  # fmt: skip
    noise = [line for line in lines if any(word in line for word in RAY_NOISE)]
    assert not noise, noise
    assert len(lines) == len(set(lines)), "every line is printed once"
    evaluations = [line.split(" | ")[0] for line in lines if " | dev f1 " in line]
    assert [line.split(" epoch ")[1] for line in evaluations] == ["0", "1"], lines  # one per epoch
    assert any(line.startswith("best epoch") for line in lines) and len(lines) < 20, lines
    assert "2 training worker(s) x 0.75 CPUs" in lines[0], lines


def test_ingest_prints_a_summary_and_nothing_of_ray_data(tmp_path):
    lines = run("ingest", str(SAMPLES / "pubmed"), "--out", str(tmp_path / "articles"))
    assert not [line for line in lines if any(word in line for word in RAY_NOISE)], lines
    assert lines[0].startswith("ingest: 3 files (3 processed") and len(lines) == 2, lines
