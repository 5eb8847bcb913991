"""``annotate qa``: answer a file of questions over an articles table into the ``answers`` table.

For each question batch (:mod:`biobert_ray.answers.plan`) that is not already complete with the same
identity, the driver writes its work lists, then runs the annotation chain of
:mod:`biobert_ray.annotate.build` over the row groups that hold its articles, once per pass: each work
item is one row group of one articles shard, read with the batch's work rows for that shard.

- **span pass**: the QA models run in the actor pool over the (question, title) and (question,
  abstract) windows of the factoid and list questions; each row group's answer spans
  (``schemas.QA_CANDIDATES``) are written as a part;
- **yes/no pass** (with ``--yesno-model``): the yes/no model reads each yes/no question with the
  abstracts of its articles (:mod:`biobert_ray.answers.votes`); each row group's class probabilities
  (``schemas.YESNO_VOTES``) are written as a part.

Parts are ``<out>/_parts/<batch>/<pass>/<shard>/<identity>-<row group>.parquet``. All batches share one
chain per pass, so each model is loaded once. When every part of a batch is there, its spans and votes
are merged per question (:mod:`biobert_ray.answers.merge`) into ``<out>/<batch>.parquet``
(``schemas.ANSWERS``), its completion marker ``_done/<batch>.json`` is written last, and its parts and
work lists are removed. A batch with a failed row group is recorded in
``_errors/<batch>.parquet`` and left incomplete; a rerun reuses the parts it has and redoes the rest.
``_run.json`` and the lease are as for every annotation run (:mod:`biobert_ray.annotate.driver`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from biobert_ray import models, resources, runs, schemas, storage
from biobert_ray.annotate.build import build, start
from biobert_ray.annotate.driver import check_models
from biobert_ray.annotate.plan import model_identity, part_uri
from biobert_ray.answers import merge, plan
from biobert_ray.answers.votes import YesNoVotes
from biobert_ray.config import AnnotateConfig, to_dict
from biobert_ray.console import Progress
from biobert_ray.lease import Lease
from biobert_ray.tasks.base import ModelInfo, Task
from biobert_ray.tasks.qa.questions import Question, read_questions
from biobert_ray.tasks.qa.task import QaTask
from biobert_ray.tasks.qa.yesno import YesNoOptions

#: Options that name inputs rather than change answers (the batch identity has the inputs' contents,
#: and every model's fingerprint).
_LOCATIONS = ("questions", "index", "yesno_model")


@dataclass
class Batch:
    """The driver's view of one pending question batch."""

    name: str
    questions: list[Question]
    identity: dict[str, Any]
    digest: str
    notes: dict[str, str]
    items: list[dict[str, Any]]
    parts: dict[str, str] = field(default_factory=dict)  # item key -> part URI
    failed: dict[str, str] = field(default_factory=dict)  # item key -> reason
    units: int = 0

    @staticmethod
    def key(item: dict[str, Any]) -> str:
        return f"{item['shard']}#{item['row_group']}"

    @property
    def complete(self) -> bool:
        return len(self.parts) == len(self.items)


def _passes(task: QaTask, config: AnnotateConfig) -> dict[str, tuple[Task, AnnotateConfig]]:
    """Each pass's chain task and configuration (its models): ``span``, and ``yesno`` with a yes/no
    model."""
    found: dict[str, tuple[Task, AnnotateConfig]] = {"span": (task, config)}
    if task.options.yesno_model:
        votes = YesNoVotes(YesNoOptions(max_query_length=task.options.max_query_length))
        found["yesno"] = (votes, replace(config, model=(task.options.yesno_model,)))
    return found


def _pending(
    task: QaTask, config: AnnotateConfig, questions: list[Question], log
) -> tuple[list[Batch], list[dict[str, Any]]]:
    """The batches to answer (with their work written) and the complete ones skipped."""
    options = task.options
    chains = _passes(task, config)
    read = [q for q in questions if any(q.kind in plan.PASSES[name] for name in chains)]
    locator = plan.Locator(config.articles, options.index, read, log)
    every_model = tuple(ref for _, chain_config in chains.values() for ref in chain_config.model)
    model_ids, row_options = model_identity(task, replace(config, model=every_model))
    row_options["task_options"] = {
        k: v for k, v in row_options["task_options"].items() if k not in _LOCATIONS
    }
    shard_uris = {runs.shard_name(uri): uri for uri in runs.complete_shards(config.articles)[0]}
    pending, skipped = [], []
    for name, batch in plan.batches(questions, options.questions_per_batch):
        identity = plan.batch_identity(batch, locator, model_ids, row_options)
        done, why = (None, "overwrite") if config.overwrite else runs.check_shard(config.out, name, identity)
        if done is not None:
            log(f"skip {name}: complete ({done['rows']} answer rows)")
            skipped.append({**done, "status": "skipped"})
            continue
        if why not in ("new", "overwrite"):
            log(f"redo {name}: {why}")
        work, notes = plan.work_list(batch, locator, options.top_docs, list(chains))
        digest = runs.digest(identity)
        items = []
        for kind, by_shard in work.items():
            work_uris = plan.write_work(config.out, name, kind, by_shard)
            items += [
                {"shard": f"{name}/{kind}/{shard}", "pass": kind, "path": shard_uris[shard], "row_group": g,
                 "limit": rows, "side": json.dumps({"work": work_uris[shard]})}
                for shard in sorted(by_shard)
                for g, rows in plan.row_groups_with(shard_uris[shard], {r["pmid"] for r in by_shard[shard]})
            ]  # fmt: skip
        state = Batch(name, batch, identity, digest, notes, items)
        for item in items:
            part = part_uri(config.out, item["shard"], digest, item["row_group"])
            if not config.overwrite and storage.exists(part):
                state.parts[Batch.key(item)] = part
        pending.append(state)
    return pending, skipped


def _thresholds(task: QaTask, refs: tuple[str, ...]) -> dict[str, float]:
    """Each model's list threshold (``--list-threshold``, else its dev choice, else the default)."""
    return {
        ref: task._list_threshold(ModelInfo(ref, models.info(ref)["id2label"], models.info(ref)["metadata"]))
        for ref in refs
    }


def _finish(task: QaTask, config: AnnotateConfig, batch: Batch, run_id: str) -> dict[str, Any]:
    """Merge a batch's parts into ``<out>/<batch>.parquet``, mark it complete, drop its parts and work."""
    found: dict[str, list[dict[str, Any]]] = {"span": [], "yesno": []}
    for item in batch.items:
        with storage.open_parquet(batch.parts[Batch.key(item)]) as parquet:
            found[item["pass"]] += parquet.read().to_pylist()
            batch.units += int(parquet.schema_arrow.metadata[b"units"])
    rows = merge.answer_rows(
        batch.questions,
        found["span"],
        found["yesno"],
        batch.notes,
        _thresholds(task, config.model),
        task.options.top_answers,
        run_id,
    )
    target = storage.join(config.out, f"{batch.name}.parquet")
    storage.write_parquet(pa.Table.from_pylist(rows, schema=schemas.ANSWERS), target, schemas.ANSWERS)
    answered = len({r["question_id"] for r in rows if r.get("answer") is not None})
    summary = {"questions": len(batch.questions), "answered": answered, "units": batch.units,
               "row_groups": len(batch.items)}  # fmt: skip
    runs.mark_complete(
        config.out, batch.name, batch.identity, [target], rows=len(rows), run_id=run_id, **summary
    )
    for folder in ("_parts", "_work"):
        storage.remove_tree(storage.join(config.out, folder, batch.name))
    storage.remove(storage.join(config.out, "_errors", f"{batch.name}.parquet"))
    return {"name": batch.name, **summary, "rows": len(rows), "status": "ok"}


def _record_failures(config: AnnotateConfig, batch: Batch, run_id: str) -> dict[str, Any]:
    """Write a failed batch's ``_errors/<batch>.parquet`` (one row per unfinished row group)."""
    reasons = {
        Batch.key(item): batch.failed.get(
            Batch.key(item), "not finished: its process died after its retries, or the run stopped first"
        )
        for item in batch.items
        if Batch.key(item) not in batch.parts
    }
    rows = [
        {
            "shard": key.rsplit("#", 1)[0],
            "row_group": int(key.rsplit("#", 1)[1]),
            "reason": reason,
            "run_id": run_id,
        }
        for key, reason in sorted(reasons.items())
    ]
    errors = storage.join(config.out, "_errors", f"{batch.name}.parquet")
    storage.write_parquet(
        pa.Table.from_pylist(rows, schema=schemas.ROW_GROUP_ERRORS), errors, schemas.ROW_GROUP_ERRORS
    )
    failures = [{"row_group": key, "reason": reason} for key, reason in sorted(reasons.items())]
    return {"name": batch.name, "questions": len(batch.questions), "rows": 0, "status": "failed",
            "failed_row_groups": failures}  # fmt: skip


def _answer(
    task: QaTask, config: AnnotateConfig, batches: list[Batch], run_id: str, log, finished: list
) -> None:
    """Run each pass's chain over every row group still to do; finished batches' summaries go to
    ``finished``."""
    by_shard = {}
    work = []
    for batch in batches:
        for item in batch.items:
            by_shard[item["shard"]] = batch
            if Batch.key(item) not in batch.parts:
                work.append(item)
        if batch.complete:
            finished.append(_finish(task, config, batch, run_id))
    if not work:
        return
    cpus = start(config, log)
    digests = {item["shard"]: by_shard[item["shard"]].digest for item in work}
    progress = Progress("annotate qa", len(work), "row groups", log)
    failed = 0
    for kind, (chain_task, chain_config) in _passes(task, config).items():
        todo = [item for item in work if item["pass"] == kind]
        summaries = build(chain_task, chain_config, todo, run_id, digests, cpus).iter_rows() if todo else ()
        for summary in summaries:
            batch = by_shard[summary["shard"]]
            key = f"{summary['shard']}#{summary['row_group']}"
            if summary["error"]:
                batch.failed[key] = summary["error"]
                failed += 1
            else:
                batch.parts[key] = summary["part"]
            progress.update(1, note=f"{failed} row groups failed" if failed else "")
            if failed > config.max_failed_row_groups:
                raise RuntimeError(f"more than {config.max_failed_row_groups} row groups failed")
            if not summary["error"] and batch.complete:
                finished.append(_finish(task, config, batch, run_id))
    progress.close()


def run(task: QaTask, config: AnnotateConfig, log=print) -> dict[str, Any]:
    """Answer the questions of ``--questions`` over ``config.articles`` with the QA models of
    ``config.model`` into ``config.out``; returns the run summary (also ``<out>/_run.json``)."""
    if not task.options.questions:
        raise ValueError("annotate qa needs --questions: a JSON-lines or BioASQ JSON file of questions")
    check_models(task.name, config.model)
    if task.options.yesno_model:
        check_models("yesno", (task.options.yesno_model,))
    questions = read_questions(task.options.questions)
    started, start = runs.utc_now(), time.perf_counter()
    run_id = runs.new_run_id()
    with Lease(config.out, run_id, "annotate", force=config.force, log=log):
        runs.remove_temporaries(config.out)
        pending, skipped = _pending(task, config, questions, log)
        finished: list[dict[str, Any]] = []
        failure = None
        try:
            _answer(task, config, pending, run_id, log, finished)
        except resources.ResourceError:
            raise
        except Exception as exc:
            failure = exc
            log(f"annotate qa: the run stopped: {type(exc).__name__}: {exc}")
        done = {s["name"] for s in finished}
        failed = [_record_failures(config, b, run_id) for b in pending if b.name not in done]
        counts = {
            "batches_processed": len(finished),
            "batches_skipped": len(skipped),
            "batches_failed": len(failed),
        }
        batches = [*finished, *failed, *skipped]
        counts |= {"batches": len(batches), "questions": len(questions)}
        counts |= {key: sum(b.get(key, 0) for b in batches) for key in ("answered", "units", "rows")}
        return runs.write_summary(
            config.out, "annotate", config, started, time.perf_counter() - start, counts=counts,
            rate=("questions_per_second", sum(b["questions"] for b in [*finished, *failed])),
            shards=batches, run_id=run_id, task=task.name, task_options=to_dict(task.options),
            unit_name=task.unit_name, table=task.table,
            status="ok" if not failed and failure is None else "failed",
            error=f"{type(failure).__name__}: {failure}" if failure else None,
        )  # fmt: skip
