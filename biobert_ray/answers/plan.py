"""What ``annotate qa`` must read for each question batch: its work list, grouped by articles shard.

Questions are answered in batches of ``--questions-per-batch`` (in file order; batch ``k`` is named
``questions-<k>``). A batch's work list pairs each question with the articles it reads: the ones it
names (``pmids``), else its ``--top-docs`` best BM25 hits (:mod:`biobert_ray.retrieval`). There are two
work lists, one per pass: ``span`` (factoid and list questions, read by the span models) and ``yesno``
(yes/no questions, read by the ``--yesno-model``; without one they are not read). A question with no
article gets a note instead (:mod:`biobert_ray.answers.merge` turns notes into rows). The pairs are
grouped by the articles shard that holds each article and written as small side tables,
``<out>/_work/<batch>/<pass>/<shard>.parquet`` (``schemas.QA_WORK``, sorted by PMID), so that each
articles shard is read once per batch and pass, and only the row groups that hold a wanted article
(found from the row groups' PMID statistics, then their ``pmid`` column).

A batch's identity (its completion marker's, :mod:`biobert_ray.runs`) is its questions, the retrieval
index's manifest (or the articles table's identity when every question names its PMIDs and there is no
index), every model's fingerprint and the options that change rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import pyarrow as pa

from biobert_ray import retrieval, runs, schemas, storage
from biobert_ray.tasks.qa.questions import Question

SPAN_TYPES = ("factoid", "list")
#: The passes over a batch: the question types each reads.
PASSES = {"span": SPAN_TYPES, "yesno": ("yesno",)}
#: Why a question of a type no pass reads gets no answer.
UNREAD = {
    "yesno": "a yes/no question, not read: pass --yesno-model to answer it",
    "summary": "a summary question, not read: annotate qa answers factoid, list and yes/no questions",
}


def batches(questions: Sequence[Question], size: int) -> list[tuple[str, list[Question]]]:
    """``(name, questions)`` of each batch of ``size`` questions, in file order."""
    if size < 1:
        raise ValueError("--questions-per-batch must be at least 1")
    return [
        (f"questions-{k // size:05d}", list(questions[k : k + size])) for k in range(0, len(questions), size)
    ]


class Locator:
    """Where the articles of a question are: its named PMIDs' shards, or its BM25 hits.

    Uses the retrieval index when there is one (``index``, else the table's default location); without
    one, the ``questions`` to read must name their PMIDs, whose shards are found by reading the table's
    ``pmid`` column.
    """

    def __init__(
        self, articles: str, index: str | None, questions: Sequence[Question], log: Callable
    ) -> None:
        location = index or retrieval.default_location(articles)
        self.retriever: retrieval.Retriever | None = None
        self.shard_of: dict[int, str] | None = None
        if storage.exists(storage.join(location, retrieval.MANIFEST)):
            self.retriever = retrieval.open_index(location, articles)
            self.identity: dict[str, Any] = {"index": runs.digest(self.retriever.manifest)}
        elif all(q.pmids for q in questions):
            log(f"no retrieval index at {location}: every question names its PMIDs; finding their shards")
            self.shard_of = _pmid_shards(articles)
            self.identity = {"articles": retrieval.table_identity(articles)}
        else:
            raise FileNotFoundError(
                f"no retrieval index at {location}: build it with `biobert-ray index --articles {articles}`"
                " (or pass --index), or name each question's pmids"
            )

    def articles_of(
        self, question: Question, top_docs: int
    ) -> list[tuple[int, str, int | None, float | None]]:
        """``(pmid, shard, retrieval rank, score)`` of the articles ``question`` reads (in the table)."""
        if question.pmids:
            shards = self.shard_of if self.shard_of is not None else self.retriever.locate(question.pmids)
            return [(p, shards[p], None, None) for p in dict.fromkeys(question.pmids) if p in shards]
        return [
            (h.pmid, h.shard, rank, h.score)
            for rank, h in enumerate(self.retriever.search(question.text, top_docs), 1)
        ]


def _pmid_shards(articles: str) -> dict[int, str]:
    """The shard of every article of the table's complete shards (its ``pmid`` column only)."""
    found = {}
    for uri in runs.complete_shards(articles)[0]:
        with storage.open_parquet(uri) as parquet:
            pmids = parquet.read(columns=["pmid"]).column("pmid").to_pylist()
        found.update(dict.fromkeys(pmids, runs.shard_name(uri)))
    return found


def work_list(
    questions: Sequence[Question], locator: Locator, top_docs: int, passes: Sequence[str]
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], dict[str, str]]:
    """The batch's ``schemas.QA_WORK`` rows by pass (of ``passes``) and articles shard, and a note for
    each question that reads no article (no hit, PMIDs not in the table, a type no pass reads:
    :data:`UNREAD`)."""
    work: dict[str, dict[str, list[dict[str, Any]]]] = {name: defaultdict(list) for name in passes}
    notes = {}
    for question in questions:
        name = next((n for n in passes if question.kind in PASSES[n]), None)
        if name is None:
            notes[question.id] = UNREAD[question.kind]
            continue
        found = locator.articles_of(question, top_docs)
        if not found:
            notes[question.id] = (
                "none of its PMIDs is in the articles table" if question.pmids else "no article retrieved"
            )
        for pmid, shard, rank, score in found:
            work[name][shard].append(
                {"pmid": pmid, "question_id": question.id, "question": question.text,
                 "question_type": question.kind, "retrieval_rank": rank, "retrieval_score": score}
            )  # fmt: skip

    def ordered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(rows, key=lambda r: (r["pmid"], r["question_id"]))

    ordered_work = {
        name: {shard: ordered(rows) for shard, rows in found.items()} for name, found in work.items()
    }
    return ordered_work, notes


def write_work(out: str, batch: str, name: str, work: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Write pass ``name``'s work rows of each shard to ``<out>/_work/<batch>/<name>/<shard>.parquet``;
    returns shard -> URI."""
    written = {}
    for shard, rows in work.items():
        uri = storage.join(out, "_work", batch, name, f"{shard}.parquet")
        storage.write_parquet(pa.Table.from_pylist(rows, schema=schemas.QA_WORK), uri, schemas.QA_WORK)
        written[shard] = uri
    return written


def row_groups_with(uri: str, pmids: set[int]) -> list[tuple[int, int]]:
    """``(row group, rows)`` of the articles shard at ``uri`` that hold one of ``pmids``: a row group
    whose PMID statistics exclude them all is skipped unread, the others are checked on their ``pmid``
    column."""
    groups = []
    with storage.open_parquet(uri) as parquet:
        metadata = parquet.metadata
        column = parquet.schema_arrow.get_field_index("pmid")
        for g in range(metadata.num_row_groups):
            stats = metadata.row_group(g).column(column).statistics
            known = stats is not None and stats.has_min_max
            if known and not any(stats.min <= p <= stats.max for p in pmids):
                continue
            held = parquet.read_row_group(g, columns=["pmid"]).column("pmid").to_pylist()
            if pmids.intersection(held):
                groups.append((g, metadata.row_group(g).num_rows))
    return groups


def batch_identity(
    questions: Sequence[Question], locator: Locator, models: list[dict[str, str]], options: dict[str, Any]
) -> dict[str, Any]:
    """What produced a batch's answers (module docstring), in the three parts a marker compares."""
    return {
        "input": {"questions": runs.digest([asdict(q) for q in questions]), **locator.identity},
        "models": models,
        "options": options,
    }
