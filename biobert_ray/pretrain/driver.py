"""``biobert-ray pretrain``: continue masked-LM pretraining of a BERT on an ``articles`` table.

The driver lists the corpus shards, picks the held-out documents (:mod:`biobert_ray.pretrain.corpus`),
prepares the starting model (a BERT checkpoint, or with ``--train-vocab`` a fresh one,
:mod:`biobert_ray.pretrain.vocab`), and runs :func:`biobert_ray.pretrain.loop.train_loop` on a
``TorchTrainer`` (DDP; gloo on CPU, NCCL on GPU). Rank 0 of the last worker group saves the model at
``out`` (a Hugging Face directory with ``biobert_ray.json``), which ``finetune --base-model`` takes.

Run directory: ``<storage_path>/<run_name>`` (default ``<out>.checkpoints/pretrain-<hash of out>``)
holds Ray Train's checkpoints (the last ``keep_checkpoints``), ``metrics.jsonl`` and, with
``--train-vocab``, ``initial_model/``.

Resume semantics:

- ``--resume`` continues the run from its latest checkpoint (model, optimizer, scheduler, step, data
  position); with no checkpoint yet it starts from step 0. Options that change what is trained (corpus,
  text columns, seq_len, base model, masking, held-out size, global batch) must be the same; ``max_steps``
  may grow (the learning-rate schedule is then stretched to the new end). The number of workers may
  change: the data position is global, not per worker.
- Without ``--resume``, a run whose directory already exists is refused (nothing is overwritten).
- After a worker failure, Ray Train restarts the worker group up to ``max_failures`` times and it
  resumes the same way, from the latest checkpoint.

Either way the datasets are re-planned from the checkpoint's data position whenever a worker group
starts: Ray Train calls the dataset factories of :class:`EpochPlan` then, so complete shards are not
read again and in-progress shards emit only their unconsumed sequences.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.train import DataConfig
from ray.train.torch import TorchTrainer

from biobert_ray import console, models, resources, runs, storage
from biobert_ray.config import PretrainConfig, to_dict
from biobert_ray.console import Progress
from biobert_ray.pretrain import corpus, vocab
from biobert_ray.pretrain.loop import CURRENT, EVAL, NEXT, latest_state, train_loop
from biobert_ray.pretrain.packing import PACK_TASK_CPUS, packed_dataset
from biobert_ray.pretrain.position import DataPosition
from biobert_ray.runtime import connect
from biobert_ray.training import raytrain

#: Test hook: the workers of a run started from step 0 raise after this step (a real failure; a
#: restarted or resumed worker group starts from a checkpoint and does not raise again).
FAIL_AT_STEP_ENV = "BIOBERT_RAY_FAIL_AT_STEP"
#: Options a resumed run must share with the checkpoint it resumes from.
FINGERPRINT = (
    "corpus", "text_columns", "seq_len", "base_model", "train_vocab", "scratch_size", "vocab_size",
    "mlm_probability", "whole_word_masking", "eval_documents", "global_batch",
)  # fmt: skip


@dataclass(frozen=True)
class EpochPlan:
    """Dataset factories for Ray Train, planned from the run's latest checkpoint when called.

    ``shards`` are the corpus files in shard-number order. Epoch ``e`` visits them in a permutation
    seeded by ``(seed, e)``; all epochs after the current one use the next epoch's order.
    """

    shards: tuple[str, ...]
    storage_path: str
    run_name: str
    seed: int
    packing: dict[str, Any]

    @property
    def names(self) -> list[str]:
        return [storage.basename(uri) for uri in self.shards]

    def position(self) -> DataPosition:
        """The merged data position of the latest checkpoint (epoch 0, nothing consumed, if none)."""
        ray.data.DataContext.get_current().enable_progress_bars = False  # called in Ray Train's controller
        return self.position_of(latest_state(self.storage_path, self.run_name))

    def position_of(self, state: dict[str, Any] | None) -> DataPosition:
        """The data position saved in checkpoint ``state`` (epoch 0, nothing consumed, if None)."""
        position = DataPosition(**state["position"]) if state else DataPosition()
        position.settle(self.names)
        return position

    def order(self, epoch: int) -> list[int]:
        return [int(i) for i in np.random.default_rng([self.seed, epoch]).permutation(len(self.shards))]

    def current_epoch(self) -> ray.data.Dataset:
        """The unconsumed sequences of the epoch in progress (the whole first epoch on a fresh run)."""
        position = self.position()
        pending = set(position.pending(self.names))
        shards = [(i, self.shards[i]) for i in self.order(position.epoch) if self.names[i] in pending]
        skip = {i: position.done[self.names[i]] for i, _ in shards if self.names[i] in position.done}
        return packed_dataset(shards, skip=skip, **self.packing)

    def next_epochs(self) -> ray.data.Dataset:
        """One whole epoch, iterated once per epoch after the current one."""
        order = self.order(self.position().epoch + 1)
        return packed_dataset([(i, self.shards[i]) for i in order], **self.packing)


def _accumulation(config: PretrainConfig) -> int:
    """Micro-batches per optimizer step on each worker; ``ValueError`` for options that do not fit."""
    if config.train_vocab and config.base_model:
        raise ValueError("--train-vocab starts from scratch: it cannot be combined with --base-model")
    per_pass = config.micro_batch * config.num_workers
    if config.global_batch % per_pass:
        raise ValueError(
            f"global_batch={config.global_batch} is not a multiple of micro_batch={config.micro_batch} x "
            f"num_workers={config.num_workers} = {per_pass}"
        )
    return config.global_batch // per_pass


def _fingerprint(config: PretrainConfig) -> dict[str, Any]:
    """The options in :data:`FINGERPRINT`, as they read back from JSON."""
    options = to_dict(config)
    return json.loads(json.dumps({name: options[name] for name in FINGERPRINT}))


def _check_resume(config: PretrainConfig, run_dir: str, state: dict[str, Any] | None) -> None:
    if not config.resume and storage.exists(run_dir):
        raise ValueError(
            f"run directory {run_dir} already exists: pass --resume to continue that run, "
            "or choose another --run-name or --storage-path"
        )
    if state is None:
        return
    saved = state["run"]
    changed = {k: (saved.get(k), v) for k, v in _fingerprint(config).items() if saved.get(k) != v}
    if changed:
        raise ValueError(f"--resume with options that differ from the checkpoint's (was, now): {changed}")


def _starting_model(config: PretrainConfig, files: list[str], heldout: np.ndarray, run_dir: str, log) -> str:
    """The model reference training starts from: the base model, or a fresh one with ``--train-vocab``."""
    if not config.train_vocab:
        ref = config.base_model or models.default_base_model()
        return str(Path(ref).resolve()) if Path(ref).is_dir() else ref
    initial = storage.join(run_dir, "initial_model")
    if storage.exists(storage.join(initial, models.METADATA_FILE)):
        log(f"initial model: reusing {initial}")
        return initial
    log(f"training a {config.vocab_size}-token WordPiece vocabulary on {len(files)} shard(s) -> {initial}")
    build = ray.remote(num_cpus=1)(vocab.build_initial_model)
    options = {"vocab_size": config.vocab_size, "size": config.scratch_size, "seq_len": config.seq_len}
    ray.get(build.remote(files, config.text_columns, heldout, **options, seed=config.seed, out=initial))
    return initial


def _check_model(ref: str, seq_len: int) -> None:
    from transformers import AutoConfig

    resolved = models.resolve(ref)
    model_config = AutoConfig.from_pretrained(resolved, local_files_only=Path(resolved).is_dir())
    if model_config.model_type != "bert":
        raise ValueError(f"{ref} is a {model_config.model_type!r} model; pretraining needs a BERT checkpoint")
    if seq_len > model_config.max_position_embeddings:
        positions = model_config.max_position_embeddings
        raise ValueError(f"--seq-len {seq_len} exceeds the model's {positions} positions")


def _resume_report(plan: EpochPlan, state: dict[str, Any]) -> dict[str, Any]:
    """Where a resumed run picks up: step, epoch, sequences already consumed in it, shards read."""
    position = plan.position_of(state)
    pending = position.pending(plan.names)
    return {
        "step": state["step"],
        "epoch": position.epoch,
        "sequences_consumed": position.count(),
        "shards_complete": len(plan.names) - len(pending),
        "shards_partial": sum(1 for name in pending if name in position.done),
    }


def _loop_config(
    config: PretrainConfig, plan: EpochPlan, run_dir: str, heldout: np.ndarray
) -> dict[str, Any]:
    """What every worker needs (:func:`biobert_ray.pretrain.loop.train_loop`), JSON-like."""
    settings = (
        "seq_len", "micro_batch", "global_batch", "max_steps", "learning_rate", "weight_decay",
        "adam_epsilon", "seed", "max_grad_norm", "mlm_probability", "whole_word_masking", "checkpoint_every",
        "eval_every", "log_every",
    )  # fmt: skip
    base_model = plan.packing["model_ref"]
    fail_at_step = os.environ.get(FAIL_AT_STEP_ENV)
    return {
        **{name: getattr(config, name) for name in settings},
        "out": storage.absolute(config.out),
        "base_model": base_model,
        "shard_names": plan.names,
        "accumulation": _accumulation(config),
        "warmup_steps": int(config.warmup_ratio * config.max_steps),
        "threads": max(1, math.ceil(config.cpus_per_worker)),
        "eval": bool(len(heldout)),
        "metrics_uri": storage.join(run_dir, "metrics.jsonl"),
        "fingerprint": _fingerprint(config),
        "fail_at_step": int(fail_at_step) if fail_at_step else None,
        "metadata": {
            "task": "mlm",
            "base_model": config.base_model or base_model,
            "corpus": config.corpus,
            "text_columns": list(config.text_columns),
            "seq_len": config.seq_len,
            "heldout_pmids": heldout.tolist(),
            "run_name": plan.run_name,
            "checkpoints": run_dir,
            "config": to_dict(config),
            "versions": runs.versions(),
        },
    }


def run(config: PretrainConfig, log=print) -> dict[str, Any]:
    """Pretrain as ``config`` says; returns the run summary.

    The summary holds ``start_step`` (where this invocation's last worker group started), ``steps``,
    ``epoch``, ``tokens_seen``, ``eval`` (the last held-out loss and accuracy), ``out``, ``run_dir``,
    ``resumed`` (see :func:`_resume_report`; None for a fresh run), ``wall_seconds`` and
    ``tokens_per_second_overall`` (the steps this invocation added over its wall time, start-up and
    retries included) and ``incomplete_inputs`` (corpus shards left out because their ingest did not
    complete). The model's ``biobert_ray.json`` holds the training numbers too.
    """
    started = time.perf_counter()
    accumulation = _accumulation(config)
    out = storage.absolute(config.out)
    storage_path = storage.absolute(config.storage_path or raytrain.default_storage_path(config.out))
    run_name = config.run_name or raytrain.default_run_name(out, "pretrain")
    run_dir = storage.join(storage_path, run_name)
    state = latest_state(storage_path, run_name)
    _check_resume(config, run_dir, state)
    connect(config.address)
    cpus = resources.cpus_per_unit(
        config.cpus_per_worker, config.num_workers, PACK_TASK_CPUS, "--cpus-per-worker", "training worker",
        use_gpu=config.use_gpu, log=log,
    )  # fmt: skip
    config = dataclasses.replace(config, cpus_per_worker=cpus)
    files, incomplete = corpus.shards(config.corpus, config.text_columns)
    for item in incomplete:
        log(f"warning: not reading {item['shard']}: {item['reason']}")
    heldout, heldout_files = corpus.heldout_set(files, config.eval_documents)
    base_model = _starting_model(config, files, heldout, run_dir, log)
    _check_model(base_model, config.seq_len)
    packing = {"model_ref": base_model, "text_columns": config.text_columns, "seq_len": config.seq_len}
    plan = EpochPlan(tuple(files), storage_path, run_name, config.seed, {**packing, "heldout": heldout})
    resumed = _resume_report(plan, state) if state else None
    if resumed:
        log(f"resuming {run_dir} from step {state['step']}: {resumed}")
    datasets: dict[str, Any] = {CURRENT: plan.current_epoch, NEXT: plan.next_epochs}
    if len(heldout):
        held = [(files.index(uri), uri) for uri in heldout_files]
        datasets[EVAL] = packed_dataset(held, heldout=heldout, select="heldout", **packing).materialize()
    log(
        f"pretrain: {len(files)} shard(s), {len(heldout)} held-out documents; {config.num_workers} worker(s) "
        f"x micro-batch {config.micro_batch} x {accumulation} accumulation = {config.global_batch} sequences "
        f"of {config.seq_len} tokens per step, {config.max_steps} steps; run {run_dir}"
    )
    relay = console.Relay()
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={**_loop_config(config, plan, run_dir, heldout), "relay": relay},
        scaling_config=raytrain.scaling_config(config.num_workers, config.use_gpu, config.cpus_per_worker),
        run_config=raytrain.run_config(
            run_name, storage_path, config.max_failures, config.keep_checkpoints, relay=relay
        ),
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=[CURRENT, NEXT]),
    )
    progress = Progress("pretrain", config.max_steps, "steps", log, initial=state["step"] if state else 0)

    def show(record: dict[str, Any]) -> None:  # a bar on a terminal, else every health line
        if "step" in record and progress.drawing:
            note = record["note"].split(" | ", 1)[1]
            progress.update(max(0, record["step"] - progress.done), note=note)
        else:
            progress.write(record.get("line") or record["note"])

    with relay.running(show):
        summary = trainer.fit().return_value
    if progress.drawing:
        progress.update(max(0, config.max_steps - progress.done))
    progress.close()
    wall = time.perf_counter() - started
    trained_tokens = (
        (summary["steps"] - (state or {"step": 0})["step"]) * config.global_batch * config.seq_len
    )
    return {
        **summary,
        "out": out,
        "run_dir": run_dir,
        "resumed": resumed,
        "wall_seconds": round(wall, 1),
        "tokens_per_second_overall": round(trained_tokens / wall, 1),
        "incomplete_inputs": incomplete,
    }
