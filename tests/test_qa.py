"""Question answering through the shared fine-tuning and evaluation path, on the bundled BioASQ files."""

from __future__ import annotations

import pytest

from biobert_ray import cli, finetune, models, samples
from biobert_ray.config import FinetuneConfig


@pytest.mark.usefixtures("ray_local")
@pytest.mark.timeout(400)
def test_finetune_qa_then_evaluate_bioasq_factoid_and_list_questions(tiny_bert, tmp_path, capsys):
    model = str(tmp_path / "qa")
    config = FinetuneConfig(
        base_model=tiny_bert, train=samples.bioasq("train"), dev=samples.bioasq("golden-6b1"), out=model,
        epochs=1, batch_size=16, learning_rate=1e-3, max_seq_length=96, stride=32, max_train_samples=96,
        max_eval_samples=150, num_workers=1, cpus_per_worker=0.5,
    )  # fmt: skip
    summary = finetune.finetune("qa", config, log=lambda *_: None)
    metadata = models.read_metadata(model)
    assert metadata["task"] == "qa" and metadata["label_list"] == ["start", "end"]
    assert metadata["question_types"] == ["factoid", "list"]
    dev = summary["dev_scores"]
    assert dev["primary"]["name"] == "factoid mrr" and 0 <= dev["primary"]["value"] <= 1
    chosen = dev["list"]["best_threshold"]
    assert 0 < chosen < 1

    # BioBERT's test batch (no answers) with the golden file of the batch: its 31 factoid questions
    test, golden = samples.bioasq("test-6b1"), samples.bioasq("golden-6b1")
    out = tmp_path / "scores.json"
    args = ["evaluate", "qa", "--model", model, "--max-seq-length", "96", "--doc-stride", "32"]
    assert cli.main([*args, "--data", test, "--gold", golden, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(121 examples)" in printed and "factoid (31 questions): strict accuracy" in printed
    # the golden file itself: snippets as contexts, factoid and list questions, the dev-chosen threshold
    assert cli.main([*args, "--data", golden]) == 0
    printed = capsys.readouterr().out
    assert "factoid (31 questions)" in printed and f"list (11 questions, threshold {chosen:.2f})" in printed
    assert cli.main([*args, "--data", golden, "--list-threshold", "0.3"]) == 0
    assert "list (11 questions, threshold 0.30)" in capsys.readouterr().out
    # a test batch without its golden file cannot be scored, and says what to pass
    assert cli.main([*args, "--data", test]) == 2
    assert "has no gold answer: score a file with answers, or pass --gold" in capsys.readouterr().err
