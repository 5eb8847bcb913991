"""Fine-tuning with Ray Train: any task of ``biobert_ray.tasks``, DDP across workers, CPU or GPU.

The driver reads the training and dev files with the task, encodes the training set into windows
with a Ray Data CPU stage, and starts a ``TorchTrainer``; each worker reads its shard of the windows
through ``ray.train.get_dataset_shard`` and pads its batches with ``Task.collate``. The training
toolkit (:mod:`biobert_ray.training`) gives the optimizer (AdamW with BERT's parameter groups), the
linear schedule, the checkpoint layout and the progress line, as for pretraining; bf16 autocast on
GPU. After every epoch rank 0 scores the dev set with the task's metric and reports a checkpoint to
the run's storage (local or ``s3://``), with ``metrics.jsonl`` beside them. A worker failure restarts
the workers from the last checkpoint that loads (``FailureConfig``); rerunning the same command after
a crash resumes the same run (same run name and storage). When the run ends, the checkpoint with the
best primary dev score (the last one without a dev set) is exported to ``out`` as a Hugging Face
directory with ``biobert_ray.json`` metadata (the task, its options and labels, the run's name);
rerunning a run whose model is exported returns that metadata without starting Ray Train.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from typing import Any

import ray
import ray.train
import torch
from ray import cloudpickle
from ray.data import ExecutionOptions
from ray.train import DataConfig
from ray.train.torch import TorchTrainer

from biobert_ray import allocator, console, inference, models, resources, runs, storage
from biobert_ray.config import FinetuneConfig, to_dict
from biobert_ray.console import Progress
from biobert_ray.evaluation import evaluate_examples
from biobert_ray.runtime import connect
from biobert_ray.tasks import make_task
from biobert_ray.tasks.base import ModelInfo, Task
from biobert_ray.training import checkpoints, optim, raytrain
from biobert_ray.training.progress import Meter, MetricsLog, format_line

#: CPUs of each encode task; the same is kept free beside the training workers for Ray Data.
ENCODE_CPUS = 0.5
logger = logging.getLogger(__name__)


def _encode_batch(
    batch: dict[str, Any], task: Task, tokenizer_ref: str, added_tokens: tuple[str, ...], **kwargs: Any
) -> dict[str, list]:
    """Ray Data stage: a batch of pickled examples (column ``example``) -> one pickled training
    window per row (column ``window``)."""
    examples = [cloudpickle.loads(blob) for blob in batch["example"]]
    per_example = task.encode(examples, models.cached_tokenizer(tokenizer_ref, added_tokens), **kwargs)
    return {"window": [cloudpickle.dumps(w) for example_windows in per_example for w in example_windows]}


def _load(directory, task: Task) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """(state, model, optimizer state) of a fine-tuning checkpoint (:func:`checkpoints.load`)."""
    return checkpoints.load(directory, task.model_class, ("step", "epoch"))


def _train_loop(cfg: dict[str, Any]) -> None:
    """The per-worker loop run by ``TorchTrainer``."""
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    say = cfg["relay"].send if rank == 0 else (lambda record: None)
    torch.manual_seed(cfg["seed"])
    torch.set_num_threads(cfg["threads"])
    allocator.tune()
    task: Task = cfg["task"]
    tokenizer = models.cached_tokenizer(cfg["base_model"], cfg["added_tokens"])
    restored = checkpoints.restore_latest_loadable(
        ray.train.get_checkpoint(),
        lambda directory: _load(directory, task),
        log=(lambda line: say({"line": line})) if rank == 0 else logger.debug,
    )
    if restored is None:
        model, state, optimizer_state = _base_model(cfg, task.model_class), None, None
    else:
        state, model, optimizer_state = restored.value
    # the optimizer is built once, on the model moved to its device, so a restored state lands there too
    model = ray.train.torch.prepare_model(model)
    optimizer = optim.adamw(model, cfg["learning_rate"], cfg["weight_decay"], cfg["adam_epsilon"])
    scheduler = optim.linear_schedule(optimizer, cfg["warmup_steps"], cfg["total_steps"])
    start_epoch, resumed_from = 0, None
    if state is not None:
        optimizer.load_state_dict(optimizer_state["optimizer"])
        scheduler.load_state_dict(optimizer_state["scheduler"])
        start_epoch = resumed_from = state["epoch"] + 1
        say({"line": f"resuming from the checkpoint of epoch {state['epoch']} ({restored.name})"})
    device = ray.train.torch.get_device()
    shard = ray.train.get_dataset_shard("train")
    step = start_epoch * cfg["steps_per_epoch"]
    meter = Meter(device, step, "windows")
    log = MetricsLog(cfg["metrics_uri"], step) if rank == 0 else None

    def record(event: str, epoch: int, **values: Any) -> None:
        if log is not None:
            line = format_line({"event": event, "step": step, "epoch": epoch, **values}, cfg["total_steps"])
            say({"step": step, "note": line} if event == "train" else {"line": line})
            log.append({"event": event, "step": step, "epoch": epoch, **values})

    for epoch in range(start_epoch, cfg["epochs"]):
        model.train()
        batches = shard.iter_batches(
            batch_size=cfg["batch_per_worker"],
            batch_format="numpy",
            local_shuffle_buffer_size=cfg["shuffle_buffer"],
            local_shuffle_seed=cfg["seed"] + epoch,
        )
        for batch in batches:
            windows = [cloudpickle.loads(blob) for blob in batch["window"]]
            inputs = {k: v.to(device) for k, v in task.collate(windows, tokenizer.pad_token_id, True).items()}
            with inference.autocast(device):
                loss = model(**inputs).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            meter.add(loss)
            if step % cfg["log_every"] == 0:
                interval = meter.read(step, cfg["total_steps"], cfg["batch_per_worker"] * world)
                record("train", epoch, learning_rate=scheduler.get_last_lr()[0], **interval)
        metrics: dict[str, Any] = {"epoch": epoch, "step": step}
        if resumed_from is not None:
            metrics["resumed_from_epoch"] = resumed_from
        with tempfile.TemporaryDirectory() as directory:
            report_checkpoint = None
            if rank == 0:
                unwrapped = model.module if hasattr(model, "module") else model
                if cfg["dev_examples"]:
                    info = ModelInfo(cfg["base_model"], dict(unwrapped.config.id2label), {})
                    scores = evaluate_examples(
                        task, unwrapped, info, cfg["dev_examples"], cfg["dev_windows"],
                        tokenizer.pad_token_id, cfg["eval_batch_size"], device,
                    )  # fmt: skip
                    metrics["dev_primary"] = scores["primary"]["value"]
                    metrics["dev_scores"] = scores
                    record(
                        "eval", epoch, scores={f"dev {scores['primary']['name']}": scores["primary"]["value"]}
                    )
                state = {"step": step, "epoch": epoch}
                checkpoints.save(directory, unwrapped, optimizer, scheduler, state, tokenizer)
                log.flush()
                report_checkpoint = ray.train.Checkpoint.from_directory(directory)
            # names that sort by epoch, so a resume can fall back to the previous epoch's checkpoint;
            # an epoch trained again after a fallback replaces the files of its unloadable checkpoint
            # (fine-tuning keeps every checkpoint, so Ray Train never deletes the old one under it)
            ray.train.report(
                metrics, checkpoint=report_checkpoint, checkpoint_dir_name=f"checkpoint_epoch_{epoch:04d}"
            )


def _base_model(cfg: dict[str, Any], model_class: Any):
    """The base model with a fresh task head for the run's labels, and embeddings for the tokens the
    task adds to the tokenizer (initialised to the mean of the others)."""
    model = models.load_model(
        cfg["base_model"],
        model_class,
        num_labels=len(cfg["label_list"]),
        id2label=dict(enumerate(cfg["label_list"])),
        label2id={label: i for i, label in enumerate(cfg["label_list"])},
    )
    if cfg["added_tokens"]:
        model.resize_token_embeddings(len(models.cached_tokenizer(cfg["base_model"], cfg["added_tokens"])))
    return model


def _run_identity(task: Task, config: FinetuneConfig, base_model: str) -> dict[str, Any]:
    """What makes two fine-tuning runs the same run: rerunning it resumes, changing it starts anew."""
    fields = ("train", "dev", "epochs", "batch_size", "learning_rate", "weight_decay", "adam_epsilon")
    more = ("warmup_ratio", "max_seq_length", "stride", "max_train_samples", "max_eval_samples", "seed")
    identity = {name: getattr(config, name) for name in fields + more}
    return {"base_model": base_model, "task": task.name, "task_options": to_dict(task.options), **identity}


def exported_by(out: str, run_name: str) -> dict[str, Any] | None:
    """The metadata of the model at ``out`` if run ``run_name`` exported it (it is complete), else None.

    ``biobert_ray.json`` is written last (:func:`biobert_ray.models.save`) and names the run whose
    identity (:func:`_run_identity`: data, options, hyper-parameters, seed) produced the model, so a
    model of another run, or a half-written one, is not taken for this run's.
    """
    try:
        metadata = storage.read_json(storage.join(out, models.METADATA_FILE))
    except FileNotFoundError:
        return None
    return metadata if metadata.get("run_name") == run_name else None


def _ordered_ingest() -> ExecutionOptions:
    """Ray Train's ingest options with ``preserve_order``: each worker's shard holds the same windows in
    the same order on every run (its shuffle is seeded), instead of blocks in the order they arrive."""
    options = DataConfig.default_ingest_options()
    options.preserve_order = True
    return options


def finetune(task_name: str, config: FinetuneConfig, options: Any = None, log=print) -> dict[str, Any]:
    """Fine-tune ``config.base_model`` on ``config.train`` for task ``task_name`` with its ``options``
    (an instance of the task's ``Options``; None: the defaults); returns the summary.

    The summary (also saved as ``biobert_ray.json`` in ``config.out``) holds the task, its options and
    labels, the data, the best dev scores and epoch, the config and the run name and storage of the
    checkpoints.
    """
    task = make_task(task_name, options)
    started = time.perf_counter()
    base_model = config.base_model or models.default_base_model()
    run_name = config.run_name or raytrain.default_run_name(
        config.out, "finetune", _run_identity(task, config, base_model)
    )
    exported = exported_by(config.out, run_name)
    if exported is not None:
        log(f"finetune {task_name}: {config.out} was exported by this run ({run_name}); nothing to train")
        return exported
    train_examples = task.read(config.train)[: config.max_train_samples]
    dev_examples = task.read(config.dev)[: config.max_eval_samples] if config.dev else []
    label_list = task.labels([*train_examples, *dev_examples])
    label2id = {label: i for i, label in enumerate(label_list)}
    # what the task saves in the model, and the tokens it adds to the tokenizer (relation marker tokens)
    task_metadata = task.metadata(train_examples, label_list)
    added_tokens = tuple(task_metadata.get("added_tokens", ()))
    tokenizer = models.cached_tokenizer(base_model, added_tokens)
    encode_args = {"max_length": config.max_seq_length, "stride": config.stride, "label2id": label2id}
    dev_windows = task.encode(dev_examples, tokenizer, **encode_args)

    connect(config.address)
    cpus = resources.cpus_per_unit(
        config.cpus_per_worker, config.num_workers, ENCODE_CPUS, "--cpus-per-worker", "training worker",
        use_gpu=config.use_gpu, log=log,
    )  # fmt: skip
    config = dataclasses.replace(config, cpus_per_worker=cpus)
    items = ray.data.from_items([{"example": cloudpickle.dumps(e)} for e in train_examples])
    # file order, whatever order the encode tasks finish in: the same seed then gives the same model
    items.context.execution_options.preserve_order = True
    train_set = items.map_batches(
        _encode_batch,
        fn_kwargs={"task": task, "tokenizer_ref": base_model, "added_tokens": added_tokens, **encode_args},
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
    loop_config = {
        "task": task,
        "base_model": base_model,
        "added_tokens": added_tokens,
        "label_list": label_list,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "adam_epsilon": config.adam_epsilon,
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
        "metrics_uri": storage.join(storage.absolute(storage_path), run_name, "metrics.jsonl"),
    }
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config=loop_config,
        scaling_config=raytrain.scaling_config(config.num_workers, config.use_gpu, config.cpus_per_worker),
        run_config=raytrain.run_config(
            run_name,
            storage_path,
            config.max_failures,
            score_attribute="dev_primary" if dev_examples else None,
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
        best, best_metrics = max(
            result.best_checkpoints, key=lambda pair: pair[1].get("dev_primary", float("-inf"))
        )
    else:
        best, best_metrics = result.checkpoint, result.metrics
    metadata = {
        "task": task_name,
        "task_options": to_dict(task.options),
        "label_list": label_list,
        **task_metadata,
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
