"""Query the output tables with polars: lazy scans, so a query reads only the columns it needs.

Every function takes the table's directory (local or ``s3://``) and returns a ``polars.LazyFrame``;
call ``.collect()`` on the result.
"""

from __future__ import annotations

import polars as pl

from biobert_ray import runs, storage


def scan(table: str) -> pl.LazyFrame:
    """All ``*.parquet`` files directly inside ``table`` (its ``_``-prefixed side tables excluded)."""
    return pl.scan_parquet(storage.join(table, "*.parquet"))


def articles(table: str) -> pl.LazyFrame:
    """The ``articles`` table as ingested: one row per citation per input file (versions may repeat)."""
    return scan(table)


def deletions(table: str) -> pl.LazyFrame:
    """The ``deletions`` side table of an ``articles`` table."""
    return scan(storage.join(table, "_deletions"))


def errors(table: str) -> pl.LazyFrame:
    """The ``errors`` side table of a table: bad records and unreadable files, with reasons."""
    return scan(storage.join(table, "_errors"))


def _file_ranks(*frames: pl.LazyFrame) -> pl.LazyFrame:
    names = set()
    for frame in frames:
        names.update(frame.select("source_file").unique().collect()["source_file"].to_list())
    ordered = sorted(names, key=runs.nlm_order)
    return pl.LazyFrame(
        {"source_file": ordered, "file_rank": list(range(len(ordered)))},
        schema={"source_file": pl.String, "file_rank": pl.Int64},
    )


def current_articles(table: str) -> pl.LazyFrame:
    """The current version of each article: PubMed's baseline-plus-updates semantics in one call.

    When several input files hold the same PMID, the record from the latest file wins (files ordered
    as NLM numbers them, :func:`biobert_ray.runs.nlm_order`; within a file, the later record). A PMID
    deleted by a ``DeleteCitation`` in the same or a later file than its latest record is dropped.
    """
    arts, dels = articles(table), deletions(table)
    ranks = _file_ranks(arts, dels)
    key = (pl.col("file_rank") * (1 << 32) + pl.col("record_index")).alias("_key")
    ranked = arts.join(ranks, on="source_file").with_columns(key)
    latest = ranked.group_by("pmid").agg(pl.col("_key").max())
    deleted = (
        dels.join(ranks, on="source_file")
        .group_by("pmid")
        .agg(pl.col("file_rank").max().alias("_deleted_at"))
    )
    return (
        ranked.join(latest, on=["pmid", "_key"], how="semi")
        .join(deleted, on="pmid", how="left")
        .filter(pl.col("_deleted_at").is_null() | (pl.col("_deleted_at") < pl.col("file_rank")))
        .drop("file_rank", "_key", "_deleted_at")
    )
