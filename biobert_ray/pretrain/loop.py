"""The Ray Train worker loop of pretraining: MLM steps, evaluation, checkpoints, the final model.

Each worker reads three datasets through ``ray.train.get_dataset_shard``: ``current_epoch`` (the
rest of the epoch in progress, split across workers), then ``next_epochs`` (whole epochs, split,
iterated as often as needed) and ``eval`` (the held-out sequences, not split: worker ``r`` evaluates
batches ``r, r + world, ...``). Micro-batches of packed sequences are masked on the CPU with a
generator seeded by ``(seed, step, rank, micro-batch)`` and accumulated into optimizer steps of
``global_batch`` sequences; gradients are synchronised once per step and clipped. An epoch's stream
ends for all workers at once (Ray's equal split), leaving at most ``world - 1`` sequences unsplit
and ``micro_batch - 1`` per worker in a partial micro-batch unused in that epoch; accumulation
carries over into the next epoch.

A checkpoint (every ``checkpoint_every`` steps and at the end) has the layout of
:mod:`biobert_ray.training.checkpoints`; its ``state.json`` holds the step, tokens seen, the merged
data position of all workers, the last evaluation and the run's fingerprint. Rank 0
writes it and reports it to Ray Train; a restarted or resumed worker group loads the latest one
through ``ray.train.get_checkpoint()`` or, if that one does not load, the next older one kept (the
driver's :func:`latest_state` picks the same one for the data plan). A step checkpointed again after
such a fallback gets a directory of its own (``checkpoint_00000100_1``).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from transformers import BertForMaskedLM

from biobert_ray import allocator, inference, models, runs
from biobert_ray.pretrain.masking import Masker
from biobert_ray.pretrain.mlm import MaskedLMLoss
from biobert_ray.pretrain.position import DataPosition
from biobert_ray.training import checkpoints, optim, raytrain
from biobert_ray.training.progress import Meter, MetricsLog, all_reduce, distributed, format_line

CURRENT, NEXT, EVAL = "current_epoch", "next_epochs", "eval"
logger = logging.getLogger(__name__)


def latest_state(storage_path: str, run_name: str) -> dict[str, Any] | None:
    """``state.json`` of the run's newest checkpoint that loads, or None if it has no checkpoint.

    The same rule as the workers' restore (:meth:`PretrainWorker._restore`): the latest registered
    checkpoint, or, when it does not load, the next older one the run kept (each skipped one is
    logged). The driver's resume check and the data plan (:class:`biobert_ray.pretrain.EpochPlan`)
    then start from the same data position as the workers. Checking that a checkpoint loads reads it
    whole (model and optimizer state), as a worker does. Raises
    :class:`biobert_ray.training.checkpoints.CheckpointLoadError` when no checkpoint loads.
    """
    path, filesystem = raytrain.storage_for(storage_path)
    # reading a run logs Ray's "a run snapshot was found ... to start a new run, delete it" advice
    quiet = logging.getLogger("ray.train.v2._internal.execution.checkpoint.checkpoint_manager")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        result = ray.train.Result.from_path(f"{path.rstrip('/')}/{run_name}", storage_filesystem=filesystem)
    except RuntimeError:  # no run directory, or no checkpoint registered in it yet
        return None
    finally:
        quiet.setLevel(level)
    restored = checkpoints.restore_latest_loadable(
        result.checkpoint, lambda directory: load_checkpoint(directory)[0]
    )
    return None if restored is None else restored.value


def load_checkpoint(directory: Path) -> tuple[dict[str, Any], BertForMaskedLM, dict[str, Any]]:
    """(state, model, optimizer state) of a local checkpoint copy (:func:`checkpoints.load`); raises
    if any of them does not load. Used by the workers to restore and by :func:`latest_state` to pick
    the same checkpoint."""
    return checkpoints.load(directory, BertForMaskedLM, ("step", "tokens_seen", "position", "run"))


def _gather(obj: Any) -> list[Any]:
    """``obj`` from every worker, in rank order."""
    if distributed():
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, obj)
        return gathered
    return [obj]


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


class PretrainWorker:
    """One Ray Train worker's model, optimizer, data position and progress; :meth:`run` trains."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        torch.set_num_threads(cfg["threads"])
        allocator.tune()
        context = ray.train.get_context()
        self.cfg, self.rank, self.world = cfg, context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()
        self.tokenizer = tokenizer = models.load_tokenizer(cfg["base_model"])
        self.masker = Masker.from_tokenizer(tokenizer, cfg["mlm_probability"], cfg["whole_word_masking"])
        self.skipped_checkpoints: tuple[str, ...] = ()
        state, model, optimizer_state = self._restore()
        if len(tokenizer) > model.config.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} ids, the model only {model.config.vocab_size}")
        self.model = model
        self.loss = ray.train.torch.prepare_model(MaskedLMLoss(model))
        self.optimizer = optim.adamw(model, cfg["learning_rate"], cfg["weight_decay"], cfg["adam_epsilon"])
        self.scheduler = optim.linear_schedule(self.optimizer, cfg["warmup_steps"], cfg["max_steps"])
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state["optimizer"])
            self.scheduler.load_state_dict(optimizer_state["scheduler"])
        self.step = self.start_step = state["step"]
        self.tokens_seen = state["tokens_seen"]
        self.position = DataPosition(**state["position"])
        self.position.settle(cfg["shard_names"])
        self.last_eval: dict[str, Any] | None = state.get("eval")
        self.meter = Meter(self.device, self.step, "tokens")
        self.log = MetricsLog(cfg["metrics_uri"], self.step) if self.rank == 0 else None

    def _restore(self) -> tuple[dict[str, Any], BertForMaskedLM, dict | None]:
        """(state, model, optimizer state) from the newest checkpoint that loads, or a fresh start.

        A checkpoint that fails to load is logged and the next older one kept is used
        (:func:`biobert_ray.checkpoints.restore_latest_loadable`), as :func:`latest_state` does for the
        data plan.
        """
        restored = checkpoints.restore_latest_loadable(
            ray.train.get_checkpoint(),
            load_checkpoint,
            log=logger.warning if self.rank == 0 else logger.debug,
        )
        if restored is None:
            model = models.load_model(self.cfg["base_model"], BertForMaskedLM)
            return {"step": 0, "tokens_seen": 0, "position": {"epoch": 0}}, model, None
        # a step trained again after skipping an unloadable checkpoint must not reuse its directory
        self.skipped_checkpoints = restored.skipped
        return restored.value

    def micro_batches(self) -> Iterator[torch.Tensor]:
        """Input ids of this worker's micro-batches, epoch after epoch, recording what it consumes."""
        names, dataset = self.cfg["shard_names"], CURRENT
        while True:
            count = 0
            for batch in ray.train.get_dataset_shard(dataset).iter_torch_batches(
                batch_size=self.cfg["micro_batch"], drop_last=True, device="cpu", prefetch_batches=2
            ):
                self._consume(names, batch["shard"].numpy(), batch["index"].numpy(), batch["last"].numpy())
                count += 1
                yield batch["input_ids"].long()
            if dataset == NEXT and count == 0:
                raise ValueError(
                    f"the corpus packs into fewer than micro_batch={self.cfg['micro_batch']} sequences per "
                    f"worker: use a larger corpus, a smaller --seq-len or --micro-batch"
                )
            self.position.next_epoch()
            dataset = NEXT

    def _consume(self, names: list[str], shards: np.ndarray, indices: np.ndarray, last: np.ndarray) -> None:
        """Record sequences as consumed; a sequence consumed before in this epoch is an error."""
        for shard in np.unique(shards):
            rows = shards == shard
            if self.position.consumed(names[shard], indices[rows]).any():
                raise RuntimeError(
                    f"a sequence of {names[shard]} came twice in epoch {self.position.epoch}: "
                    "the data plan does not match the checkpoint"
                )
            self.position.add(names[shard], indices[rows], last[rows])

    def train_step(self, batches: Iterator[torch.Tensor]) -> None:
        """One optimizer step over ``accumulation`` micro-batches; gradients synchronised once."""
        accumulation = self.cfg["accumulation"]
        ddp = isinstance(self.loss, DistributedDataParallel)
        for micro in range(accumulation):
            generator = torch.Generator().manual_seed(_seed(self.cfg["seed"], self.step, self.rank, micro))
            inputs, labels = self.masker(next(batches), generator)
            sync = self.loss.no_sync() if ddp and micro < accumulation - 1 else contextlib.nullcontext()
            with sync:
                with inference.autocast(self.device):
                    loss, correct, labelled = self.loss(inputs.to(self.device), labels.to(self.device))
                (loss / accumulation).backward()
            self.meter.add(loss, correct, labelled)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg["max_grad_norm"])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += self.cfg["global_batch"] * self.cfg["seq_len"]

    def evaluate(self) -> dict[str, Any]:
        """Held-out MLM loss and accuracy (token-weighted, all workers), with fixed masks."""
        module = self.loss.module if isinstance(self.loss, DistributedDataParallel) else self.loss
        module.eval()
        sums = torch.zeros(4, dtype=torch.float64)  # loss x labelled tokens, correct, labelled, sequences
        batches = ray.train.get_dataset_shard(EVAL).iter_torch_batches(
            batch_size=self.cfg["micro_batch"], device="cpu"
        )
        with torch.no_grad():
            for i, batch in enumerate(batches):
                if i % self.world != self.rank:
                    continue
                generator = torch.Generator().manual_seed(_seed(self.cfg["seed"], 2**31, i))
                inputs, labels = self.masker(batch["input_ids"].long(), generator)
                with inference.autocast(self.device):
                    loss, correct, labelled = module(inputs.to(self.device), labels.to(self.device))
                n = labelled.item()
                sums += torch.tensor([loss.item() * n, correct.item(), n, len(inputs)], dtype=torch.float64)
        module.train()
        loss_sum, correct, labelled, sequences = all_reduce(sums.to(self.device)).tolist()
        return self._record(
            "eval",
            loss=loss_sum / max(labelled, 1),
            mlm_accuracy=correct / max(labelled, 1),
            sequences=int(sequences),
            masked_tokens=int(labelled),
        )

    def _record(self, event: str, **values: Any) -> dict[str, Any]:
        """A metrics record; rank 0 prints it and keeps it for ``metrics.jsonl``."""
        record = {"event": event, "step": self.step, "epoch": self.position.epoch, **values}
        if self.log is not None:
            line = format_line(record, self.cfg["max_steps"])
            self.cfg["relay"].send({"step": self.step, "note": line} if event == "train" else {"line": line})
            self.log.append(record)
        return record

    def checkpoint(self) -> None:
        """Merge the workers' data positions; rank 0 saves and reports the checkpoint."""
        self.position = DataPosition.merge(_gather(self.position.to_dict()))
        metrics = {"step": self.step, "epoch": self.position.epoch, "tokens_seen": self.tokens_seen}
        if self.rank != 0:
            ray.train.report(metrics)
            return
        state = {
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "position": self.position.to_dict(),
            "eval": self.last_eval,
            "run": self.cfg["fingerprint"],
            "saved_at": runs.utc_now(),
        }
        with tempfile.TemporaryDirectory() as directory:
            checkpoints.save(directory, self.model, self.optimizer, self.scheduler, state)
            self.log.flush()
            ray.train.report(
                metrics,
                checkpoint=ray.train.Checkpoint.from_directory(directory),
                checkpoint_dir_name=checkpoints.unused_checkpoint_name(
                    f"checkpoint_{self.step:08d}", self.skipped_checkpoints
                ),
            )

    def run(self) -> dict[str, Any]:
        """Train to ``max_steps``, then rank 0 saves the model at ``out``; returns the run's numbers."""
        cfg = self.cfg
        if self.step < cfg["max_steps"]:
            batches = self.micro_batches()
            while self.step < cfg["max_steps"]:
                self.train_step(batches)
                done = self.step == cfg["max_steps"]
                if self.step % cfg["log_every"] == 0 or done:
                    interval = self.meter.read(
                        self.step, cfg["max_steps"], cfg["global_batch"] * cfg["seq_len"]
                    )
                    lr = self.scheduler.get_last_lr()[0]
                    self._record("train", learning_rate=lr, tokens_seen=self.tokens_seen, **interval)
                if cfg["eval"] and (self.step % cfg["eval_every"] == 0 or done):
                    self.last_eval = self.evaluate()
                if self.step % cfg["checkpoint_every"] == 0 or done:
                    self.checkpoint()
                if cfg["fail_at_step"] == self.step and self.start_step == 0:
                    raise RuntimeError(f"injected failure after step {self.step} (BIOBERT_RAY_FAIL_AT_STEP)")
        summary = {
            "start_step": self.start_step,
            "steps": self.step,
            "epoch": self.position.epoch,
            "tokens_seen": self.tokens_seen,
            "eval": self.last_eval,
        }
        if self.rank == 0:
            self.log.flush()
            metadata = {**cfg["metadata"], **summary, "trained_at": runs.utc_now()}
            models.save(self.model, self.tokenizer, cfg["out"], metadata)
        if distributed():
            dist.barrier()  # no worker leaves (and tears its process group down) before rank 0 is done
        return summary


def train_loop(cfg: dict[str, Any]) -> dict[str, Any]:
    """Ray Train entry point: build this worker's state from the latest checkpoint (if any) and train."""
    return PretrainWorker(cfg).run()
