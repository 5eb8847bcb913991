"""Progress of a pretraining run: interval meters, the rank-0 health line and ``metrics.jsonl``.

Every ``log_every`` steps rank 0 sends one line to the driver's console (through
:class:`biobert_ray.console.Relay`, so it is printed once, beside the run's progress)::

    step 120/1000 epoch 0 | loss 4.213 | mlm acc 0.312 | lr 4.6e-05 | 2,845 tok/s | eta 0:05:13

Loss and accuracy are averaged over the interval and all workers; tokens/s (all workers) and the ETA
come from the interval's wall-clock time, evaluations and checkpoints included. The same values are
appended as a JSON record (``{"event": "train", "step": ..., ...}``; held-out evaluations are
``"event": "eval"`` records) to ``metrics.jsonl`` in the run directory, beside the checkpoints. The
file is rewritten atomically at each checkpoint and at the end of the run (an object store has no
append), so it always reaches the last checkpoint; a resumed run first drops the records of steps
after its checkpoint, so every step appears once.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import torch
import torch.distributed as dist

from biobert_ray import storage


def distributed() -> bool:
    """True inside a process group of more than one worker."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce(values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over the workers (a no-op outside a process group)."""
    if distributed():
        dist.all_reduce(values)
    return values


class Meter:
    """Training sums of one logging interval on one worker, reduced over workers by :meth:`read`.

    Accumulates on the training device without synchronising, so logging costs one all-reduce per
    interval, not one per step.
    """

    def __init__(self, device: torch.device, start_step: int) -> None:
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, batches, correct, labelled
        self.step, self.time = start_step, time.perf_counter()

    def add(self, loss: torch.Tensor, correct: torch.Tensor, labelled: torch.Tensor) -> None:
        one = torch.ones_like(self.sums[0])
        self.sums += torch.stack([loss.detach().double(), one, correct.double(), labelled.double()])

    def read(self, step: int, max_steps: int, tokens_per_step: int) -> dict[str, Any]:
        """Mean loss, MLM accuracy, tokens/s and ETA since the last read (all workers); then reset."""
        loss, batches, correct, labelled = all_reduce(self.sums.clone()).tolist()
        now = time.perf_counter()
        seconds_per_step = (now - self.time) / max(1, step - self.step)
        record = {
            "loss": loss / max(batches, 1),
            "mlm_accuracy": correct / max(labelled, 1),
            "tokens_per_second": tokens_per_step / seconds_per_step,
            "eta_seconds": round((max_steps - step) * seconds_per_step, 1),
        }
        self.sums.zero_()
        self.step, self.time = step, now
        return record


def format_line(record: dict[str, Any], max_steps: int) -> str:
    """The health line of a ``train`` or ``eval`` record."""
    head = f"step {record['step']}/{max_steps} epoch {record['epoch']}"
    if record["event"] == "eval":
        return f"{head} | held-out loss {record['loss']:.3f} | mlm acc {record['mlm_accuracy']:.3f}"
    eta = dt.timedelta(seconds=round(record["eta_seconds"]))
    return (
        f"{head} | loss {record['loss']:.3f} | mlm acc {record['mlm_accuracy']:.3f} | "
        f"lr {record['learning_rate']:.2e} | {record['tokens_per_second']:,.0f} tok/s | eta {eta}"
    )


class MetricsLog:
    """The run's ``metrics.jsonl``: records kept in memory, written whole by :meth:`flush`."""

    def __init__(self, uri: str, resume_step: int) -> None:
        self.uri = uri
        self.records: list[dict[str, Any]] = []
        if resume_step > 0 and storage.exists(uri):
            fs, path = storage.filesystem(uri)
            with fs.open(path, "rb") as f:
                lines = f.read().decode().splitlines()
            self.records = [r for r in map(json.loads, filter(None, lines)) if r["step"] <= resume_step]

    def append(self, record: dict[str, Any]) -> None:
        self.records.append({**record, "time": round(time.time(), 3)})

    def flush(self) -> None:
        with storage.atomic_open(self.uri) as f:
            f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records).encode())
