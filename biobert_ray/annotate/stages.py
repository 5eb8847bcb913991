"""The stages of corpus annotation, each working on one row group of an ``articles`` shard.

The chain (assembled in :mod:`biobert_ray.annotate.build`) reads like a list::

    read + units + encode (CPU) -> predict (actor pool, models loaded once) -> decode + write (CPU)

- **read + units + encode** (:func:`read_and_encode`): one task per row group reads the columns
  the task needs, turns them into units (``Task.units``: for NER, the sentences of each title and
  abstract) and encodes the units into model windows (``Task.encode``), once per distinct tokenizer
  among the models. Its output is the row group's one block: a row per unit, units and windows
  pickled with Ray's cloudpickle (the shared code never looks inside them; a task defined outside an
  importable module travels by value).
- **predict** (:class:`Predictor`): each actor loads every model once and runs a block's windows
  through each model in length-sorted, dynamically padded batches
  (:func:`biobert_ray.inference.predict_units`; bf16 autocast on GPUs and, per
  ``AnnotateConfig.precision``, on CPUs with native bf16), keeping what ``Task.select`` keeps. A
  block is never cut or joined with another, so a row group's batches, and with them its output down
  to the last bit of each score, do not depend on what else Ray scheduled beside it.
- **decode + write** (:func:`decode_and_write`): ``Task.decode`` and ``Task.rows`` turn the outputs
  into rows of the task's table, written atomically as the row group's part file, whose name the
  driver chose (:func:`biobert_ray.annotate.plan.part_uri`); the stage returns one summary row.

**Faults are bounded.** A Python exception in any stage becomes that row group's summary row with an
``error`` (the later stages pass it on), so one bad row group fails alone and says why. A process that
dies (a segfault, an out-of-memory kill) is retried (see :mod:`biobert_ray.annotate.build`).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from ray import cloudpickle

from biobert_ray import allocator, inference, models, storage
from biobert_ray.annotate.plan import part_uri
from biobert_ray.tasks.base import ModelInfo, Task, Units

#: Fault injection for tests and drills: an actor whose block holds this PMID kills its own process.
KILL_AT_PMID_ENV = "BIOBERT_RAY_KILL_ACTOR_AT_PMID"

SUMMARY = pa.schema(
    [
        pa.field("shard", pa.string()),
        pa.field("row_group", pa.int64()),
        pa.field("part", pa.string()),
        pa.field("rows", pa.int64()),
        pa.field("units", pa.int64()),
        pa.field("articles", pa.int64()),
        pa.field("error", pa.string()),
    ]
)


def _failure(shard: str, row_group: int, stage: str, exc: BaseException) -> pa.Table:
    """The one-row table that carries a row group's failure through the later stages."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    place = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    return pa.table(
        {
            "shard": [shard],
            "row_group": [int(row_group)],
            "error": [f"{stage}: {type(exc).__name__}: {exc}{place}"],
        }
    )


def _key(batch: pa.Table) -> tuple[str, int]:
    """``(shard, row group)`` of a row group's block (every row holds the same)."""
    return batch.column("shard")[0].as_py(), batch.column("row_group")[0].as_py()


def guarded(stage: Callable[..., pa.Table]) -> Callable[..., pa.Table]:
    """Run ``stage`` on a row group's block; an exception becomes the block's failure row.

    A block that already carries a failure (an ``error`` column) passes through untouched.
    """

    @functools.wraps(stage)
    def run(batch: pa.Table, *args, **kwargs) -> pa.Table:
        if "error" in batch.column_names:
            return batch
        try:
            return stage(batch, *args, **kwargs)
        except Exception as exc:
            return _failure(*_key(batch), stage.__name__, exc)

    return run


def read_and_encode(
    batch: dict[str, np.ndarray], task: Task, groups: dict[str, dict[str, Any]], stride: int
) -> pa.Table:
    """One work item (``shard``, ``path``, ``row_group``, ``limit``: articles to take, ``side``: JSON of
    the side-table shards to read for its articles) -> its block.

    The block has a row per unit (one row with a null ``unit`` when the row group has none, so every
    row group reaches the last stage): ``shard``, ``row_group``, ``articles`` and ``units`` (counts,
    for the last stage's check that the block is whole), ``notes`` (JSON of the :class:`Units`'
    counts and rejected records), ``unit`` and, per tokenizer group,
    ``windows_<key>`` (pickled). A failure becomes the row group's failure row.
    """
    (shard,), (row_group,) = batch["shard"], batch["row_group"]
    try:
        return _read_and_encode(batch, task, groups, stride)
    except Exception as exc:
        return _failure(shard, row_group, "read_and_encode", exc)


def _read_and_encode(
    batch: dict[str, np.ndarray], task: Task, groups: dict[str, dict[str, Any]], stride: int
) -> pa.Table:
    (shard,), (path,) = batch["shard"], batch["path"]
    (row_group,), (limit,) = batch["row_group"], batch["limit"]
    with storage.open_parquet(path) as parquet:
        articles = parquet.read_row_group(int(row_group), columns=list(task.article_columns))
    articles = articles.slice(0, int(limit))
    pmids = articles.column("pmid").to_pylist()
    side = {name: _side_rows(uri, pmids) for name, uri in json.loads(batch["side"][0]).items()}
    units = Units.of(task.units(articles, side))
    n = max(1, len(units))
    notes = json.dumps({"counts": units.counts, "rejected": units.rejected}, default=str)
    columns: dict[str, Any] = {
        "shard": [shard] * n,
        "row_group": [int(row_group)] * n,
        "articles": [int(limit)] * n,
        "units": [len(units)] * n,
        "notes": pa.array([notes] * n).dictionary_encode(),  # the same value on every row, stored once
        "unit": pa.array([cloudpickle.dumps(u) for u in units] or [None], pa.binary()),
    }
    for key, group in groups.items():
        windows = task.encode(
            units, models.cached_tokenizer(group["tokenizer_ref"]), group["max_length"], stride
        )
        columns[f"windows_{key}"] = pa.array([cloudpickle.dumps(w) for w in windows] or [None], pa.binary())
    return pa.table(columns)


def _side_rows(uri: str, pmids: list[int]) -> pa.Table:
    """The rows of a side-table shard (e.g. ``entities``) for the articles ``pmids`` (Parquet row-group
    statistics skip the groups that hold none of them: the shards are sorted by PMID)."""
    fs, path = storage.filesystem(uri)
    with fs.open(path, "rb") as f:
        return pq.read_table(f, filters=[("pmid", "in", pmids)])


def _unpickled(column: pa.ChunkedArray) -> list[Any]:
    """The objects of a pickled column, without the placeholder row of a row group with no units."""
    return [cloudpickle.loads(blob) for blob in column.to_pylist() if blob is not None]


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """int8 dynamic quantization of every Linear layer, with per-output-channel weight scales.

    Per-channel scales kept NCBI-disease test F1 within 0.7 points of fp32 on the models measured
    (per-tensor scales lost about 2 points); see docs/benchmarks.md. CPU inference only.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


def cpu_bf16(precision: str, quantize: bool) -> bool:
    """Whether a CPU actor runs its models under bf16 autocast (``AnnotateConfig.precision``).

    Decided in the actor, on the node that runs it. int8 models (``quantize``) stay as they are.
    """
    if quantize or precision == "fp32":
        return False
    return precision == "bf16" or inference.cpu_has_fast_bf16()


class Predictor:
    """Ray Data actor: loads every model once, then runs each block's windows through each of them.

    ``groups`` maps each model reference to the key of its ``windows_<key>`` column. Adds one column
    ``outputs_<i>`` per model (in ``refs`` order): the pickled selected outputs of each unit's windows.
    """

    def __init__(
        self,
        task: Task,
        refs: list[str],
        groups: dict[str, str],
        batch_size: int,
        use_gpu: bool,
        quantize: bool,
        threads: int,
        precision: str,
        kill_at_pmid: int | None = None,
    ):
        self.kill_at_pmid = kill_at_pmid
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(threads)
            allocator.tune()
        self.cpu_bf16 = cpu_bf16(precision, quantize)
        self.task, self.refs, self.groups, self.batch_size = task, refs, groups, batch_size
        self.models = []
        for ref in refs:
            model = models.load_model(ref, task.model_class).to(self.device).eval()
            if quantize and self.device.type == "cpu":
                model = quantize_int8(model)
            self.models.append((model, models.cached_tokenizer(ref).pad_token_id))

    def __call__(self, batch: pa.Table) -> pa.Table:
        if "error" in batch.column_names:
            return batch
        if self.kill_at_pmid is not None and self._holds(self.kill_at_pmid, batch):
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            return self._predict(batch)
        except Exception as exc:
            return _failure(*_key(batch), "predict", exc)

    def _holds(self, pmid: int, batch: pa.Table) -> bool:
        return any(getattr(u, "pmid", None) == pmid for u in _unpickled(batch.column("unit")))

    def _predict(self, batch: pa.Table) -> pa.Table:
        for index, (ref, (model, pad_id)) in enumerate(zip(self.refs, self.models, strict=True)):
            windows = _unpickled(batch.column(f"windows_{self.groups[ref]}"))
            selected = inference.predict_units(
                model, windows, self.task, pad_id, self.batch_size, self.device, self.cpu_bf16
            )
            outputs = [cloudpickle.dumps(s) for s in selected] or [None]
            batch = batch.append_column(f"outputs_{index}", pa.array(outputs, pa.binary()))
        return batch


def decode_and_write(
    batch: pa.Table,
    task: Task,
    refs: list[str],
    groups: dict[str, str],
    out: str,
    run_id: str,
    digests: dict[str, str],
) -> pa.Table:
    """Decode one row group's outputs into rows of the task's table and write its part file.

    ``digests`` maps each shard to its identity digest (the part's name). A block that does not hold
    every unit of its row group fails rather than write a partial part. Returns one :data:`SUMMARY`
    row (with ``error`` set, and nothing written, when this or an earlier stage failed).
    """
    if "error" not in batch.column_names:
        try:
            return _decode_and_write(batch, task, refs, groups, out, run_id, digests)
        except Exception as exc:
            batch = _failure(*_key(batch), "decode_and_write", exc)
    failed = batch.to_pylist()[0]
    row = {**dict.fromkeys(SUMMARY.names), **failed, "rows": 0, "units": 0, "articles": 0}
    return pa.Table.from_pylist([row], schema=SUMMARY)


def _decode_and_write(
    batch: pa.Table,
    task: Task,
    refs: list[str],
    groups: dict[str, str],
    out: str,
    run_id: str,
    digests: dict[str, str],
) -> pa.Table:
    shard, row_group = _key(batch)
    n_units, articles = batch.column("units")[0].as_py(), batch.column("articles")[0].as_py()
    units = _unpickled(batch.column("unit"))
    keys = set(zip(batch.column("shard").to_pylist(), batch.column("row_group").to_pylist(), strict=True))
    if len(keys) != 1 or len(units) != n_units:
        raise RuntimeError(f"the block of {shard}/{row_group} holds {len(units)} of its {n_units} units")
    rows: list[dict] = []
    for index, ref in enumerate(refs):
        info = models.info(ref)
        model = ModelInfo(ref, info["id2label"], info["metadata"])
        windows = _unpickled(batch.column(f"windows_{groups[ref]}"))
        selected = _unpickled(batch.column(f"outputs_{index}"))
        predictions = task.decode(units, windows, selected, model)
        rows.extend({**row, "model": ref, "run_id": run_id} for row in task.rows(units, predictions))
    part = part_uri(out, shard, digests[shard], row_group)
    # for a rerun that reuses the part, and for the shard's totals and rejected records
    counts = {b"units": str(n_units).encode(), b"notes": batch.column("notes")[0].as_py().encode()}
    storage.write_parquet(
        pa.Table.from_pylist(rows, schema=task.schema), part, task.schema.with_metadata(counts)
    )
    summary = {
        "shard": shard, "row_group": row_group, "part": part, "rows": len(rows),
        "units": n_units, "articles": articles, "error": None,
    }  # fmt: skip
    return pa.Table.from_pylist([summary], schema=SUMMARY)
