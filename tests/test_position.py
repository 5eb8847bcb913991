"""The data position: consumed sequences per shard as intervals, merged across workers, epochs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from biobert_ray.pretrain.position import DataPosition


def take(position: DataPosition, name: str, indices: list[int], total: int | None = None) -> None:
    index = np.array(indices, dtype=np.int64)
    last = index == (total - 1) if total is not None else np.zeros(len(index), dtype=bool)
    position.add(name, index, last)


def test_workers_positions_merge_into_complete_and_partial_shards():
    names = ["a.parquet", "b.parquet", "c.parquet"]
    rank0, rank1 = DataPosition(epoch=3), DataPosition(epoch=3)
    take(rank0, "a.parquet", [0, 1, 2, 3, 8, 9], total=10)  # this rank saw the shard's last sequence
    take(rank1, "a.parquet", [4, 5, 6, 7])
    take(rank0, "b.parquet", [0, 1, 5])
    take(rank1, "b.parquet", [2, 3])
    merged = DataPosition.merge([json.loads(json.dumps(p.to_dict())) for p in (rank0, rank1)])
    assert merged.epoch == 3 and merged.count() == 10 + 5
    assert merged.complete("a.parquet") and not merged.complete("b.parquet")
    assert merged.done["b.parquet"] == [[0, 4], [5, 6]]
    assert merged.pending(names) == ["b.parquet", "c.parquet"]
    assert merged.consumed("b.parquet", np.arange(7)).tolist() == [True] * 4 + [False, True, False]
    merged.settle(names)  # shards still pending: same epoch
    assert merged.epoch == 3
    restored = DataPosition(**merged.to_dict())
    assert restored.to_dict() == merged.to_dict()


def test_an_epoch_ends_when_every_shard_is_complete():
    position = DataPosition()
    take(position, "a.parquet", list(range(5)), total=5)
    position.settle(["a.parquet", "b.parquet"])
    assert position.epoch == 0
    take(position, "b.parquet", [1, 0], total=2)
    position.settle(["a.parquet", "b.parquet"])
    assert position.epoch == 1 and position.count() == 0 and position.to_dict()["shards"] == {}


def test_workers_in_different_epochs_do_not_merge():
    with pytest.raises(ValueError, match="out of step"):
        DataPosition.merge([DataPosition(epoch=1).to_dict(), DataPosition(epoch=2).to_dict()])
