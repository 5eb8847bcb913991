"""Cross-validation, BioBERT's protocol for GAD and EU-ADR: fine-tune on each fold's training file, score
on its test file, report every fold, the mean and the standard deviation.

Each fold is one Ray Tune trial of the shared fine-tuning driver (:func:`biobert_ray.finetune.finetune`,
which starts its own Ray Train run) followed by :func:`biobert_ray.evaluation.evaluate`, the pattern
Ray Train V2 documents for tuning. The trial itself reserves no CPU (its Ray Train workers and encode
tasks reserve theirs; :data:`TRIAL_RESOURCES`), so the number of folds trained at once is set
explicitly: as many as the cluster's CPUs (or GPUs) hold for one fold's workers plus its data stage,
or one at a time on a single machine where each fold spreads its workers over all CPUs. A fold whose
model was exported by the same run (same data and settings: :func:`biobert_ray.finetune.exported_by`)
is scored again but not retrained, one trained with other settings is trained anew; an interrupted
fold resumes from its last checkpoint, as fine-tuning does. The standard deviation is the
sample one (``n - 1``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import ray
from ray import tune

from biobert_ray import evaluation, finetune, resources, runs, storage
from biobert_ray.config import CrossvalConfig, EvaluateConfig, FinetuneConfig, to_dict
from biobert_ray.runtime import connect
from biobert_ray.training import raytrain

#: What a trial reserves itself: no CPU (its Ray Train run reserves its own), a little memory, since
#: a Ray bundle cannot be empty.
TRIAL_RESOURCES = {"cpu": 0, "memory": 64 * 1024**2}
#: The fine-tuning settings a fold takes from the cross-validation config.
_SHARED = tuple(
    f.name
    for f in dataclasses.fields(FinetuneConfig)
    if f.name in {g.name for g in dataclasses.fields(CrossvalConfig)} and f.name not in ("out", "run_name")
)


def fold_files(data: str, folds: int) -> list[tuple[int, str, str]]:
    """``(fold, train file, test file)`` for folds ``1..folds`` of ``data`` (``<data>/<k>/train.*`` and
    ``test.*``); FileNotFoundError naming a missing one."""
    found = []
    for fold in range(1, folds + 1):
        train = storage.expand([storage.join(data, str(fold), "train*")])
        test = storage.expand([storage.join(data, str(fold), "test*")])
        if len(train) != 1 or len(test) != 1:
            raise FileNotFoundError(
                f"{data}/{fold}: expected one train.* and one test.* file, found {train + test}"
            )
        found.append((fold, train[0], test[0]))
    return found


def concurrent_folds(config: CrossvalConfig) -> int:
    """How many folds train at once (module docstring); call after Ray is connected."""
    if config.max_concurrent_folds:
        return config.max_concurrent_folds
    cluster = ray.cluster_resources()
    if config.use_gpu:
        return max(1, int(cluster.get("GPU", 0) // config.num_workers))
    per_worker = config.cpus_per_worker or (1.0 if resources.alive_nodes() > 1 else None)
    if per_worker is None:
        return 1
    return max(
        1, math.floor(cluster.get("CPU", 0) / (config.num_workers * per_worker + finetune.ENCODE_CPUS))
    )


def _fold_trial(
    params: dict[str, Any], task: str, options: Any, config: CrossvalConfig, folds: dict[int, tuple[str, str]]
) -> None:
    """One Tune trial: fine-tune fold ``params["fold"]`` (a model this run exported already is kept),
    score it on its test file, report the scores."""
    fold = params["fold"]
    train, test = folds[fold]
    out = storage.join(config.out, f"fold-{fold}")
    shared = {name: getattr(config, name) for name in _SHARED}
    finetune.finetune(task, FinetuneConfig(**shared, train=train, out=out), options, log=lambda *_: None)
    scores = evaluation.evaluate(task, EvaluateConfig(model=out, data=test), options)
    tune.report({"fold": fold, "primary": scores["primary"]["value"], "scores": scores})


class _FoldLines(tune.Callback):
    """Prints one line per finished fold on the driver's console."""

    def __init__(self, log: Callable[[str], Any]) -> None:
        self.log = log

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        primary = result["scores"]["primary"]
        self.log(f"crossval: fold {result['fold']}: {primary['name']} {primary['value']:.4f}")


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """Ray Tune without its console output: its newer reporter prints an experiment table and result
    paths even at ``verbose=0``, the older one (``RAY_AIR_NEW_OUTPUT=0``) prints nothing at that level;
    its INFO log lines are held back too. The fold lines are this module's own."""
    previous, tune_logger = os.environ.get("RAY_AIR_NEW_OUTPUT"), logging.getLogger("ray.tune")
    level = tune_logger.level
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    tune_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        tune_logger.setLevel(level)
        if previous is None:
            del os.environ["RAY_AIR_NEW_OUTPUT"]
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = previous


def crossval(
    task_name: str, config: CrossvalConfig, options: Any = None, log: Callable[[str], Any] | None = None
) -> dict[str, Any]:
    """Run every fold of ``config.data`` for task ``task_name`` (``options``: its ``Options``) as Ray Tune
    trials; returns, and writes to ``<out>/crossval.json``, each fold's scores and the mean and sample
    standard deviation of the primary score (and of precision and recall where the task has them).

    ``log`` (default: the ``print`` of the moment) gets the console lines; Tune pickles it with its
    callbacks, so it is looked up per call: a ``print`` bound when this module was imported no longer
    pickles once another library has replaced ``builtins.print`` (Ray's progress bars do).
    """
    log = log if log is not None else print
    folds = {k: (train, test) for k, train, test in fold_files(config.data, config.folds)}
    connect(config.address)
    parallel = concurrent_folds(config)
    log(f"crossval {task_name}: {len(folds)} folds of {config.data}, {parallel} at a time")
    started, start = runs.utc_now(), time.perf_counter()
    path, filesystem = raytrain.storage_for(storage.join(config.out, "_tune"))
    trainable = tune.with_parameters(_fold_trial, task=task_name, options=options, config=config, folds=folds)
    tuner = tune.Tuner(
        tune.with_resources(trainable, TRIAL_RESOURCES),
        param_space={"fold": tune.grid_search(sorted(folds))},
        tune_config=tune.TuneConfig(max_concurrent_trials=parallel),
        run_config=tune.RunConfig(
            name="crossval", storage_path=path, storage_filesystem=filesystem, verbose=0,
            callbacks=[_FoldLines(log)], failure_config=tune.FailureConfig(fail_fast=True),
        ),
    )  # fmt: skip
    with _quiet_tune():
        results = tuner.fit()
    failed = [r.error for r in results if r.error]
    if failed:
        raise RuntimeError(f"{len(failed)} fold(s) failed; the first: {failed[0]}")
    per_fold = sorted((r.metrics["fold"], r.metrics["scores"]) for r in results)
    headlines = [{"fold": k, "data": folds[k][1], **_headline(s)} for k, s in per_fold]
    summary = {
        "task": task_name,
        "data": config.data,
        "primary": per_fold[0][1]["primary"]["name"],
        "folds": headlines,
        **_mean_sd([_headline(s) for _, s in per_fold]),
        "config": to_dict(config),
        "task_options": to_dict(options) if options is not None else None,
        "started_at": started,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    storage.write_json(summary, storage.join(config.out, "crossval.json"))
    return summary


def _headline(scores: dict[str, Any]) -> dict[str, float]:
    """The primary score of one fold, with precision, recall and F1 of its ``overall`` row if any."""
    row = scores.get("overall", {})
    return {
        "primary": scores["primary"]["value"],
        **{k: row[k] for k in ("precision", "recall", "f1") if k in row},
    }


def _mean_sd(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """``{"mean": {...}, "sd": {...}}`` of every key of ``rows`` (sample sd; 0 for one row)."""
    keys = rows[0].keys()
    mean = {k: statistics.fmean(r[k] for r in rows) for k in keys}
    sd = {k: statistics.stdev(r[k] for r in rows) if len(rows) > 1 else 0.0 for k in keys}
    return {"mean": mean, "sd": sd}
