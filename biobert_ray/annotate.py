"""Corpus annotation, the driver: plan the work, run the Ray Data chain, finish shards, summarise.

One output shard per input articles shard, as ``<shard>.parquet`` (``schemas.ENTITIES`` for NER) under
``out``, beside:

- ``_done/<shard>.json``: the completion marker (see :mod:`biobert_ray.runs`), whose identity is
  the input shard (its ingest marker and file size), every model (reference and content fingerprint,
  :func:`biobert_ray.models.fingerprint`) and every option that changes rows (task, window length,
  stride, batch size, precision, quantization) plus the ``--max-articles`` cap;
- ``_parts/<shard>/<identity digest>-<row group>.parquet``: one part per finished row group while the
  shard is in progress. A rerun with the same identity reuses them, so a killed run loses at most the
  row groups it was working on, and a failed row group is the only one redone;
- ``_errors/<shard>.parquet``: row groups that failed, and why (``schemas.ROW_GROUP_ERRORS``);
- ``_run.json``: status, config, counts, failures, wall time and articles/s; ``_lease.json`` while a
  run writes here (:mod:`biobert_ray.lease`).

Only complete input shards are read (their ingest marker matches the file); others are named in the
summary and make the run fail. A shard is merged and marked complete only when every row group of it
succeeded; a capped shard's marker says so, and a rerun without the cap redoes it.
"""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from biobert_ray import models, pipeline, resources, runs, schemas, storage
from biobert_ray.config import AnnotateConfig
from biobert_ray.console import Progress
from biobert_ray.lease import Lease
from biobert_ray.runtime import connect
from biobert_ray.tasks import get_task

SORT_KEYS = ("pmid", "section", "sentence_index", "char_start", "model")


def model_identity(config: AnnotateConfig) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Each model's reference and fingerprint, and the options that change the rows of a run."""
    refs = config.model
    infos = {ref: pipeline.model_info(ref) for ref in refs}
    options = {
        "task": infos[refs[0]]["task"],
        "max_seq_length": {ref: config.max_seq_length or infos[ref]["max_seq_length"] for ref in refs},
        "stride": config.stride,
        "batch_size": config.batch_size or pipeline.DEFAULT_BATCH_SIZE["gpu" if config.use_gpu else "cpu"],
        "precision": config.precision,
        "quantize": config.quantize,
    }
    return [{"ref": ref, "fingerprint": models.fingerprint(ref)} for ref in refs], options


def _row_groups(uri: str, remaining: int | None) -> tuple[list[tuple[int, int]], int]:
    """``(row group, rows to take)`` pairs of a shard under a cap of ``remaining`` rows, and its rows."""
    fs, inner = storage.filesystem(uri)
    with fs.open(inner, "rb") as f:
        metadata = pq.ParquetFile(f).metadata
    groups = []
    for index in range(metadata.num_row_groups):
        rows = metadata.row_group(index).num_rows
        take = rows if remaining is None else min(rows, remaining)
        if remaining is not None:
            remaining -= take
        if take:
            groups.append((index, take))
    return groups, metadata.num_rows


def plan(config: AnnotateConfig, log) -> dict[str, Any]:
    """What this run must do: ``pending`` shards, ``skipped`` complete ones, ``incomplete`` inputs.

    A pending shard is ``{shard, path, identity, digest, capped, row_groups, reused}``: the row
    groups to annotate (``(index, rows)``) and the parts of earlier runs with the same identity.
    """
    complete, incomplete = runs.complete_shards(config.articles)
    if not complete and not incomplete:
        raise FileNotFoundError(f"no articles table (no *.parquet files) at {config.articles}")
    for item in incomplete:
        log(f"warning: not reading {item['shard']}: {item['reason']}")
    model_ids, options = model_identity(config)
    pending, skipped = [], []
    remaining = config.max_articles
    for uri in complete:
        name = runs.shard_name(uri)
        groups, rows = _row_groups(uri, remaining)
        taken = sum(take for _, take in groups)
        if remaining is not None:
            remaining -= taken
        capped = taken < rows
        source = {"shard": name, "ingest_marker": runs.digest(runs.read_marker(config.articles, uri))}
        identity = {
            "input": {**source, "size": storage.size(uri)},
            "models": model_ids,
            "options": {**options, "articles": taken if capped else "all"},
        }
        done, why = (None, "overwrite") if config.overwrite else runs.check_shard(config.out, name, identity)
        if done is not None:
            log(f"skip {uri}: shard {name} is complete ({done['rows']} rows)")
            skipped.append({**done, "status": "skipped"})
            continue
        if why not in ("new", "overwrite"):
            log(f"redo {uri}: {why}")
        digest = runs.digest(identity)
        reused = {g: pipeline.part_uri(config.out, name, digest, g) for g, _ in groups}
        reused = {g: part for g, part in reused.items() if not config.overwrite and storage.exists(part)}
        pending.append(
            {
                "shard": name, "path": uri, "identity": identity, "digest": digest, "capped": capped,
                "row_groups": groups, "reused": reused,
            }
        )  # fmt: skip
    return {"pending": pending, "skipped": skipped, "incomplete": incomplete}


class ShardState:
    """The driver's view of one pending shard: which row groups are done, which failed."""

    def __init__(self, shard: dict[str, Any]) -> None:
        self.shard = shard
        self.expected = dict(shard["row_groups"])
        self.parts: dict[int, str] = {}
        self.failed: dict[int, str] = {}
        self.articles = self.sentences = self.rows = 0

    def add(self, summary: dict[str, Any]) -> None:
        if summary["error"]:
            self.failed[summary["row_group"]] = summary["error"]
            return
        self.parts[summary["row_group"]] = summary["part"]
        self.articles += summary["articles"]
        self.sentences += summary["sentences"]
        self.rows += summary["rows"]

    def reuse(self, row_group: int, part: str) -> None:
        """Count a part an earlier run of the same identity wrote."""
        fs, path = storage.filesystem(part)
        with fs.open(path, "rb") as f:
            metadata = pq.ParquetFile(f).metadata
        self.parts[row_group] = part
        self.articles += self.expected[row_group]
        self.sentences += int(metadata.metadata[b"sentences"])
        self.rows += metadata.num_rows

    @property
    def complete(self) -> bool:
        return len(self.parts) == len(self.expected)


def _finish(config: AnnotateConfig, state: ShardState, schema: pa.Schema, run_id: str) -> dict[str, Any]:
    """Merge a shard's parts into ``<shard>.parquet``, sorted, mark it complete, drop its parts."""
    shard = state.shard
    tables = []
    for _, part in sorted(state.parts.items()):
        fs, inner = storage.filesystem(part)
        with fs.open(inner, "rb") as f:
            tables.append(pq.read_table(f, schema=schema))
    merged = pa.concat_tables(tables) if tables else schema.empty_table()
    merged = merged.sort_by([(c, "ascending") for c in SORT_KEYS])
    target = storage.join(config.out, f"{shard['shard']}.parquet")
    storage.write_parquet(merged, target, schema)
    summary = {"source": shard["path"], "articles": state.articles, "sentences": state.sentences}
    runs.mark_complete(
        config.out, shard["shard"], shard["identity"], [target], capped=shard["capped"],
        rows=merged.num_rows, run_id=run_id, **summary,
    )  # fmt: skip
    _remove_dir(storage.join(config.out, "_parts", shard["shard"]))
    storage.remove(storage.join(config.out, "_errors", f"{shard['shard']}.parquet"))
    return {"name": shard["shard"], **summary, "rows": merged.num_rows, "status": "ok"}


def _remove_dir(uri: str) -> None:
    fs, path = storage.filesystem(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def _record_failures(config: AnnotateConfig, state: ShardState, run_id: str) -> dict[str, Any]:
    """Write a failed shard's ``_errors/<shard>.parquet`` and return its summary."""
    shard = state.shard
    missing = {
        g: "not finished: its process died after its retries, or the run stopped first (see Ray's logs)"
        for g in state.expected
        if g not in state.parts and g not in state.failed
    }
    failures = {**missing, **state.failed}
    rows = [
        {"shard": shard["shard"], "row_group": g, "reason": reason, "run_id": run_id}
        for g, reason in sorted(failures.items())
    ]
    errors = storage.join(config.out, "_errors", f"{shard['shard']}.parquet")
    table = pa.Table.from_pylist(rows, schema=schemas.ROW_GROUP_ERRORS)
    storage.write_parquet(table, errors, schemas.ROW_GROUP_ERRORS)
    return {
        "name": shard["shard"], "source": shard["path"], "articles": state.articles,
        "sentences": state.sentences, "rows": 0, "status": "failed",
        "failed_row_groups": [{"row_group": g, "reason": r} for g, r in sorted(failures.items())],
    }  # fmt: skip


def run(config: AnnotateConfig, log=print) -> dict[str, Any]:
    """Annotate every pending shard of ``config.articles`` with ``config.model``; returns the run summary.

    The summary (also ``<out>/_run.json``, written for failed runs too) holds ``status`` (``ok`` or
    ``failed``), config, versions, counts (shards, articles, sentences, rows), the failed shards with
    their failed row groups and reasons, the incomplete inputs, wall time and articles/s.
    """
    started, start = runs.utc_now(), time.perf_counter()
    run_id = runs.new_run_id()
    with Lease(config.out, run_id, "annotate", force=config.force, log=log):
        runs.remove_temporaries(config.out)
        work = plan(config, log)
        states = {p["shard"]: ShardState(p) for p in work["pending"]}
        finished: list[dict[str, Any]] = []
        failure = None
        schema = get_task(pipeline.model_info(config.model[0])["task"]).schema
        try:
            _annotate(config, states, schema, run_id, log, finished)
        except resources.ResourceError:
            raise  # nothing was started: a usage error, not a failed run
        except Exception as exc:  # the run stopped: what is not finished is recorded as failed
            failure = exc
            log(f"annotate: the run stopped: {type(exc).__name__}: {exc}")
        done = {s["name"] for s in finished}
        failed = [_record_failures(config, s, run_id) for name, s in states.items() if name not in done]
        wall = time.perf_counter() - start
        return _summary(config, run_id, started, wall, work, finished, failed, failure)


def _annotate(
    config: AnnotateConfig,
    states: dict[str, ShardState],
    schema: pa.Schema,
    run_id: str,
    log,
    finished: list[dict[str, Any]],
) -> None:
    """Run the chain over every row group still to do; finished shards' summaries go to ``finished``."""
    work = []
    for name, state in states.items():
        for group, part in state.shard["reused"].items():
            state.reuse(group, part)
        work.extend(
            {"shard": name, "path": state.shard["path"], "row_group": g, "limit": take}
            for g, take in state.shard["row_groups"]
            if g not in state.parts
        )
        if state.complete:
            finished.append(_finish(config, state, schema, run_id))
    if not work:
        return
    connect(config.address)
    cpus = resources.cpus_per_unit(
        config.cpus_per_actor, config.num_actors, 2 * pipeline.STAGE_CPUS, "--cpus-per-actor", "model actor",
        use_gpu=config.use_gpu, log=log,
    )  # fmt: skip
    reused = sum(len(s.shard["reused"]) for s in states.values())
    if reused:
        log(f"reusing {reused} row group(s) finished by an earlier run with the same identity")
    digests = {name: state.shard["digest"] for name, state in states.items()}
    progress = Progress("annotate", sum(w["limit"] for w in work), "articles", log)
    failed = 0
    for summary in pipeline.build(config, work, run_id, digests, cpus).iter_rows():
        state = states[summary["shard"]]
        state.add(summary)
        failed += bool(summary["error"])
        progress.update(summary["articles"], note=f"{failed} row groups failed" if failed else "")
        if failed > config.max_failed_row_groups:
            raise RuntimeError(f"more than {config.max_failed_row_groups} row groups failed")
        if not summary["error"] and state.complete:
            finished.append(_finish(config, state, schema, run_id))
    progress.close()


def _summary(
    config: AnnotateConfig,
    run_id: str,
    started: str,
    wall: float,
    work: dict[str, Any],
    finished: list[dict[str, Any]],
    failed: list[dict[str, Any]],
    failure: Exception | None,
) -> dict[str, Any]:
    shards = [*finished, *failed, *work["skipped"]]
    ok = not failed and not work["incomplete"] and failure is None
    return runs.write_summary(
        config.out,
        "annotate",
        config,
        started,
        wall,
        counts={
            "shards": len(shards),
            "shards_processed": len(finished),
            "shards_skipped": len(work["skipped"]),
            "shards_failed": len(failed),
            "inputs_incomplete": len(work["incomplete"]),
            "articles": sum(s["articles"] for s in shards),
            "sentences": sum(s["sentences"] for s in shards),
            "rows": sum(s["rows"] for s in shards),
        },
        rate=("articles_per_second", sum(s["articles"] for s in [*finished, *failed])),
        shards=shards,
        run_id=run_id,
        status="ok" if ok else "failed",
        error=f"{type(failure).__name__}: {failure}" if failure else None,
        incomplete_inputs=work["incomplete"],
    )
