"""Batched model forward over encoded windows: length-sorted, dynamically padded, no autograd.

Used by evaluation, by the dev-set evaluation inside training and by the annotation actors, so all
three see the same numbers. What a batch holds and what is kept of the outputs is the task's
(:meth:`Task.collate`, :meth:`Task.select`).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Sequence
from typing import Any

import torch

from biobert_ray.tasks.base import Task


def autocast(device: torch.device, cpu_bf16: bool = False) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, and on CPU when ``cpu_bf16``; fp32 otherwise.

    Training keeps fp32 on CPU; inference may use bf16 there where it is faster
    (:func:`cpu_has_fast_bf16`).
    """
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if cpu_bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """Whether bf16 autocast runs a BERT-sized matrix product faster than fp32 on this process's CPU.

    Only CPUs with bf16 instructions (AVX512-BF16 or AMX) are tried; on them, the product of a batch
    of 16 windows of 128 sub-tokens with a MiniLM feed-forward weight (2048 x 384 by 384 x 1536) is
    timed both ways with this process's torch threads (best of 3, about 0.3 s, once per process), and
    bf16 is chosen where it is at least 1.2x faster. The instruction sets alone do not decide it
    (docs/benchmarks.md): the bf16 forward was 2.6x faster than fp32 on an AMD EPYC with AVX512-BF16
    and on a Xeon with AMX, but 1.6x slower on a Xeon with AVX512-BF16 and without AMX (this product:
    0.59x); without either, bf16 is emulated and several times slower.
    """
    if not (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return False
    return _product_time(bf16=False) / _product_time(bf16=True) >= 1.2


def _product_time(bf16: bool) -> float:
    """Best of 3 timings of 5 feed-forward products (see :func:`cpu_has_fast_bf16`), in seconds."""
    generator = torch.Generator().manual_seed(0)  # leaves the global seed's stream to the caller
    inputs = torch.randn(16 * 128, 384, generator=generator)
    weight, bias = torch.randn(1536, 384, generator=generator), torch.zeros(1536)
    precision = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    best = float("inf")
    with torch.inference_mode(), precision:
        torch.nn.functional.linear(inputs, weight, bias)  # warm-up: kernel choice
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(5):
                torch.nn.functional.linear(inputs, weight, bias)
            best = min(best, time.perf_counter() - start)
    return best


def predict(
    model: torch.nn.Module,
    windows: Sequence[dict[str, Any]],
    task: Task,
    pad_id: int,
    batch_size: int = 64,
    device: torch.device | None = None,
    cpu_bf16: bool = False,
) -> list[Any]:
    """``task.select(window, outputs)`` for every window, in input order.

    Windows are sorted by length so each batch pads little; ``task.collate`` pads a batch into the
    model's arguments, and ``outputs`` holds the window's row of every tensor the model returns
    (``logits``, or ``start_logits`` and ``end_logits``, ...) as float32 numpy arrays, padding
    included. bf16 autocast on CUDA, and on CPU with ``cpu_bf16``; fp32 otherwise.
    """
    device = device or next(model.parameters()).device
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]["input_ids"]))
    results: list[Any] = [None] * len(windows)
    model.eval()
    with torch.inference_mode(), autocast(device, cpu_bf16):
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = task.collate([windows[i] for i in chunk], pad_id, False)
            output = model(**{k: v.to(device, non_blocking=True) for k, v in batch.items()})
            arrays = {
                key: value.float().cpu().numpy()
                for key, value in output.items()
                if torch.is_tensor(value) and key != "loss"
            }
            for row, index in enumerate(chunk):
                results[index] = task.select(windows[index], {k: v[row] for k, v in arrays.items()})
    return results


def predict_units(
    model: torch.nn.Module,
    windows: Sequence[Sequence[dict[str, Any]]],
    task: Task,
    pad_id: int,
    batch_size: int = 64,
    device: torch.device | None = None,
    cpu_bf16: bool = False,
) -> list[list[Any]]:
    """:func:`predict` over the windows of many units at once, regrouped per unit.

    ``windows`` holds one list per unit; so does the result (the selected outputs of its windows), as
    :meth:`Task.decode` takes them. Used by evaluation (and the dev scores of training) and by the
    annotation actors.
    """
    flat = [window for unit_windows in windows for window in unit_windows]
    selected = predict(model, flat, task, pad_id, batch_size, device, cpu_bf16)
    grouped, start = [], 0
    for unit_windows in windows:
        grouped.append(selected[start : start + len(unit_windows)])
        start += len(unit_windows)
    return grouped
