"""Ingest from and to s3:// against a real S3-compatible server (moto) on loopback."""

from __future__ import annotations

import boto3
import polars as pl
import pytest
from conftest import SAMPLES

from biobert_ray import cli, query, storage

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.timeout(240)]


DELETED = 17942999  # the first citation of medline16n0902, deleted by a later update file


def upload_samples(bucket: str, endpoint: str) -> None:
    client = boto3.client("s3", endpoint_url=endpoint)
    for path in (SAMPLES / "pubmed").iterdir():
        client.upload_file(str(path), bucket.removeprefix("s3://"), f"baseline/{path.name}")
    update = f"<PubmedArticleSet><DeleteCitation><PMID>{DELETED}</PMID></DeleteCitation></PubmedArticleSet>"
    client.put_object(
        Bucket=bucket.removeprefix("s3://"), Key="baseline/pubmed26n9999.xml", Body=update.encode()
    )


def test_ingest_s3_to_s3_and_read_back_with_polars(s3_bucket, s3_endpoint, capsys):
    upload_samples(s3_bucket, s3_endpoint)
    out = f"{s3_bucket}/articles"
    assert cli.main(["ingest", f"{s3_bucket}/baseline/*.xml*", "--out", out]) == 0
    assert "4 processed" in capsys.readouterr().out
    names = [storage.basename(u) for u in storage.list_files(out, ".parquet")]
    assert names == [
        "medline16n0902.parquet", "pubmed-29768149.parquet", "pubmed26n9999.parquet",
        "test_current_medline.parquet",
    ]  # fmt: skip
    frame = pl.scan_parquet(f"{out}/*.parquet").select(pl.len(), pl.col("pmid").n_unique()).collect()
    assert frame.row(0) == (609, 609)
    current = query.current_articles(out).select("pmid").collect()["pmid"].to_list()
    assert len(current) == 608 and DELETED not in current, "the update file's deletion applies"
    run = storage.read_json(f"{out}/_run.json")
    assert run["counts"]["articles"] == 609 and run["config"]["out"] == out
    # rerun: everything on S3 is complete, nothing is redone
    assert cli.main(["ingest", f"{s3_bucket}/baseline/*.xml*", "--out", out]) == 0
    assert "4 skipped" in capsys.readouterr().out


def test_atomic_write_discards_a_failed_upload(s3_bucket):
    uri = f"{s3_bucket}/partial.bin"
    with pytest.raises(RuntimeError), storage.atomic_open(uri) as f:
        f.write(b"x" * 10)
        raise RuntimeError("writer failed")
    assert not storage.exists(uri)
