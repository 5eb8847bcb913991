"""Score a fine-tuned model on a labelled file with its task's official metric."""

from __future__ import annotations

import json
from typing import Any

import torch

from biobert_ray import inference, models, storage
from biobert_ray.config import EvaluateConfig
from biobert_ray.tasks import get_task


def evaluate_examples(
    task, model, tokenizer, examples, windows, id2label, batch_size, device
) -> dict[str, Any]:
    """Score ``model`` on encoded ``examples`` (``windows``: one list per example) with the task's metric."""
    flat = [w for per_example in windows for w in per_example]
    selected = inference.predict(model, flat, task.select, tokenizer.pad_token_id, batch_size, device)
    predictions, start = [], 0
    for example, example_windows in zip(examples, windows, strict=True):
        outputs = selected[start : start + len(example_windows)]
        start += len(example_windows)
        predictions.append(task.decode(example, example_windows, outputs, id2label))
    return task.score(examples, predictions)


def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Scores of ``config.model`` on ``config.data`` (written as JSON to ``config.out`` when given).

    For NER with untyped B/I/O data the entity type defaults to the model's, when it has exactly one.
    Sentences longer than the window are split into overlapping windows as in training.
    """
    metadata = models.read_metadata(config.model)
    task = get_task(metadata.get("task", "ner"))
    options: dict[str, Any] = {}
    if task.name == "ner":
        types = metadata.get("entity_types", [])
        options["entity_type"] = config.entity_type or (types[0] if len(types) == 1 else None)
    examples = task.read(config.data, **options)
    tokenizer = models.load_tokenizer(config.model)
    model = models.load_model(config.model, task.model_class)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    max_length = config.max_seq_length or metadata.get("max_seq_length", 128)
    windows = task.encode(examples, tokenizer, max_length, config.stride)
    scores = evaluate_examples(
        task, model, tokenizer, examples, windows, model.config.id2label, config.batch_size, device
    )
    result = {"model": config.model, "data": config.data, "examples": len(examples), **scores}
    if config.out:
        with storage.atomic_open(config.out) as f:
            f.write(json.dumps(result, indent=2).encode())
    return result
