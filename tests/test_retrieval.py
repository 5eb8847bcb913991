"""The BM25 retrieval index of an articles table: built once, questions retrieve their abstract, an index
the table has outgrown is refused (an index on s3:// is built and read in tests/test_jobs.py)."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from biobert_ray import cli, retrieval, runs, storage


def known_article(articles: str) -> dict:
    """An article of the table with a long title and an abstract."""
    rows = pq.read_table(storage.list_files(articles, ".parquet")[0], columns=["pmid", "title", "abstract"])
    return next(r for r in rows.to_pylist() if r["abstract"] and len(r["title"].split()) > 8)


def test_a_question_about_an_abstract_retrieves_it_and_a_stale_index_is_refused(
    sample_articles, tmp_path, capsys
):
    articles = str(tmp_path / "articles")
    shutil.copytree(sample_articles, articles)
    assert cli.main(["index", "--articles", articles]) == 0
    assert "index: 609 articles of 3 shards ->" in capsys.readouterr().out
    location = retrieval.default_location(articles)
    manifest = json.loads((tmp_path / "articles" / "_index" / "bm25" / "index.json").read_text())
    assert manifest["documents"] == 609 and manifest["library"].startswith("tantivy")
    # the index lives inside the table without becoming a shard of it
    assert len(runs.complete_shards(articles)[0]) == 3

    article = known_article(articles)
    question = f"What did the study of {article['title'].rstrip('.').lower()} find?"
    hits = retrieval.open_index(location, articles).search(question, 3)
    assert article["pmid"] in [h.pmid for h in hits]
    assert hits[0].shard == "medline16n0902" and hits[0].score >= hits[-1].score
    assert retrieval.open_index(location).search("?!", 3) == []

    # a shard that is no longer complete makes the index out of date
    (tmp_path / "articles" / "_done" / "test_current_medline.json").unlink()
    with pytest.raises(ValueError, match=r"out of date .* gone \['test_current_medline'\]\): rebuild it"):
        retrieval.open_index(location, articles)
    with pytest.raises(FileNotFoundError, match="no complete retrieval index"):
        retrieval.open_index(str(tmp_path / "nowhere"), articles)
