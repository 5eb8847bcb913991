"""Jobs submitted with `ray job submit` to a Ray head started by the test (loopback, free ports)."""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import SAMPLES, save_tiny_ner_model, save_tiny_qa_model, save_tiny_re_model, submit_job

from biobert_ray import cli, models, storage

pytestmark = pytest.mark.timeout(400)


def test_ingest_job(ray_head, tmp_path):
    out = tmp_path / "articles"
    logs = submit_job(
        ray_head, "python", "jobs/ingest.py", "--input", str(SAMPLES / "pubmed"), "--out", str(out)
    )
    assert "609 articles, 1 deletions, 0 errors" in logs
    assert pl.scan_parquet(out / "*.parquet").select(pl.len()).collect().item() == 609
    assert (out / "_run.json").exists()


def test_jobs_finetune_evaluate_extract_entities_and_relations_then_answer_questions_on_s3(
    ray_head, tiny_bert, medline_160, s3_bucket, tmp_path
):
    ncbi = SAMPLES / "ncbi_disease"
    # the tagger and its checkpoints to s3
    model, scores, entities = f"{s3_bucket}/models/ner", tmp_path / "scores.json", tmp_path / "entities"
    finetune = [
        "python", "jobs/finetune.py", "ner", "--train", str(ncbi / "train.tsv.gz"),
        "--entity-type", "Disease",
        "--base-model", tiny_bert, "--out", model, "--epochs", "1", "--max-train-samples", "100",
        "--cpus-per-worker", "0.5", "--max-seq-length", "32",
    ]  # fmt: skip
    logs = submit_job(ray_head, *finetune)
    assert f"best epoch 1; model saved to {model}" in logs
    assert "finetune ner: 100 training examples" in logs and "epoch 1: dev F1" not in logs  # no dev set
    fs, _ = storage.filesystem(model)
    names = {p.rsplit("/", 1)[-1] for p in fs.ls(model.removeprefix("s3://"))}
    assert {"config.json", "model.safetensors", "tokenizer.json", "biobert_ray.json"} <= names
    assert fs.glob(f"{model.removeprefix('s3://')}.checkpoints/*/checkpoint_*/optimizer.pt")
    assert models.read_metadata(model)["task"] == "ner"  # read through the node-local cache
    evaluate = [
        "python",
        "jobs/evaluate.py",
        "ner",
        "--model",
        model,
        "--data",
        str(ncbi / "test.tsv.gz"),
    ]
    logs = submit_job(ray_head, *evaluate, "--out", str(scores))
    result = json.loads(scores.read_text())
    overall = result["overall"]
    assert result["examples"] == 940 and overall["support"] == 960
    printed = (
        f"overall{overall['precision']:>11.4f}{overall['recall']:>11.4f}{overall['f1']:>11.4f}{960:>11d}"
    )
    assert printed in logs, "the printed scores are the saved ones"
    # the fine-tuned tagger and two tiny ones (Gene, Disease), then a gene-disease relation model, in one job
    genes = save_tiny_ner_model(tiny_bert, tmp_path / "ner-gene", "Gene", seed=3)
    diseases = save_tiny_ner_model(tiny_bert, tmp_path / "ner-disease", "Disease", seed=1)
    relation_model = save_tiny_re_model(tiny_bert, tmp_path / "re")
    relations = tmp_path / "relations"
    job = ["python", "jobs/extract.py", "--articles", medline_160, "--ner-model", model,
           "--ner-model", genes, "--ner-model", diseases, "--re-model", relation_model,
           "--entities", str(entities), "--relations", str(relations), "--cpus-per-actor", "0.5",
           "--keep-negative", "--max-pairs-per-sentence", "4"]  # fmt: skip
    logs = submit_job(ray_head, *job)
    assert "annotate ner: 2 shards (2 processed, 0 skipped, 0 failed), 160 articles" in logs
    assert "annotate re: 2 shards (2 processed" in logs
    assert "candidate pairs skipped: over 4 pairs in one sentence" in logs, "the cap went to the re step"
    found = pl.read_parquet(relations / "*.parquet")
    mentions = pl.read_parquet(entities / "*.parquet")
    assert set(mentions["model"]) == {model, genes, diseases}
    assert found.height > 0 and set(found["pmid"]) <= set(mentions["pmid"])
    # questions over the same articles on s3: the BM25 index beside them, then annotate qa as a job
    articles, answers = f"{s3_bucket}/articles", f"{s3_bucket}/answers"
    fs, path = storage.filesystem(articles)
    fs.put(medline_160.rstrip("/") + "/", path, recursive=True)
    assert cli.main(["index", "--articles", articles]) == 0
    questions = tmp_path / "questions.jsonl"
    questions.write_text('{"id": "q1", "question": "Which gene is mutated in cancer?"}\n')
    job = ["python", "jobs/annotate.py", "qa", "--articles", articles, "--model",
           save_tiny_qa_model(tiny_bert, tmp_path / "qa"), "--questions", str(questions), "--top-docs", "2",
           "--out", answers, "--cpus-per-actor", "0.5"]  # fmt: skip
    logs = submit_job(ray_head, *job)
    assert "1 question batches (1 processed, 0 skipped, 0 failed), 1 questions, 1 answered" in logs
    with storage.open_parquet(storage.join(answers, "questions-00000.parquet")) as parquet:
        assert parquet.read().column("rank").to_pylist() == [1, 2, 3, 4, 5]
    assert storage.exists(storage.join(answers, "_done", "questions-00000.json"))
