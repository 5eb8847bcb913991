"""Batched model forward over encoded windows: length-sorted, dynamically padded, no autograd.

Used by evaluation, by the dev-set evaluation inside training and by the annotation actors, so all
three see the same numbers. What a batch holds and what is kept of the outputs is the task's
(:meth:`Task.collate`, :meth:`Task.select`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import Any

import torch

from biobert_ray.tasks.base import Task


def autocast(device: torch.device, cpu_bf16: bool = False) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, and on CPU when ``cpu_bf16``; fp32 otherwise.

    Training keeps fp32 on CPU; inference may use bf16 there on CPUs where it is faster
    (:func:`cpu_has_fast_bf16`).
    """
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if cpu_bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """Whether bf16 autocast beats fp32 on this machine's CPU: with AMX, or AVX512-BF16 on an AMD CPU.

    Measured (docs/benchmarks.md): the bf16 forward ran 2.2 to 2.6x faster than fp32 on a Xeon with
    AMX and on an AMD EPYC with AVX512-BF16, but 1.6x slower on a Xeon with AVX512-BF16 and without
    AMX; without either, bf16 is emulated and several times slower. A rule, not a timing, so that
    every actor of a run on the same kind of machine makes the same choice and writes the same rows.
    """
    if torch.cpu._is_amx_tile_supported():
        return True
    return torch.cpu._is_avx512_bf16_supported() and cpuinfo("vendor_id") == "AuthenticAMD"


def cpuinfo(field: str) -> str:
    """The first value of ``field`` in ``/proc/cpuinfo`` (``vendor_id``: ``GenuineIntel``,
    ``AuthenticAMD``; ``model name``; ``flags``); empty where there is no such file or field."""
    try:
        with open("/proc/cpuinfo") as lines:
            for line in lines:
                if line.split(":", 1)[0].strip() == field:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


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
