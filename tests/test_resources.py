"""Jobs never wait for CPUs nobody will free: reservations are sized, or refused naming the flag.

The session's Ray has 2 CPUs, as this machine: two training workers at Ray's default of one CPU each
left nothing for Ray Data, and `pretrain --num-workers 2` hung for ever.
"""

from __future__ import annotations

import pytest
from conftest import SAMPLES

from biobert_ray import cli, resources
from biobert_ray.config import AnnotateConfig

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.timeout(300)]


def test_an_unset_reservation_shares_the_cpus_and_an_impossible_one_names_the_flag():
    said: list[str] = []
    assert resources.cpus_per_unit(None, 2, 0.5, "--cpus-per-worker", "worker", log=said.append) == 0.75
    assert "2 worker(s) x 0.75 CPUs" in said[0] and "--cpus-per-worker" in said[0]
    assert resources.cpus_per_unit(0.5, 2, 0.5, "--cpus-per-worker", "worker") == 0.5
    with pytest.raises(ValueError, match=r"set --cpus-per-worker 0\.75 or lower"):
        resources.cpus_per_unit(1.0, 2, 0.5, "--cpus-per-worker", "worker")
    with pytest.raises(ValueError, match="use fewer workers"):
        resources.cpus_per_unit(None, 8, 0.5, "--cpus-per-worker", "worker")
    assert resources.cpus_per_unit(None, 8, 0.5, "--cpus-per-worker", "worker", use_gpu=True) == 1.0


def test_finetune_with_two_workers_and_no_cpu_flag_runs(tiny_bert, tmp_path, capsys):
    ncbi = SAMPLES / "ncbi_disease"
    code = cli.main(
        ["finetune", "ner", "--train", str(ncbi / "train.tsv.gz"), "--entity-type", "Disease",
         "--base-model", tiny_bert, "--out", str(tmp_path / "model"), "--num-workers", "2", "--epochs", "1",
         "--max-train-samples", "64", "--max-seq-length", "32", "--batch-size", "16"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "2 training worker(s) x 0.75 CPUs" in printed and "model saved to" in printed


def test_pretrain_with_two_workers_and_no_cpu_flag_runs(sample_articles, tiny_bert, tmp_path, capsys):
    code = cli.main(
        ["pretrain", "--corpus", sample_articles, "--base-model", tiny_bert, "--out", str(tmp_path / "mlm"),
         "--num-workers", "2", "--max-steps", "2", "--micro-batch", "4", "--global-batch", "8",
         "--seq-len", "32", "--eval-documents", "8", "--text-columns", "title"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "2 training worker(s) x 0.75 CPUs" in printed and "pretrain: step 2" in printed


def test_annotate_with_more_actors_than_fit_is_refused(sample_articles, tiny_ner_model, tmp_path, capsys):
    code = cli.main(
        ["annotate", "ner", "--articles", sample_articles, "--model", tiny_ner_model,
         "--out", str(tmp_path / "e"), "--num-actors", "2", "--cpus-per-actor", "1"]
    )  # fmt: skip
    assert code == 2 and "--cpus-per-actor 0.75 or lower" in capsys.readouterr().err
    assert AnnotateConfig(articles="a", model=("m",), out="o").cpus_per_actor is None
