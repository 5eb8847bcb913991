"""Query the output tables with polars: lazy scans, so a query reads only the columns it needs.

Every function takes the table's directory (local or ``s3://``) and returns a ``polars.LazyFrame``;
call ``.collect()`` on the result. Only complete shards are read (their completion marker matches
the file, :func:`biobert_ray.runs.complete_shards`): a shard that a failed or running job left
behind is skipped with an :class:`IncompleteShardsWarning` that names it.
"""

from __future__ import annotations

import warnings

import polars as pl

from biobert_ray import runs, storage


class IncompleteShardsWarning(UserWarning):
    """A table holds shards that are not complete; queries leave them out."""


def shard_files(table: str) -> list[str]:
    """The complete shards of ``table``; warns about the others, ``FileNotFoundError`` if none is complete."""
    complete, incomplete = runs.complete_shards(table)
    if incomplete:
        names = "; ".join(f"{storage.basename(i['shard'])}: {i['reason']}" for i in incomplete)
        warnings.warn(
            f"{table}: left out {len(incomplete)} incomplete shard(s): {names}",
            IncompleteShardsWarning,
            stacklevel=3,
        )
    if not complete:
        raise FileNotFoundError(f"{table}: no complete shards (is it a table written by biobert-ray?)")
    return complete


def scan(table: str) -> pl.LazyFrame:
    """The complete ``*.parquet`` shards directly inside ``table`` (``_``-prefixed side tables excluded)."""
    return pl.scan_parquet(shard_files(table))


def articles(table: str) -> pl.LazyFrame:
    """The ``articles`` table as ingested: one row per citation per input file (versions may repeat)."""
    return scan(table)


def deletions(table: str) -> pl.LazyFrame:
    """The ``deletions`` side table of an ``articles`` table (of its complete shards)."""
    files = [storage.join(table, "_deletions", storage.basename(uri)) for uri in shard_files(table)]
    return pl.scan_parquet(files)


def errors(table: str) -> pl.LazyFrame:
    """The ``errors`` side table of a table: bad records and unreadable files (or failed row groups
    of an annotated table), with reasons; failed shards included, since that is where they show."""
    return pl.scan_parquet(storage.join(table, "_errors", "*.parquet"))


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


def entities(table: str) -> pl.LazyFrame:
    """The ``entities`` table written by ``annotate ner`` (schema ``schemas.ENTITIES``)."""
    return scan(table)


def top_entities(table: str, entity_type: str | None = None, top: int = 20) -> pl.LazyFrame:
    """Most mentioned entities: ``entity_type``, ``entity`` (lower-cased text), ``mentions``, ``articles``."""
    frame = entities(table)
    if entity_type:
        frame = frame.filter(pl.col("entity_type") == entity_type)
    return (
        frame.with_columns(pl.col("text").str.to_lowercase().alias("entity"))
        .group_by("entity_type", "entity")
        .agg(pl.len().alias("mentions"), pl.col("pmid").n_unique().alias("articles"))
        .sort(["mentions", "articles", "entity"], descending=[True, True, False])
        .head(top)
    )


def articles_mentioning(
    table: str, articles_table: str, entity: str, entity_type: str | None = None
) -> pl.LazyFrame:
    """Articles that mention ``entity`` (case-insensitive exact text), joined back to their titles.

    Columns: ``pmid``, ``title``, ``pub_year``, ``journal``, ``mentions``, ``best_score``.
    """
    frame = entities(table).filter(pl.col("text").str.to_lowercase() == entity.lower())
    if entity_type:
        frame = frame.filter(pl.col("entity_type") == entity_type)
    hits = frame.group_by("pmid").agg(pl.len().alias("mentions"), pl.col("score").max().alias("best_score"))
    titles = articles(articles_table).select("pmid", "title", "pub_year", "journal").unique("pmid")
    return hits.join(titles, on="pmid", how="left").sort(["mentions", "pmid"], descending=[True, False])


def cooccurrences(table: str, within: str = "sentence", min_count: int = 1) -> pl.LazyFrame:
    """Pairs of distinct entities mentioned together in one sentence (or one article).

    ``within`` is ``"sentence"`` or ``"article"``. Columns: ``entity_a``/``type_a``, ``entity_b``/``type_b``
    (each pair once, ordered), ``count`` (sentences or articles holding both) and ``articles``.
    """
    keys = {"sentence": ["pmid", "section", "sentence_index"], "article": ["pmid"]}
    if within not in keys:
        raise ValueError(f"within must be 'sentence' or 'article', not {within!r}")
    mentions = (
        entities(table)
        .select(
            *keys[within],
            pl.col("text").str.to_lowercase().alias("entity"),
            pl.col("entity_type").alias("type"),
        )
        .unique()
    )
    key_a = pl.concat_str("type", "entity", separator="\x00")
    key_b = pl.concat_str("type_b", "entity_b", separator="\x00")
    pairs = mentions.join(mentions, on=keys[within], suffix="_b").filter(key_a < key_b)
    return (
        pairs.group_by(
            pl.col("entity").alias("entity_a"), pl.col("type").alias("type_a"), "entity_b", "type_b"
        )
        .agg(pl.len().alias("count"), pl.col("pmid").n_unique().alias("articles"))
        .filter(pl.col("count") >= min_count)
        .sort(["count", "entity_a", "entity_b"], descending=[True, False, False])
    )


def relations(table: str) -> pl.LazyFrame:
    """The ``relations`` table written by ``annotate re`` (schema ``schemas.RELATIONS``)."""
    return scan(table)


def relations_of(
    table: str, entity: str | None = None, relation: str | None = None, by: str = "sentences"
) -> pl.LazyFrame:
    """Distinct argument pairs of the relations found, most supported first.

    ``entity`` keeps the pairs with an argument whose text is ``entity`` (case-insensitive);
    ``relation`` keeps one predicted label; ``by`` orders by ``sentences`` or ``articles``. Columns:
    ``arg1``/``arg1_type``, ``arg2``/``arg2_type`` (case-folded texts, in text order), ``relation``,
    ``sentences`` (mentions of the pair), ``articles``, ``best_score`` and ``pmids`` (up to 5, for
    reading the evidence with :func:`relation_evidence`).
    """
    if by not in ("sentences", "articles"):
        raise ValueError(f"order by 'sentences' or 'articles', not {by!r}")
    frame = relations(table)
    if entity:
        wanted = entity.lower()
        frame = frame.filter(
            (pl.col("arg1_text").str.to_lowercase() == wanted)
            | (pl.col("arg2_text").str.to_lowercase() == wanted)
        )
    if relation:
        frame = frame.filter(pl.col("relation") == relation)
    return (
        frame.group_by(
            pl.col("arg1_text").str.to_lowercase().alias("arg1"),
            "arg1_type",
            pl.col("arg2_text").str.to_lowercase().alias("arg2"),
            "arg2_type",
            "relation",
        )
        .agg(
            pl.len().alias("sentences"),
            pl.col("pmid").n_unique().alias("articles"),
            pl.col("score").max().alias("best_score"),
            pl.col("pmid").unique().sort().head(5).alias("pmids"),
        )
        .sort([by, "best_score", "arg1", "arg2"], descending=[True, True, False, False])
    )


def relation_evidence(relations_table: str, articles_table: str, first: str, second: str) -> pl.DataFrame:
    """The sentences behind the relations between ``first`` and ``second`` (texts, case-insensitive, in
    either order): one row per relation with ``pmid``, ``section``, ``relation``, ``score``, both
    arguments and ``evidence``, the text of its sentences (from the current version of its article)."""
    from biobert_ray import text

    a, b = first.lower(), second.lower()
    arg1, arg2 = pl.col("arg1_text").str.to_lowercase(), pl.col("arg2_text").str.to_lowercase()
    either_order = ((arg1 == a) & (arg2 == b)) | ((arg1 == b) & (arg2 == a))
    found = relations(relations_table).filter(either_order).collect()
    bodies = (
        current_articles(articles_table)
        .filter(pl.col("pmid").is_in(found["pmid"].unique().to_list()))
        .select("pmid", "title", "abstract")
        .collect()
    )
    by_pmid = {row["pmid"]: row for row in bodies.iter_rows(named=True)}
    evidence = []
    for row in found.iter_rows(named=True):
        body = (by_pmid.get(row["pmid"]) or {}).get(row["section"]) or ""
        spans = text.split_sentences(body)[row["sentence_index"] : row["last_sentence_index"] + 1]
        evidence.append(body[spans[0][0] : spans[-1][1]] if spans else None)
    columns = ["pmid", "section", "relation", "score", "arg1_text", "arg2_text"]
    return (
        found.select(columns)
        .with_columns(pl.Series("evidence", evidence, dtype=pl.String))
        .sort(["score", "pmid"], descending=[True, False])
    )


def answers(table: str) -> pl.LazyFrame:
    """The ``answers`` table written by ``annotate qa`` (``schemas.ANSWERS``)."""
    return scan(table)


#: The columns a person reads an answer by (``query answers`` and the demo print these).
ANSWER_COLUMNS_SHOWN = (
    "question_id", "rank", "answer", "score", "pmid", "evidence_sentence", "supporting_pmids", "note",
)  # fmt: skip


def answers_of(table: str, question_id: str | None = None, question: str | None = None) -> pl.LazyFrame:
    """The ranked answers of one question (``question_id``), of the questions whose text contains
    ``question`` (case-insensitive), or of every question: ``question_id``, ``question``, ``rank``,
    ``answer``, ``score``, ``pmid``, ``section``, ``evidence_sentence``, ``supporting_pmids`` (a yes/no
    answer's articles), ``model`` and ``note`` (why a question has no answer), by question, model and
    rank."""
    frame = answers(table)
    if question_id is not None:
        frame = frame.filter(pl.col("question_id") == question_id)
    if question is not None:
        frame = frame.filter(
            pl.col("question").str.to_lowercase().str.contains(question.lower(), literal=True)
        )
    columns = ["question_id", "question", "rank", "answer", "score", "pmid", "section", "evidence_sentence"]
    return frame.select(*columns, "supporting_pmids", "model", "note").sort(
        "question_id", "model", "rank", nulls_last=True
    )
