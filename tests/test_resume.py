"""Resume identity: a rerun skips only output made from the same input, models and options.

Each test reproduces a way the landed code kept stale or partial output as done: a capped run, a
changed model or precision, an input shard a failed ingest left half-written, a re-ingested input.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl
import pytest
from conftest import SAMPLES, medline_records, write_medline

from biobert_ray import annotate, cli, ingest, query, runs
from biobert_ray.config import AnnotateConfig, IngestConfig

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.timeout(300)]
PUBMED = SAMPLES / "pubmed"


def run_annotate(articles, model, out, log=None, **kw) -> dict:
    config = AnnotateConfig(
        articles=str(articles), model=(str(model),), out=str(out), cpus_per_actor=0.5, **kw
    )
    return annotate.run("ner", config, log=(log.append if log is not None else lambda *_: None))


def run_ingest(inputs, out) -> dict:
    return ingest.run(IngestConfig(input=(str(inputs),), out=str(out)), log=lambda *_: None)


@pytest.fixture(scope="module")
def small_articles(tmp_path_factory) -> Path:
    """The two small sample files (5 articles, 2 shards)."""
    inputs = tmp_path_factory.mktemp("small")
    for name in ("pubmed-29768149.xml", "test_current_medline.xml.gz"):
        shutil.copy(PUBMED / name, inputs / name)
    out = tmp_path_factory.mktemp("small_articles") / "articles"
    run_ingest(inputs, out)
    return out


def test_a_capped_run_is_redone_without_the_cap(medline_160, tiny_ner_model, tmp_path):
    out = tmp_path / "entities"
    capped = run_annotate(medline_160, tiny_ner_model, out, max_articles=10)
    assert capped["counts"]["articles"] == 10
    log: list[str] = []
    full = run_annotate(medline_160, tiny_ner_model, out, log=log)
    assert full["counts"]["shards_processed"] == 2 and full["counts"]["articles"] == 160
    assert sum("was capped" in line for line in log) == 2, log
    assert query.entities(str(out)).select(pl.col("pmid").n_unique()).collect().item() > 100
    assert run_annotate(medline_160, tiny_ner_model, out)["counts"]["shards_skipped"] == 2


def test_a_changed_model_weights_or_precision_is_redone_and_says_why(
    small_articles, tiny_ner_model, tmp_path
):
    out = tmp_path / "entities"
    run_annotate(small_articles, tiny_ner_model, out)
    assert run_annotate(small_articles, tiny_ner_model, out)["counts"]["shards_skipped"] == 2
    copy = tmp_path / "copy"
    shutil.copytree(tiny_ner_model, copy)
    log: list[str] = []
    report = run_annotate(small_articles, copy, out, log=log, precision="fp32")
    assert report["counts"]["shards_processed"] == 2
    assert all("model changed" in line for line in log if line.startswith("redo")), log
    assert query.entities(str(out)).select("model").unique().collect()["model"].to_list() == [str(copy)]
    log.clear()
    report = run_annotate(small_articles, copy, out, log=log, precision="bf16")
    assert report["counts"]["shards_processed"] == 2
    assert any("options changed (precision fp32 -> bf16)" in line for line in log), log
    markers = [runs.read_marker(str(out), str(p)) for p in sorted(out.glob("*.parquet"))]
    assert all(m["identity"]["options"]["precision"] == "bf16" for m in markers)
    assert all(m["identity"]["models"][0]["ref"] == str(copy) for m in markers)
    weights = copy / "model.safetensors"  # retrained in place: the same path and size, other content
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    log.clear()
    assert (
        run_annotate(small_articles, copy, out, log=log, precision="bf16")["counts"]["shards_processed"] == 2
    )
    assert any("model changed" in line for line in log), log


def test_a_half_ingested_shard_is_not_annotated_until_it_is_reingested(tiny_ner_model, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(PUBMED / "test_current_medline.xml.gz", inputs / "pubmed25n0001.xml.gz")
    whole = write_medline(inputs / "pubmed25n0002.xml.gz", medline_records(120)).read_bytes()
    (inputs / "pubmed25n0002.xml.gz").write_bytes(whole[: len(whole) // 2])  # a truncated gzip
    articles, out = tmp_path / "articles", tmp_path / "entities"
    assert run_ingest(inputs, articles)["status"] == "failed"
    assert (articles / "pubmed25n0002.parquet").exists(), "the records before the cut are kept ..."
    code = cli.main(
        ["annotate", "ner", "--articles", str(articles), "--model", tiny_ner_model, "--out", str(out),
         "--cpus-per-actor", "0.5"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 1 and "NOT READ" in printed and "pubmed25n0002.parquet" in printed
    assert not (out / "pubmed25n0002.parquet").exists(), "... but not annotated as if complete"
    with pytest.warns(query.IncompleteShardsWarning, match="pubmed25n0002"):
        assert query.articles(str(articles)).collect().height == 4

    (inputs / "pubmed25n0002.xml.gz").write_bytes(whole)  # fixed, then re-ingested
    assert run_ingest(inputs, articles)["counts"]["files_processed"] == 1
    report = run_annotate(articles, tiny_ner_model, out)
    assert report["status"] == "ok" and report["counts"]["shards_processed"] == 1
    assert report["counts"]["articles"] == 124

    first = inputs / "pubmed25n0001.xml.gz"
    os.utime(first, (first.stat().st_atime, first.stat().st_mtime + 60))  # the input file changes
    log: list[str] = []
    assert ingest.run(IngestConfig(input=(str(inputs),), out=str(articles)), log=log.append)
    assert any("redo" in line and "input changed" in line for line in log), log
    log.clear()
    report = run_annotate(articles, tiny_ner_model, out, log=log)
    assert [s["name"] for s in report["shards"] if s["status"] == "ok"] == ["pubmed25n0001"]
    assert any("input changed" in line for line in log), log


def test_a_writer_that_fails_publishes_nothing_and_the_run_is_recorded(tmp_path, capsys):
    out = tmp_path / "articles"
    (out / "_deletions" / "medline16n0902.parquet").mkdir(parents=True)  # its commit will fail
    code = cli.main(["ingest", str(PUBMED), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 1 and "FAILED" in printed and "writing the shard failed" in printed
    assert not (out / "medline16n0902.parquet").exists(), "no half-written or orphaned articles file"
    assert (out / "pubmed-29768149.parquet").exists() and (out / "test_current_medline.parquet").exists()
    run = runs.storage.read_json(str(out / "_run.json"))
    assert run["status"] == "failed" and run["failed_files"][0]["source"].endswith("medline16n0902.xml.gz")
    assert not list(out.rglob("*.tmp-*"))
    errors = pl.read_parquet(out / "_errors" / "medline16n0902.parquet")
    assert errors["level"].to_list() == ["file"] and "writing the shard failed" in errors["reason"][0]


def test_an_interrupted_ingest_leaves_no_temporary_files_after_the_rerun(tmp_path):
    out = tmp_path / "articles"
    run_ingest(PUBMED, out)
    (out / "medline16n0902.parquet.tmp-0123").write_bytes(b"PAR1 half")  # what a killed writer leaves
    (out / "_done" / "test_current_medline.json").unlink()
    report = run_ingest(PUBMED, out)
    assert report["counts"]["files_processed"] == 1
    assert not list(out.rglob("*.tmp-*"))
