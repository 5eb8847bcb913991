"""The ingest job on a local Ray: tables, resume, bad input, baseline + update semantics."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLES

from biobert_ray import cli, ingest, query, schemas
from biobert_ray.config import IngestConfig

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.timeout(240)]
PUBMED = SAMPLES / "pubmed"


def run(inputs, out, **kw) -> dict:
    return ingest.run(IngestConfig(input=tuple(map(str, inputs)), out=str(out), **kw), log=lambda *_: None)


def table(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "*.parquet").sort("source_file", "record_index")


def test_ingest_sample_writes_tables_and_run_summary(tmp_path):
    out = tmp_path / "articles"
    report = run([PUBMED], out)
    counts = report["counts"]
    assert counts == {
        "files": 3, "files_processed": 3, "files_skipped": 0, "files_failed": 0,
        "records": 610, "articles": 609, "deletions": 1, "errors": 0,
    }  # fmt: skip
    assert sorted(p.name for p in out.glob("*.parquet")) == [
        "medline16n0902.parquet", "pubmed-29768149.parquet", "test_current_medline.parquet",
    ]  # fmt: skip
    assert pq.read_schema(out / "medline16n0902.parquet").equals(schemas.ARTICLES)
    articles = table(out)
    assert articles.height == 609 and articles["pmid"].n_unique() == 609
    assert (
        articles.filter(pl.col("source_file") == "medline16n0902.xml.gz")["abstract"].is_not_null().sum()
        == 526
    )
    assert pl.read_parquet(out / "_deletions" / "*.parquet")["pmid"].to_list() == [26432306]
    saved = json.loads((out / "_run.json").read_text())
    assert saved["counts"] == counts and saved["records_per_second"] > 0
    assert saved["config"]["input"] == [str(PUBMED)] and "ray" in saved["versions"]


def test_rerun_redoes_only_the_missing_shard(tmp_path):
    out = tmp_path / "articles"
    run([PUBMED], out)
    clean = table(out)
    (out / "test_current_medline.parquet").unlink()
    report = run([PUBMED], out)
    assert report["counts"]["files_processed"] == 1 and report["counts"]["files_skipped"] == 2
    redone = [s["name"] for s in report["shards"] if s["status"] != "skipped"]
    assert redone == ["test_current_medline"]
    assert table(out).equals(clean)
    assert run([PUBMED], out)["counts"]["files_processed"] == 0
    assert run([PUBMED], out, overwrite=True)["counts"]["files_processed"] == 3
    assert table(out).equals(clean)
    assert not list(out.rglob("*.tmp-*"))


def test_bad_input_is_reported_and_the_rest_ingested(tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(PUBMED / "test_current_medline.xml.gz", inputs / "pubmed25n0001.xml.gz")
    good = (PUBMED / "medline16n0902.xml.gz").read_bytes()
    (inputs / "pubmed25n0002.xml.gz").write_bytes(good[: len(good) // 2])  # truncated gzip
    raw = gzip.decompress(good).decode()
    broken = raw.replace('<PMID Version="1">18621939</PMID>', '<PMID Version="1">18621939</PMID><Oops>', 1)
    (inputs / "pubmed25n0003.xml").write_text(broken)  # one broken record
    (inputs / "pubmed25n0004.xml").write_text("")  # empty file
    out = tmp_path / "articles"
    code = cli.main(["ingest", str(inputs), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 1
    assert "FAILED" in printed and "pubmed25n0002.xml.gz" in printed and "pubmed25n0004.xml" in printed
    errors = pl.read_parquet(out / "_errors" / "*.parquet").sort("source_file")
    files = errors.filter(pl.col("level") == "file")
    assert files["source_file"].to_list() == ["pubmed25n0002.xml.gz", "pubmed25n0004.xml"]
    assert "EOFError" in files["reason"][0] and "empty file" in files["reason"][1]
    (bad,) = errors.filter(pl.col("level") == "record").iter_rows(named=True)
    assert (bad["source_file"], bad["record_index"], bad["pmid"]) == ("pubmed25n0003.xml", 1, 18621939)
    articles = pl.read_parquet(out / "*.parquet")
    per_file = dict(articles.group_by("source_file").len().iter_rows())
    assert per_file["pubmed25n0001.xml.gz"] == 4 and per_file["pubmed25n0003.xml"] == 603
    assert 0 < per_file.get("pubmed25n0002.xml.gz", 0) < 604  # records before the cut are kept
    # failed files are retried by the next run, complete ones skipped
    report = run([inputs], out)
    assert sorted(s["name"] for s in report["shards"] if s["status"] != "skipped") == [
        "pubmed25n0002", "pubmed25n0004",
    ]  # fmt: skip


def citation(pmid: int, title: str) -> str:
    return (
        f'<PubmedArticle><MedlineCitation><PMID Version="1">{pmid}</PMID><Article><ArticleTitle>{title}'
        "</ArticleTitle></Article></MedlineCitation></PubmedArticle>"
    )


def write_set(path: Path, *items: str) -> None:
    path.write_text("<PubmedArticleSet>" + "".join(items) + "</PubmedArticleSet>")


def test_current_articles_applies_updates_and_deletions(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    # out of order on purpose: NLM order is by the file number, not the listing order
    write_set(
        inputs / "pubmed25n0010.xml", citation(1, "one v3"), "<DeleteCitation><PMID>2</PMID></DeleteCitation>"
    )
    write_set(
        inputs / "pubmed25n0002.xml", citation(1, "one v2"), citation(3, "three v2"), citation(3, "three v2b")
    )
    write_set(inputs / "pubmed25n0001.xml", citation(1, "one"), citation(2, "two"), citation(3, "three"))
    write_set(
        inputs / "pubmed25n0011.xml",
        citation(2, "two is back"),
        "<DeleteCitation><PMID>3</PMID></DeleteCitation>",
    )
    out = tmp_path / "articles"
    run([inputs], out)
    assert query.articles(str(out)).collect().height == 8
    current = query.current_articles(str(out)).collect().sort("pmid")
    assert current.select("pmid", "title").rows() == [(1, "one v3"), (2, "two is back")]
    assert cli.main(["query", "articles", str(out), "--current", "--count"]) == 0
