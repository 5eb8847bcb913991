"""Fine-tuning with Ray Train: any task of ``biobert_ray.tasks``, DDP across workers, CPU or GPU.

The driver reads the training and dev files, encodes the training set into windows with a Ray Data
CPU stage, and starts a ``TorchTrainer``; each worker reads its shard of the windows through
``ray.train.get_dataset_shard``. AdamW with linear warm-up and decay; bf16 autocast on GPU. After
every epoch rank 0 scores the dev set with the task's metric and reports a checkpoint (model,
tokenizer, optimizer, scheduler, epoch) to the run's storage (local or ``s3://``). A worker failure
restarts the workers from the last checkpoint (``FailureConfig``); rerunning the same command after a
crash resumes the same run (same run name and storage). When the run ends, the checkpoint with the
best dev score (the last one without a dev set) is exported to ``out`` as a Hugging Face directory
with ``biobert_ray.json`` metadata.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train
import torch
from ray.data import ExecutionOptions
from ray.train import DataConfig
from ray.train.torch import TorchTrainer

from biobert_ray import console, inference, models, raytrain, resources, runs, storage
from biobert_ray.config import FinetuneConfig, to_dict
from biobert_ray.console import Progress
from biobert_ray.evaluation import evaluate_examples
from biobert_ray.runtime import connect
from biobert_ray.tasks import get_task

STATE_FILE = "training_state.pt"
#: CPUs of each encode task; the same is kept free beside the training workers for Ray Data.
ENCODE_CPUS = 0.5
#: What ``STATE_FILE`` holds: state dicts, tensors and ints only, so it loads with ``weights_only=True``.
STATE_KEYS = frozenset({"optimizer", "scheduler", "epoch", "step"})
logger = logging.getLogger(__name__)


def _encode_batch(batch: dict[str, np.ndarray], task_name: str, tokenizer_ref: str, **kwargs: Any) -> dict:
    """Ray Data stage: a batch of pickled examples (column ``example``) -> one row per training window."""
    task = get_task(task_name)
    examples = [pickle.loads(blob) for blob in batch["example"]]
    per_example = task.encode(examples, models.cached_tokenizer(tokenizer_ref), **kwargs)
    windows = [w for example_windows in per_example for w in example_windows]
    return {"input_ids": [w["input_ids"] for w in windows], "labels": [w["labels"] for w in windows]}


def _train_loop(cfg: dict[str, Any]) -> None:
    """The per-worker loop run by ``TorchTrainer``."""
    context = ray.train.get_context()
    rank = context.get_world_rank()
    say = cfg["relay"].send if rank == 0 else (lambda record: None)
    torch.manual_seed(cfg["seed"])
    torch.set_num_threads(cfg["threads"])
    task = get_task(cfg["task"])
    tokenizer = models.cached_tokenizer(cfg["base_model"])
    restored = raytrain.restore_latest_loadable(
        ray.train.get_checkpoint(),
        lambda directory: _load_checkpoint(directory, task.model_class),
        log=(lambda line: say({"line": line})) if rank == 0 else logger.debug,
    )
    if restored is None:
        model, state = _base_model(cfg, task.model_class), None
    else:
        model, state = restored.value
    # the optimizer is built once, on the model moved to its device, so a restored state lands there too
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"]
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _linear_schedule(cfg["total_steps"], cfg["warmup_steps"])
    )
    start_epoch, resumed_from = 0, None
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = resumed_from = state["epoch"] + 1
        say({"line": f"resuming from the checkpoint of epoch {state['epoch']} ({restored.name})"})
    device = ray.train.torch.get_device()
    shard = ray.train.get_dataset_shard("train")
    step = start_epoch * cfg["steps_per_epoch"]
    for epoch in range(start_epoch, cfg["epochs"]):
        model.train()
        started, seen, losses = time.perf_counter(), 0, []
        batches = shard.iter_batches(
            batch_size=cfg["batch_per_worker"],
            batch_format="numpy",
            local_shuffle_buffer_size=cfg["shuffle_buffer"],
            local_shuffle_seed=cfg["seed"] + epoch,
        )
        for batch in batches:
            windows = [
                {"input_ids": i, "labels": lab}
                for i, lab in zip(batch["input_ids"], batch["labels"], strict=True)
            ]
            inputs = {
                k: v.to(device) for k, v in inference.pad_batch(windows, tokenizer.pad_token_id, True).items()
            }
            with inference.autocast(device):
                loss = model(**inputs).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            seen += len(windows)
            losses.append(loss.item())
            if step % cfg["log_every"] == 0:
                rate = seen * context.get_world_size() / (time.perf_counter() - started)
                note = (
                    f"epoch {epoch + 1}/{cfg['epochs']} loss {np.mean(losses[-cfg['log_every'] :]):.4f} "
                    f"lr {scheduler.get_last_lr()[0]:.2e} {rate:.1f} windows/s"
                )
                say({"step": step, "note": note})
        metrics = {
            "epoch": epoch,
            "step": step,
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
        }
        if resumed_from is not None:
            metrics["resumed_from_epoch"] = resumed_from
        with tempfile.TemporaryDirectory() as directory:
            report_checkpoint = None
            if rank == 0:
                unwrapped = model.module if hasattr(model, "module") else model
                if cfg["dev_examples"]:
                    scores = evaluate_examples(
                        task, unwrapped, tokenizer, cfg["dev_examples"], cfg["dev_windows"],
                        unwrapped.config.id2label, cfg["eval_batch_size"], device,
                    )  # fmt: skip
                    metrics["dev_f1"] = scores["overall"]["f1"]
                    metrics["dev_scores"] = scores
                    say({"line": f"epoch {epoch + 1}: dev F1 {scores['overall']['f1']:.4f}"})
                unwrapped.save_pretrained(directory, safe_serialization=True)
                tokenizer.save_pretrained(directory)
                state = {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch,
                    "step": step,
                }
                torch.save(state, Path(directory) / STATE_FILE)
                report_checkpoint = ray.train.Checkpoint.from_directory(directory)
            # names that sort by epoch, so a resume can fall back to the previous epoch's checkpoint;
            # an epoch trained again after a fallback replaces the files of its unloadable checkpoint
            # (fine-tuning keeps every checkpoint, so Ray Train never deletes the old one under it)
            ray.train.report(
                metrics, checkpoint=report_checkpoint, checkpoint_dir_name=f"checkpoint_epoch_{epoch:04d}"
            )


def _base_model(cfg: dict[str, Any], model_class: Any):
    """The base model with a fresh task head for the run's labels."""
    return models.load_model(
        cfg["base_model"],
        model_class,
        num_labels=len(cfg["label_list"]),
        id2label=dict(enumerate(cfg["label_list"])),
        label2id={label: i for i, label in enumerate(cfg["label_list"])},
    )


def _load_checkpoint(directory: Path, model_class: Any) -> tuple[Any, dict[str, Any]]:
    """(model, training state) of a local checkpoint copy; raises if either does not load.

    The state (AdamW and LambdaLR state dicts, epoch, step) is read with ``weights_only=True``: a
    state file that would build other objects or run code is refused, not executed.
    """
    model = models.load_model(str(directory), model_class)
    state = raytrain.load_torch_state(Path(directory) / STATE_FILE)
    if not isinstance(state, dict) or not state.keys() >= STATE_KEYS:
        found = [str(key) for key in state][:10] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{STATE_FILE} is not a training state (keys {sorted(STATE_KEYS)}; found {found})")
    return model, state


def _linear_schedule(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def _run_identity(config: FinetuneConfig, base_model: str) -> dict[str, Any]:
    """What makes two fine-tuning runs the same run: rerunning it resumes, changing it starts anew."""
    fields = (
        "train",
        "dev",
        "entity_type",
        "epochs",
        "batch_size",
        "learning_rate",
        "weight_decay",
        "warmup_ratio",
    )
    more = ("max_seq_length", "stride", "max_train_samples", "max_eval_samples", "seed")
    return {"base_model": base_model, **{name: getattr(config, name) for name in fields + more}}


def _ordered_ingest() -> ExecutionOptions:
    """Ray Train's ingest options with ``preserve_order``: each worker's shard holds the same windows in
    the same order on every run (its shuffle is seeded), instead of blocks in the order they arrive."""
    options = DataConfig.default_ingest_options()
    options.preserve_order = True
    return options


def finetune(task_name: str, config: FinetuneConfig, log=print) -> dict[str, Any]:
    """Fine-tune ``config.base_model`` on ``config.train`` for task ``task_name``; returns the summary.

    The summary (also saved as ``biobert_ray.json`` in ``config.out``) holds the task, labels, data,
    the best dev scores and epoch, the config and the run name and storage of the checkpoints.
    """
    task = get_task(task_name)
    started = time.perf_counter()
    base_model = config.base_model or models.default_base_model()
    read_options = {"entity_type": config.entity_type} if task_name == "ner" else {}
    train_examples = task.read(config.train, **read_options)[: config.max_train_samples]
    dev_examples = task.read(config.dev, **read_options)[: config.max_eval_samples] if config.dev else []
    label_list = task.labels([*train_examples, *dev_examples])
    label2id = {label: i for i, label in enumerate(label_list)}
    tokenizer = models.cached_tokenizer(base_model)
    encode_args = {"max_length": config.max_seq_length, "stride": config.stride, "label2id": label2id}
    dev_windows = task.encode(dev_examples, tokenizer, **encode_args)

    connect(config.address)
    cpus = resources.cpus_per_unit(
        config.cpus_per_worker, config.num_workers, ENCODE_CPUS, "--cpus-per-worker", "training worker",
        use_gpu=config.use_gpu, log=log,
    )  # fmt: skip
    config = dataclasses.replace(config, cpus_per_worker=cpus)
    items = ray.data.from_items([{"example": pickle.dumps(e)} for e in train_examples])
    # file order, whatever order the encode tasks finish in: the same seed then gives the same model
    items.context.execution_options.preserve_order = True
    train_set = items.map_batches(
        _encode_batch,
        fn_kwargs={"task_name": task_name, "tokenizer_ref": base_model, **encode_args},
        batch_size=512,
        num_cpus=ENCODE_CPUS,
    ).materialize()
    n_windows = train_set.count()
    batch_per_worker = max(1, config.batch_size // config.num_workers)
    steps_per_epoch = math.ceil((n_windows // config.num_workers) / batch_per_worker)
    total_steps = steps_per_epoch * config.epochs
    log(
        f"finetune {task_name}: {len(train_examples)} training examples -> {n_windows} windows, "
        f"{len(dev_examples)} dev examples, labels {label_list}; {config.num_workers} worker(s), "
        f"{total_steps} steps"
    )
    storage_path = config.storage_path or raytrain.default_storage_path(config.out)
    run_name = config.run_name or raytrain.default_run_name(
        config.out, "finetune", _run_identity(config, base_model)
    )
    loop_config = {
        "task": task_name,
        "base_model": base_model,
        "label_list": label_list,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "seed": config.seed,
        "epochs": config.epochs,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "warmup_steps": int(config.warmup_ratio * total_steps),
        "batch_per_worker": batch_per_worker,
        # the whole shard (up to 100k windows): consecutive sentences of one abstract must not fill a batch
        "shuffle_buffer": min(100_000, max(1, n_windows // config.num_workers)),
        "eval_batch_size": 64,
        "log_every": max(1, steps_per_epoch // 5),
        "threads": max(1, math.ceil(config.cpus_per_worker)),
        "dev_examples": dev_examples,
        "dev_windows": dev_windows,
        "relay": console.Relay(),
    }
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config=loop_config,
        scaling_config=raytrain.scaling_config(config.num_workers, config.use_gpu, config.cpus_per_worker),
        run_config=raytrain.run_config(
            run_name,
            storage_path,
            config.max_failures,
            score_attribute="dev_f1" if dev_examples else None,
            relay=loop_config["relay"],
        ),
        datasets={"train": train_set},
        dataset_config=DataConfig(execution_options=_ordered_ingest()),
    )
    progress = Progress(f"finetune {task_name}", total_steps, "steps", log)

    def show(record: dict[str, Any]) -> None:
        if "line" in record:
            progress.write(record["line"])
        else:
            progress.update(max(0, record["step"] - progress.done), note=record["note"])

    with loop_config["relay"].running(show):
        result = trainer.fit()
    progress.update(max(0, total_steps - progress.done))  # steps after the last progress record
    progress.close()
    if dev_examples:
        best, best_metrics = max(result.best_checkpoints, key=lambda pair: pair[1].get("dev_f1", -1.0))
    else:
        best, best_metrics = result.checkpoint, result.metrics
    metadata = {
        "task": task_name,
        "label_list": label_list,
        "entity_types": sorted({label[2:] for label in label_list if label != "O"}),
        "base_model": base_model,
        "train": config.train,
        "dev": config.dev,
        "train_examples": len(train_examples),
        "max_seq_length": config.max_seq_length,
        "stride": config.stride,
        "best_epoch": best_metrics["epoch"],
        "resumed_from_epoch": result.metrics.get("resumed_from_epoch"),
        "dev_scores": best_metrics.get("dev_scores"),
        "run_name": run_name,
        "checkpoints": storage.join(storage_path, run_name),
        "config": to_dict(config),
        "versions": runs.versions(),
        "trained_at": runs.utc_now(),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    with best.as_directory() as directory:
        model = models.load_model(directory, task.model_class)
        models.save(model, models.load_tokenizer(directory), config.out, metadata)
    return metadata
