"""Score a fine-tuned model on a labelled file with its task's official metric."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch

from biobert_ray import allocator, inference, models, storage
from biobert_ray.config import EvaluateConfig
from biobert_ray.tasks import make_task
from biobert_ray.tasks.base import ModelInfo, Task


def evaluate_examples(
    task: Task,
    model: torch.nn.Module,
    info: ModelInfo,
    examples: Sequence[Any],
    windows: Sequence[Sequence[dict[str, Any]]],
    pad_id: int,
    batch_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """The task's scores of ``model`` on ``examples`` (``windows``: the encoded windows of each)."""
    selected = inference.predict_units(model, windows, task, pad_id, batch_size, device)
    return task.score(examples, task.decode(examples, windows, selected, info))


def check_task(task_name: str, model: str, metadata: dict[str, Any]) -> None:
    """Refuse a model fine-tuned for another task than ``task_name`` (ValueError naming both)."""
    trained = metadata.get("task")
    if trained != task_name:
        raise ValueError(
            f"{model} is a {trained!r} model (biobert_ray.json), not a {task_name!r} model: "
            f"use `{trained} ...` or a model fine-tuned for {task_name!r}"
        )


def evaluate(task_name: str, config: EvaluateConfig, options: Any = None) -> dict[str, Any]:
    """Scores of ``config.model`` on ``config.data`` (written as JSON to ``config.out`` when given).

    The model must have been fine-tuned for ``task_name`` (its saved metadata says so). Units longer
    than the window are split into overlapping windows as in training (the model's window length and
    stride unless the config gives them).
    """
    metadata = models.read_metadata(config.model)
    check_task(task_name, config.model, metadata)
    task = make_task(task_name, options)
    examples = task.read(config.data, model=metadata)
    tokenizer = models.load_tokenizer(config.model)
    model = models.load_model(config.model, task.model_class)
    allocator.tune()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    info = ModelInfo(config.model, dict(model.config.id2label), metadata)
    max_length = config.max_seq_length or metadata.get("max_seq_length", 128)
    stride = config.stride if config.stride is not None else metadata.get("stride", 32)
    windows = task.encode(examples, tokenizer, max_length, stride)
    scores = evaluate_examples(
        task, model, info, examples, windows, tokenizer.pad_token_id, config.batch_size, device
    )
    result = {
        "task": task_name,
        "model": config.model,
        "data": config.data,
        "examples": len(examples),
        **scores,
    }
    if config.out:
        with storage.atomic_open(config.out) as f:
            f.write(json.dumps(result, indent=2).encode())
    return result
