"""NER and relations with s3:// everywhere (moto's S3 server on loopback): model, articles, entities,
relations. Fine-tuning to s3 (model and checkpoints) is in ``test_jobs.py``."""

from __future__ import annotations

import polars as pl
import pytest
from conftest import save_tiny_re_model

from biobert_ray import annotate, cli, models, storage
from biobert_ray.config import AnnotateConfig

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.timeout(400)]


def upload_dir(local: str, uri: str) -> None:
    fs, path = storage.filesystem(uri)
    fs.put(local.rstrip("/") + "/", path, recursive=True)


def test_annotate_s3_articles_with_s3_model_to_s3(
    tiny_bert, tiny_ner_model, sample_articles, s3_bucket, tmp_path, monkeypatch
):
    monkeypatch.setenv("BIOBERT_RAY_CACHE", str(tmp_path / "cache"))
    model, articles, out = f"{s3_bucket}/models/tiny", f"{s3_bucket}/articles", f"{s3_bucket}/entities"
    upload_dir(tiny_ner_model, model)
    upload_dir(sample_articles, articles)
    assert models.resolve(model) == models.resolve(model), "one cached copy per node"
    assert len(list((tmp_path / "cache").glob("*/config.json"))) == 1
    report = annotate.run(
        "ner",
        AnnotateConfig(articles=articles, model=(model,), out=out, cpus_per_actor=0.5),
        log=lambda *_: None,
    )
    assert report["counts"]["shards_processed"] == 3 and report["counts"]["articles"] == 609
    entities = pl.scan_parquet(f"{out}/*.parquet").collect()
    assert entities.height == report["counts"]["rows"] > 0
    assert entities["model"].unique().to_list() == [model]
    assert cli.main(["query", "entities", out, "--type", "Disease", "--top", "5"]) == 0

    # relations of the s3 entities, to s3: disease-disease pairs of a one-type relation model
    relation_model, relations = f"{s3_bucket}/models/re", f"{s3_bucket}/relations"
    upload_dir(save_tiny_re_model(tiny_bert, tmp_path / "re", ("DISEASE",)), relation_model)
    argv = ["annotate", "re", "--articles", articles, "--entities", out, "--model", relation_model,
            "--out", relations, "--keep-negative", "--cpus-per-actor", "0.5",
            "--max-pairs-per-sentence", "4"]  # fmt: skip
    assert cli.main(argv) == 0
    found = pl.scan_parquet(f"{relations}/*.parquet").collect()
    assert found.height > 0 and set(found["arg1_type"]) == set(found["arg2_type"]) == {"Disease"}
    keys = ["pmid", "section", "char_start", "char_end"]
    for n in (1, 2):  # every argument is an entities row
        args = found.select("pmid", "section", f"arg{n}_char_start", f"arg{n}_char_end").rename(
            {f"arg{n}_char_start": "char_start", f"arg{n}_char_end": "char_end"}
        )
        assert args.join(entities.select(keys), on=keys, how="anti").height == 0
