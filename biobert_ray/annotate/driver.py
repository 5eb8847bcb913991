"""Corpus annotation, the driver: plan the work, run the Ray Data chain, finish shards, summarise.

One output shard per input articles shard, as ``<shard>.parquet`` (the task's table, e.g.
``schemas.ENTITIES`` for NER) under ``out``, beside:

- ``_done/<shard>.json``: the completion marker (see :mod:`biobert_ray.runs`), whose identity says
  what produced the shard (:mod:`biobert_ray.annotate.plan`);
- ``_parts/<shard>/<identity digest>-<row group>.parquet``: one part per finished row group while the
  shard is in progress. A rerun with the same identity reuses them, so a killed run loses at most the
  row groups it was working on, and a failed row group is the only one redone;
- ``_errors/<shard>.parquet``: row groups that failed, and why (``schemas.ROW_GROUP_ERRORS``);
- ``_rejected/<shard>.parquet``: input records the task could not use, and why (``schemas.REJECTED``;
  e.g. an ``entities`` row that does not match its article); the rest of the shard completes;
- ``_run.json``: status, config, counts, failures, wall time and articles/s; ``_lease.json`` while a
  run writes here (:mod:`biobert_ray.lease`).

Only complete input shards are read; others are named in the summary and make the run fail. A shard
is merged and marked complete only when every row group of it succeeded; a capped shard's marker says
so, and a rerun without the cap redoes it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pyarrow as pa

from biobert_ray import models, resources, runs, schemas, storage
from biobert_ray.annotate.build import build, start
from biobert_ray.annotate.plan import plan
from biobert_ray.config import AnnotateConfig, to_dict
from biobert_ray.console import Progress
from biobert_ray.lease import Lease
from biobert_ray.tasks import make_task
from biobert_ray.tasks.base import Task


def check_models(task_name: str, refs: tuple[str, ...]) -> None:
    """Refuse models fine-tuned for another task than ``task_name`` (ValueError naming both)."""
    for ref in refs:
        trained = models.info(ref)["task"]
        if trained != task_name:
            raise ValueError(
                f"{ref} is a {trained!r} model (biobert_ray.json), not a {task_name!r} model: "
                f"annotate {trained} with it, or pass a model fine-tuned for {task_name!r}"
            )


class ShardState:
    """The driver's view of one pending shard: which row groups are done, which failed."""

    def __init__(self, shard: dict[str, Any]) -> None:
        self.shard = shard
        self.expected = dict(shard["row_groups"])
        self.parts: dict[int, str] = {}
        self.failed: dict[int, str] = {}
        self.articles = self.units = self.rows = 0

    def add(self, summary: dict[str, Any]) -> None:
        if summary["error"]:
            self.failed[summary["row_group"]] = summary["error"]
            return
        self.parts[summary["row_group"]] = summary["part"]
        self.articles += summary["articles"]
        self.units += summary["units"]
        self.rows += summary["rows"]

    def reuse(self, row_group: int, part: str) -> None:
        """Count a part an earlier run of the same identity wrote."""
        with storage.open_parquet(part) as parquet:
            metadata = parquet.metadata
        self.parts[row_group] = part
        self.articles += self.expected[row_group]
        self.units += int(metadata.metadata[b"units"])
        self.rows += metadata.num_rows

    @property
    def complete(self) -> bool:
        return len(self.parts) == len(self.expected)


def _finish(config: AnnotateConfig, task: Task, state: ShardState, run_id: str) -> dict[str, Any]:
    """Merge a shard's parts into ``<shard>.parquet``, sorted, write the input records its units
    rejected to ``_rejected/<shard>.parquet``, mark it complete, drop its parts."""
    shard = state.shard
    tables, counts, rejected = [], Counter(), []
    for _, part in sorted(state.parts.items()):
        with storage.open_parquet(part) as parquet:
            tables.append(parquet.read().cast(task.schema))
            notes = json.loads(parquet.schema_arrow.metadata[b"notes"])
        counts.update(notes["counts"])
        rejected += notes["rejected"]
    merged = pa.concat_tables(tables) if tables else task.schema.empty_table()
    merged = merged.sort_by([(c, "ascending") for c in task.sort_keys])
    target = storage.join(config.out, f"{shard['shard']}.parquet")
    storage.write_parquet(merged, target, task.schema)
    rejected_uri = storage.join(config.out, "_rejected", f"{shard['shard']}.parquet")
    if rejected:
        where = {"shard": shard["shard"], "run_id": run_id}
        rows = [{**r, "record": json.dumps(r["record"], default=str), **where} for r in rejected]
        table = pa.Table.from_pylist(rows, schema=schemas.REJECTED)
        storage.write_parquet(table, rejected_uri, schemas.REJECTED)
    else:
        storage.remove(rejected_uri)
    summary = {"source": shard["path"], "articles": state.articles, "units": state.units}
    summary |= {"counts": dict(counts), "rejected": len(rejected)}
    outputs = [target, rejected_uri] if rejected else [target]
    runs.mark_complete(
        config.out, shard["shard"], shard["identity"], outputs, capped=shard["capped"],
        rows=merged.num_rows, run_id=run_id, **summary,
    )  # fmt: skip
    storage.remove_tree(storage.join(config.out, "_parts", shard["shard"]))
    storage.remove(storage.join(config.out, "_errors", f"{shard['shard']}.parquet"))
    return {"name": shard["shard"], **summary, "rows": merged.num_rows, "status": "ok"}


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
        "units": state.units, "rows": 0, "status": "failed",
        "failed_row_groups": [{"row_group": g, "reason": r} for g, r in sorted(failures.items())],
    }  # fmt: skip


def run(task_name: str, config: AnnotateConfig, options: Any = None, log=print) -> dict[str, Any]:
    """Annotate every pending shard of ``config.articles`` with ``config.model``, models fine-tuned for
    task ``task_name`` (``options``: an instance of its ``Options``; None: the defaults); returns the
    run summary.

    The summary (also ``<out>/_run.json``, written for failed runs too) holds ``status`` (``ok`` or
    ``failed``), config, versions, counts (shards, articles, units, rows), the failed shards with
    their failed row groups and reasons, the incomplete inputs, wall time and articles/s.
    """
    task = make_task(task_name, options)
    if getattr(task, "answers_questions", False):
        from biobert_ray import answers

        return answers.run(task, config, log)
    check_models(task_name, config.model)
    if not hasattr(task, "units"):
        raise ValueError(f"task {task_name!r} cannot annotate a corpus yet")
    task = task.for_models([models.info(ref)["metadata"] for ref in config.model])
    started, start = runs.utc_now(), time.perf_counter()
    run_id = runs.new_run_id()
    with Lease(config.out, run_id, "annotate", force=config.force, log=log):
        runs.remove_temporaries(config.out)
        work = plan(task, config, log)
        states = {p["shard"]: ShardState(p) for p in work["pending"]}
        finished: list[dict[str, Any]] = []
        failure = None
        try:
            _annotate(task, config, states, run_id, log, finished)
        except resources.ResourceError:
            raise  # nothing was started: a usage error, not a failed run
        except Exception as exc:  # the run stopped: what is not finished is recorded as failed
            failure = exc
            log(f"annotate: the run stopped: {type(exc).__name__}: {exc}")
        done = {s["name"] for s in finished}
        failed = [_record_failures(config, s, run_id) for name, s in states.items() if name not in done]
        wall = time.perf_counter() - start
        return _summary(task, config, run_id, started, wall, work, finished, failed, failure)


def _annotate(
    task: Task,
    config: AnnotateConfig,
    states: dict[str, ShardState],
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
            {
                "shard": name,
                "path": state.shard["path"],
                "row_group": g,
                "limit": take,
                "side": json.dumps(state.shard["side"]),
            }
            for g, take in state.shard["row_groups"]
            if g not in state.parts
        )
        if state.complete:
            finished.append(_finish(config, task, state, run_id))
    if not work:
        return
    cpus = start(config, log)
    reused = sum(len(s.shard["reused"]) for s in states.values())
    if reused:
        log(f"reusing {reused} row group(s) finished by an earlier run with the same identity")
    digests = {name: state.shard["digest"] for name, state in states.items()}
    progress = Progress("annotate", sum(w["limit"] for w in work), "articles", log)
    failed = 0
    for summary in build(task, config, work, run_id, digests, cpus).iter_rows():
        state = states[summary["shard"]]
        state.add(summary)
        failed += bool(summary["error"])
        progress.update(summary["articles"], note=f"{failed} row groups failed" if failed else "")
        if failed > config.max_failed_row_groups:
            raise RuntimeError(f"more than {config.max_failed_row_groups} row groups failed")
        if not summary["error"] and state.complete:
            finished.append(_finish(config, task, state, run_id))
    progress.close()


def _summary(
    task: Task,
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
            "units": sum(s["units"] for s in shards),
            "rows": sum(s["rows"] for s in shards),
            "rejected_records": sum(s.get("rejected", 0) for s in shards),
            **sum((Counter(s.get("counts", {})) for s in shards), Counter()),
        },
        rate=("articles_per_second", sum(s["articles"] for s in [*finished, *failed])),
        shards=shards,
        run_id=run_id,
        task=task.name,
        task_options=to_dict(task.options),
        unit_name=task.unit_name,
        table=task.table,
        status="ok" if ok else "failed",
        error=f"{type(failure).__name__}: {failure}" if failure else None,
        incomplete_inputs=work["incomplete"],
    )
