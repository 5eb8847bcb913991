"""The Ray Data chain of corpus annotation, with every resource setting in one place.

See :mod:`biobert_ray.annotate.stages` for what each stage does. Here: one block per row group (the
first stage reads one work item at a time, later stages take whole blocks), the actor pool (one GPU
per actor on GPU nodes), CPUs per stage, batch sizes, and the bounds on retries: a task whose process
died is retried up to :data:`RETRIES` more times (the predict stage on a restarted actor); a row group
that still fails is dropped from the stream (``max_errored_blocks``), which the driver sees as a
missing summary; when more than ``--max-failed-row-groups`` fail, the run stops, so nothing retries
for ever.
"""

from __future__ import annotations

import os
from typing import Any

import ray

from biobert_ray import models, resources
from biobert_ray.annotate import stages
from biobert_ray.annotate.plan import batch_size
from biobert_ray.config import AnnotateConfig
from biobert_ray.runtime import connect
from biobert_ray.tasks.base import Task

#: Extra attempts of a task (and of an actor call, on a restarted actor) after its process died.
RETRIES = 2
#: CPUs of each of the two CPU stages (read + units + encode, decode + write).
STAGE_CPUS = 0.25


def tokenizer_groups(
    refs: tuple[str, ...], max_seq_length: int | None
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Models that share a tokenizer and window length share one encoding: ``(groups, ref -> group key)``."""
    groups: dict[str, dict[str, Any]] = {}
    membership: dict[str, str] = {}
    for ref in refs:
        info = models.info(ref)
        max_length = max_seq_length or info["max_seq_length"]
        key = f"{info['tokenizer_key']}_{max_length}"
        groups.setdefault(key, {"tokenizer_ref": ref, "max_length": max_length})
        membership[ref] = key
    return groups, membership


def start(config: AnnotateConfig, log) -> float:
    """Connect to Ray (``config.address``) and size the model actors: the CPUs each reserves, keeping
    :data:`STAGE_CPUS` for each of the two CPU stages (:func:`biobert_ray.resources.cpus_per_unit`)."""
    connect(config.address)
    return resources.cpus_per_unit(
        config.cpus_per_actor, config.num_actors, 2 * STAGE_CPUS, "--cpus-per-actor", "model actor",
        use_gpu=config.use_gpu, log=log,
    )  # fmt: skip


def build(
    task: Task,
    config: AnnotateConfig,
    work: list[dict[str, Any]],
    run_id: str,
    digests: dict[str, str],
    cpus_per_actor: float,
) -> ray.data.Dataset:
    """The chain over ``work``: one ``{shard, path, row_group, limit}`` item per row group to annotate.

    ``digests`` maps each shard to its identity digest (the name of its parts). Yields one
    :data:`biobert_ray.annotate.stages.SUMMARY` row per row group that was not dropped.
    """
    groups, membership = tokenizer_groups(config.model, config.max_seq_length)
    refs = list(config.model)
    kill_at = os.environ.get(stages.KILL_AT_PMID_ENV)
    dataset = ray.data.from_items(work, override_num_blocks=len(work))
    # Retries are bounded per row group. Ray Data 2.60 takes max_retries / max_restarts /
    # max_task_retries only through map_batches' ray_remote_args (deprecated, removed in 2.64: pyproject
    # pins ray<2.64); its actor default retries every task for ever. A row group whose process died
    # after its retries is dropped (the driver records it), up to a bound.
    dataset.context.max_errored_blocks = config.max_failed_row_groups
    return (
        dataset.map_batches(
            stages.read_and_encode, fn_kwargs={"task": task, "groups": groups, "stride": config.stride},
            batch_size=1, batch_format="numpy", num_cpus=STAGE_CPUS, max_retries=RETRIES,
        )
        .map_batches(
            stages.Predictor,
            fn_constructor_kwargs={
                "task": task, "refs": refs, "groups": membership, "batch_size": batch_size(config),
                "use_gpu": config.use_gpu, "quantize": config.quantize,
                "threads": max(1, round(cpus_per_actor)), "precision": config.precision,
                "kill_at_pmid": int(kill_at) if kill_at else None,
            },
            # one row group at a time per actor: a process that dies takes only its own row group with
            # it, not a queued one (which would spend its retries on another's fault)
            compute=ray.data.ActorPoolStrategy(size=config.num_actors, max_tasks_in_flight_per_actor=1),
            batch_size=None, batch_format="pyarrow",
            num_gpus=1 if config.use_gpu else 0, num_cpus=cpus_per_actor,
            max_restarts=-1, max_task_retries=RETRIES,
        )
        .map_batches(
            stages.decode_and_write,
            fn_kwargs={
                "task": task, "refs": refs, "groups": membership, "out": config.out, "run_id": run_id,
                "digests": digests,
            },
            batch_size=None, batch_format="pyarrow", num_cpus=STAGE_CPUS, max_retries=RETRIES,
        )
    )  # fmt: skip
