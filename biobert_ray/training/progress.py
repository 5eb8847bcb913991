"""Progress of a training run: interval meters, the rank-0 progress line and ``metrics.jsonl``.

Fine-tuning and pretraining print the same line. Every ``log_every`` steps rank 0 sends the interval's
values to the driver's console (through :class:`biobert_ray.console.Relay`, so they are printed
once), where they follow the run's progress (:class:`biobert_ray.console.Progress`)::

    pretrain: 120/1000 steps (12%), 0.4 steps/s, eta 0:36:40 | epoch 0 | loss 4.213 | mlm acc 0.312 |
    lr 4.6e-05 | 2,845 tokens/s

Loss (and, for pretraining, masked-token accuracy) is averaged over the interval and all workers; the
rate (all workers: tokens for pretraining, windows for fine-tuning) comes from the interval's
wall-clock time, evaluations and checkpoints included. The same values, with an ETA, are appended as
a JSON record (``{"event": "train", "step": ..., ...}``; evaluations are ``"event": "eval"``
records) to ``metrics.jsonl`` in the run directory, beside the checkpoints. The file is rewritten atomically
at each checkpoint and at the end of the run (an object store has no append), so it always reaches
the last checkpoint; a resumed run first drops the records of steps after its checkpoint, so every
step appears once.
"""

from __future__ import annotations

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

    def __init__(self, device: torch.device, start_step: int, unit: str) -> None:
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, batches, correct, labelled
        self.step, self.time, self.unit = start_step, time.perf_counter(), unit

    def add(
        self, loss: torch.Tensor, correct: torch.Tensor | None = None, labelled: torch.Tensor | None = None
    ) -> None:
        """Add one batch's loss (and, for masked-LM, its correct and labelled token counts)."""
        one = torch.ones_like(self.sums[0])
        correct = correct.double() if correct is not None else 0 * one
        labelled = labelled.double() if labelled is not None else 0 * one
        self.sums += torch.stack([loss.detach().double(), one, correct, labelled])

    def read(self, step: int, max_steps: int, units_per_step: int) -> dict[str, Any]:
        """Mean loss, masked-token accuracy (when counted), ``<unit>_per_second`` and ETA since the last
        read (all workers); then reset."""
        loss, batches, correct, labelled = all_reduce(self.sums.clone()).tolist()
        now = time.perf_counter()
        seconds_per_step = (now - self.time) / max(1, step - self.step)
        record = {"loss": loss / max(batches, 1)}
        if labelled:
            record["mlm_accuracy"] = correct / labelled
        record[f"{self.unit}_per_second"] = units_per_step / seconds_per_step
        record["eta_seconds"] = round((max_steps - step) * seconds_per_step, 1)
        self.sums.zero_()
        self.step, self.time = step, now
        return record


#: How the values of a record are shown on the progress line, in this order.
_SHOWN = (
    ("loss", "loss {:.3f}"),
    ("mlm_accuracy", "mlm acc {:.3f}"),
    ("learning_rate", "lr {:.2e}"),
    ("tokens_per_second", "{:,.0f} tokens/s"),
    ("windows_per_second", "{:,.1f} windows/s"),
)


def format_line(record: dict[str, Any], max_steps: int) -> str:
    """The console text of a ``train`` or ``eval`` record.

    A ``train`` record becomes the note of the driver's progress line, which shows the step, the
    steps/s and the ETA itself: ``epoch 0 | loss 4.213 | mlm acc 0.312 | lr 4.6e-05 | 2,845 tokens/s``.
    An ``eval`` record is a line of its own, with its ``scores`` (fine-tuning: the task's primary dev
    metric) or its held-out ``loss`` and ``mlm_accuracy`` (pretraining).
    """
    if record["event"] == "eval":
        scores = record.get("scores") or {
            {"loss": "held-out loss", "mlm_accuracy": "mlm acc"}[k]: record[k]
            for k in ("loss", "mlm_accuracy")
            if k in record
        }
        shown = ", ".join(f"{name} {value:.4f}" for name, value in scores.items())
        return f"step {record['step']}/{max_steps} epoch {record['epoch']} | {shown}"
    parts = [f"epoch {record['epoch']}"]
    parts += [shown.format(record[key]) for key, shown in _SHOWN if key in record]
    return " | ".join(parts)


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
