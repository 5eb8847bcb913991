"""Ingest: MEDLINE/PubMed XML files become the Parquet ``articles`` table, one shard per input file.

Output layout under ``out`` (local or ``s3://``)::

    <shard>.parquet             articles      (schemas.ARTICLES), one file per input file
    _deletions/<shard>.parquet  deletions     (schemas.DELETIONS)
    _errors/<shard>.parquet     errors        (schemas.ERRORS): bad records and unreadable files
    _done/<shard>.json          completion markers (see biobert_ray.runs): the input file's identity
                                (name, size, modification time or ETag) and each output's size
    _run.json                   status, config, versions, counts, wall time and records/s of the last run
    _lease.json                 while a run writes here (see biobert_ray.lease)

Ray Data runs one task per pending input file; every task streams its file through
:func:`biobert_ray.pubmed.parse_records` into three Parquet files, each written atomically. A file
that changed since its shard was written (another size or modification time) is ingested again.
"""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
import ray

from biobert_ray import pubmed, runs, schemas, storage
from biobert_ray.config import IngestConfig
from biobert_ray.console import Progress
from biobert_ray.lease import Lease
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
    without a completion marker, so the next run retries it. A failure to write the shard (a full
    disk, a failed upload) publishes none of its files and is reported the same way.
    """
    start = time.perf_counter()
    name = runs.shard_name(source)
    outputs = shard_outputs(out, name)
    identity = {"input": storage.file_identity(source)}
    runs.clear_marker(out, name)
    counts = dict.fromkeys(COUNTS, 0)
    try:
        reason = _parse_into(source, outputs, rows_per_group, counts)
    except Exception as exc:
        reason = f"writing the shard failed, nothing of it was kept: {type(exc).__name__}: {exc}"
        counts.update(articles=0, deletions=0, errors=1)
        for uri in outputs.values():
            storage.remove(uri)
        storage.write_parquet(
            pa.Table.from_pylist([_file_error(storage.basename(source), reason)], schema=schemas.ERRORS),
            outputs["errors"],
            schemas.ERRORS,
        )
    summary = {
        "source": source,
        "name": name,
        "status": "failed" if reason else "ok",
        "reason": reason,
        "seconds": round(time.perf_counter() - start, 3),
        **counts,
    }
    if reason is None:
        runs.mark_complete(out, name, identity, list(outputs.values()), **summary)
    return summary


def _file_error(source_file: str, reason: str) -> dict[str, Any]:
    return {
        "source_file": source_file,
        "level": "file",
        "record_index": None,
        "pmid": None,
        "reason": reason,
        "excerpt": None,
    }


def _parse_into(
    source: str, outputs: dict[str, str], rows_per_group: int, counts: dict[str, int]
) -> str | None:
    """Stream ``source`` into the three files of ``outputs``, filling ``counts``.

    Returns the reason when the input file could not be read to its end (the records before the
    failure are kept), None when it was read whole. Raises when a file cannot be written.
    """
    source_file = storage.basename(source)
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
                        deleted = {"pmid": record.pmid, "record_index": record.record_index}
                        deletions.add({**deleted, "source_file": source_file})
                    else:
                        errors.add({"source_file": source_file, "level": "record", **error_columns(record)})
        except (pubmed.FileError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, pubmed.FileError) else str(exc)
            kept = f"{reason} ({articles.count} articles read before the failure were kept)"
            errors.add(_file_error(source_file, kept))
    counts.update(articles=articles.count, deletions=deletions.count, errors=errors.count)
    return reason


def error_columns(error: pubmed.RecordError) -> dict[str, Any]:
    """The errors-table columns of a record-level error."""
    return {
        "record_index": error.record_index,
        "pmid": error.pmid,
        "reason": error.reason,
        "excerpt": error.excerpt,
    }


def _ingest_row(row: dict[str, Any], out: str, rows_per_group: int) -> dict[str, Any]:
    return ingest_file(row["source"], out, rows_per_group)


def _plan(config: IngestConfig, inputs: list[str], log) -> tuple[list[str], list[dict[str, Any]]]:
    """Input files to ingest, and the summaries of shards already complete with the same input."""
    pending, skipped = [], []
    for source in inputs:
        name = runs.shard_name(source)
        if config.overwrite:
            pending.append(source)
            continue
        done, why = runs.check_shard(config.out, name, {"input": storage.file_identity(source)})
        if done is None:
            if why != "new":
                log(f"redo {source}: {why}")
            pending.append(source)
        else:
            log(f"skip {source}: shard {name} is complete ({done['articles']} articles)")
            skipped.append({**done, "status": "skipped"})
    return pending, skipped


def run(config: IngestConfig, log=print) -> dict[str, Any]:
    """Ingest every input file of ``config`` into ``config.out``; returns (and saves) the run summary.

    Shards complete with the same input file are skipped unless ``config.overwrite``; the rest run as
    Ray Data tasks, under the output's lease (:mod:`biobert_ray.lease`). The summary, also written to
    ``<out>/_run.json`` when the run fails, has ``status`` ``ok`` or ``failed`` and names every file
    that failed and why.
    """
    started, start = runs.utc_now(), time.perf_counter()
    run_id = runs.new_run_id()
    inputs = sorted(storage.expand(config.input, INPUT_SUFFIXES), key=runs.nlm_order)
    runs.check_unique_names(inputs)
    with Lease(config.out, run_id, "ingest", force=config.force, log=log):
        runs.remove_temporaries(config.out)
        pending, shards = _plan(config, inputs, log)
        failure = None
        try:
            if pending:
                shards.extend(_ingest(config, pending, log))
        except Exception as exc:  # Ray itself failed: record what is not done, then re-raise
            failure = exc
            finished = {s["source"] for s in shards}
            reason = f"the run failed: {type(exc).__name__}: {exc}"
            shards.extend(_not_done(source, reason) for source in pending if source not in finished)
        summary = _summary(config, run_id, started, time.perf_counter() - start, inputs, shards)
    if failure is not None:
        raise failure
    return summary


def _ingest(config: IngestConfig, pending: list[str], log) -> list[dict[str, Any]]:
    """Ingest ``pending`` files as Ray Data tasks; returns their summaries as they finish."""
    connect(config.address)
    dataset = ray.data.from_items([{"source": s} for s in pending], override_num_blocks=len(pending)).map(
        _ingest_row,
        fn_kwargs={"out": config.out, "rows_per_group": config.rows_per_group},
        num_cpus=config.cpus_per_task,
    )
    done = []
    progress = Progress("ingest", len(pending), "files", log)
    for summary in dataset.iter_rows():
        progress.update(note=f"{sum(s['status'] == 'failed' for s in [*done, summary])} failed")
        done.append(summary)
    progress.close()
    return done


def _not_done(source: str, reason: str) -> dict[str, Any]:
    return {
        "source": source,
        "name": runs.shard_name(source),
        "status": "failed",
        "reason": reason,
        "seconds": 0.0,
        **dict.fromkeys(COUNTS, 0),
    }


def _summary(
    config: IngestConfig, run_id: str, started: str, wall: float, inputs: list[str], shards: list[dict]
) -> dict[str, Any]:
    processed = [s for s in shards if s["status"] != "skipped"]
    failed = [s for s in shards if s["status"] == "failed"]
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
            "files_failed": len(failed),
            **{key: sum(s[key] for s in shards) for key in COUNTS},
        },
        rate=("records_per_second", sum(s["records"] for s in processed)),
        shards=shards,
        run_id=run_id,
        status="failed" if failed else "ok",
        failed_files=[{"source": s["source"], "reason": s["reason"]} for s in failed],
    )
