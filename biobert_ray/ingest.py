"""Ingest: MEDLINE/PubMed XML files become the Parquet ``articles`` table, one shard per input file.

Output layout under ``out`` (local or ``s3://``)::

    <shard>.parquet             articles      (schemas.ARTICLES), one file per input file
    _deletions/<shard>.parquet  deletions     (schemas.DELETIONS)
    _errors/<shard>.parquet     errors        (schemas.ERRORS): bad records and unreadable files
    _done/<shard>.json          completion markers (see biobert_ray.runs)
    _run.json                   config, versions, counts, wall time and records/s of the last run

Ray Data runs one task per pending input file; every task streams its file through
:func:`biobert_ray.pubmed.parse_records` into three Parquet files, each written atomically.
"""

from __future__ import annotations

import time
from typing import Any

import ray

from biobert_ray import pubmed, runs, schemas, storage
from biobert_ray.config import IngestConfig
from biobert_ray.runtime import connect

INPUT_SUFFIXES = (".xml", ".xml.gz")
COUNTS = ("records", "articles", "deletions", "errors")


def shard_outputs(out: str, name: str) -> dict[str, str]:
    """The three files shard ``name`` writes under ``out``."""
    return {
        "articles": storage.join(out, f"{name}.parquet"),
        "deletions": storage.join(out, "_deletions", f"{name}.parquet"),
        "errors": storage.join(out, "_errors", f"{name}.parquet"),
    }


def _article_row(article: pubmed.Article, source_file: str) -> dict[str, Any]:
    row = {name: getattr(article, name) for name in pubmed.Article.__slots__}
    row["source_file"] = source_file
    return row


def ingest_file(source: str, out: str, rows_per_group: int = 256) -> dict[str, Any]:
    """Parse one input file into its shard's three Parquet files; returns the shard's summary.

    The summary holds ``source``, ``name``, ``status`` ("ok" or "failed"), the counts of
    :data:`COUNTS`, ``seconds`` and, for a failed file, ``reason``. A file-level failure keeps the
    records read before it, adds a ``level='file'`` row to the errors table and leaves the shard
    without a completion marker, so the next run retries it.
    """
    start = time.perf_counter()
    name = runs.shard_name(source)
    source_file = storage.basename(source)
    outputs = shard_outputs(out, name)
    runs.clear_marker(out, name)
    counts = dict.fromkeys(COUNTS, 0)
    reason = None
    with (
        storage.ParquetSink(outputs["articles"], schemas.ARTICLES, rows_per_group) as articles,
        storage.ParquetSink(outputs["deletions"], schemas.DELETIONS, rows_per_group) as deletions,
        storage.ParquetSink(outputs["errors"], schemas.ERRORS, rows_per_group) as errors,
    ):
        try:
            with storage.open_input(source) as stream:
                for record in pubmed.parse_records(stream):
                    counts["records"] = max(counts["records"], record.record_index + 1)
                    if isinstance(record, pubmed.Article):
                        articles.add(_article_row(record, source_file))
                    elif isinstance(record, pubmed.Deletion):
                        deletions.add(
                            {
                                "pmid": record.pmid,
                                "source_file": source_file,
                                "record_index": record.record_index,
                            }
                        )
                    else:
                        errors.add({"source_file": source_file, "level": "record", **error_columns(record)})
        except (pubmed.FileError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, pubmed.FileError) else str(exc)
            errors.add(
                {
                    "source_file": source_file,
                    "level": "file",
                    "record_index": None,
                    "pmid": None,
                    "reason": f"{reason} ({articles.count} articles read before the failure were kept)",
                    "excerpt": None,
                }
            )
    counts.update(articles=articles.count, deletions=deletions.count, errors=errors.count)
    summary = {
        "source": source,
        "name": name,
        "status": "failed" if reason else "ok",
        "reason": reason,
        "seconds": round(time.perf_counter() - start, 3),
        "outputs": list(outputs.values()),
        **counts,
    }
    if reason is None:
        runs.mark_complete(out, name, summary)
    return summary


def error_columns(error: pubmed.RecordError) -> dict[str, Any]:
    """The errors-table columns of a record-level error."""
    return {
        "record_index": error.record_index,
        "pmid": error.pmid,
        "reason": error.reason,
        "excerpt": error.excerpt,
    }


def _ingest_row(row: dict[str, Any], out: str, rows_per_group: int) -> dict[str, Any]:
    summary = ingest_file(row["source"], out, rows_per_group)
    return {k: v for k, v in summary.items() if k != "outputs"}


def run(config: IngestConfig, log=print) -> dict[str, Any]:
    """Ingest every input file of ``config`` into ``config.out``; returns (and saves) the run summary.

    Complete shards are skipped unless ``config.overwrite``; the rest run as Ray Data tasks. The
    summary is also written to ``<out>/_run.json``.
    """
    started, start = runs.utc_now(), time.perf_counter()
    inputs = sorted(storage.expand(config.input, INPUT_SUFFIXES), key=runs.nlm_order)
    runs.check_unique_names(inputs)
    shards: list[dict[str, Any]] = []
    pending: list[str] = []
    for source in inputs:
        done = None if config.overwrite else runs.read_complete(config.out, runs.shard_name(source))
        if done is None:
            pending.append(source)
        else:
            log(f"skip {source}: shard {done['name']} is complete ({done['articles']} articles)")
            shards.append({**done, "status": "skipped"})
    if pending:
        connect(config.address)
        dataset = ray.data.from_items([{"source": s} for s in pending], override_num_blocks=len(pending)).map(
            _ingest_row,
            fn_kwargs={"out": config.out, "rows_per_group": config.rows_per_group},
            num_cpus=config.cpus_per_task,
        )
        for summary in dataset.iter_rows():
            status = "FAILED: " + summary["reason"] if summary["status"] == "failed" else "ok"
            log(
                f"{summary['source']}: {summary['articles']} articles, {summary['deletions']} deletions, "
                f"{summary['errors']} errors in {summary['seconds']:.1f}s - {status}"
            )
            shards.append(summary)
    wall = time.perf_counter() - start
    processed = [s for s in shards if s["status"] != "skipped"]
    return runs.write_summary(
        config.out,
        "ingest",
        config,
        started,
        wall,
        counts={
            "files": len(inputs),
            "files_processed": len(processed),
            "files_skipped": len(shards) - len(processed),
            "files_failed": sum(s["status"] == "failed" for s in shards),
            **{key: sum(s[key] for s in shards) for key in COUNTS},
        },
        rate=("records_per_second", sum(s["records"] for s in processed)),
        shards=shards,
        failed_files=[
            {"source": s["source"], "reason": s["reason"]} for s in shards if s["status"] == "failed"
        ],
    )
