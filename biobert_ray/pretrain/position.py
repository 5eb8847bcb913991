"""The data position of a pretraining run: which packed sequences of the current epoch are consumed.

Packed sequences have stable identities ``(shard, index)`` (:mod:`biobert_ray.packing`). A position
holds the epoch number and, per shard name, the sorted disjoint half-open intervals ``[start, end)``
of sequence indices consumed in that epoch, plus the shard's sequence count once its last sequence
has been seen. Each worker records what it trains on; at a checkpoint the workers' positions are
merged (a union) and saved with the model.

A resumed run skips the complete shards without reading them and re-packs only the shards that were
in progress, emitting just their unconsumed sequences. Which worker trained on what does not
matter, so a run may resume with a different number of workers.

JSON form: ``{"epoch": 2, "shards": {"name.parquet": {"done": [[0, 40], [64, 90]], "total": 90}}}``
(``total`` is null until the shard's last sequence has been consumed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def _union(intervals: Iterable[Sequence[int]]) -> list[list[int]]:
    merged: list[list[int]] = []
    for start, end in sorted((int(s), int(e)) for s, e in intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _runs(indices: np.ndarray) -> list[list[int]]:
    """Sorted unique indices as half-open intervals of consecutive values."""
    if len(indices) == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    return [[int(run[0]), int(run[-1]) + 1] for run in np.split(indices, breaks)]


class DataPosition:
    """Consumed sequences of the current epoch, by shard name (see the module docstring)."""

    def __init__(self, epoch: int = 0, shards: dict[str, dict[str, Any]] | None = None) -> None:
        self.epoch = epoch
        self.done: dict[str, list[list[int]]] = {}
        self.total: dict[str, int] = {}
        for name, entry in (shards or {}).items():
            self.done[name] = _union(entry.get("done", []))
            if entry.get("total") is not None:
                self.total[name] = int(entry["total"])

    def consumed(self, name: str, indices: np.ndarray) -> np.ndarray:
        """Which of ``indices`` of shard ``name`` are already consumed (a boolean array)."""
        hit = np.zeros(len(indices), dtype=bool)
        for start, end in self.done.get(name, []):
            hit |= (indices >= start) & (indices < end)
        return hit

    def add(self, name: str, indices: np.ndarray, last: np.ndarray) -> None:
        """Record sequences ``indices`` of shard ``name`` as consumed; ``last`` flags a shard's final one."""
        runs = _runs(np.unique(indices))
        self.done[name] = _union([*self.done.get(name, []), *runs])
        if last.any():
            self.total[name] = int(indices[last].max()) + 1

    def count(self) -> int:
        """Sequences consumed in this epoch."""
        return sum(end - start for intervals in self.done.values() for start, end in intervals)

    def complete(self, name: str) -> bool:
        """Whether every sequence of shard ``name`` has been consumed in this epoch."""
        return name in self.total and self.done.get(name) == [[0, self.total[name]]]

    def pending(self, names: Sequence[str]) -> list[str]:
        """The shards of ``names`` still to read in this epoch, in the given order."""
        return [name for name in names if not self.complete(name)]

    def settle(self, names: Sequence[str]) -> None:
        """Start the next epoch if every shard of ``names`` is complete."""
        if not self.pending(names):
            self.next_epoch()

    def next_epoch(self) -> None:
        self.epoch += 1
        self.done, self.total = {}, {}

    def to_dict(self) -> dict[str, Any]:
        names = sorted(set(self.done) | set(self.total))
        return {
            "epoch": self.epoch,
            "shards": {n: {"done": self.done.get(n, []), "total": self.total.get(n)} for n in names},
        }

    @classmethod
    def merge(cls, positions: Sequence[dict[str, Any]]) -> DataPosition:
        """The union of several workers' positions (JSON form); they must be in the same epoch."""
        epochs = {p["epoch"] for p in positions}
        if len(epochs) != 1:
            raise ValueError(f"workers report different epochs {sorted(epochs)}: they are out of step")
        merged = cls(epochs.pop())
        for position in positions:
            for name, entry in position["shards"].items():
                merged.done[name] = _union([*merged.done.get(name, []), *entry["done"]])
                if entry.get("total") is not None:
                    merged.total[name] = int(entry["total"])
        return merged
