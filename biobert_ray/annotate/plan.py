"""What an annotation run must do: which input shards to read, with which identity, reusing what.

A shard's identity is what produced its output (:mod:`biobert_ray.runs`): the input shard (its
ingest marker and file size), every model (reference and content fingerprint,
:func:`biobert_ray.models.fingerprint`), the task and its options, and every option that changes
rows (window length, stride, batch size, precision, quantization) plus the ``--max-articles`` cap.
Only complete input shards are read (their ingest marker matches the file); the others are named.
"""

from __future__ import annotations

from typing import Any

from biobert_ray import models, runs, storage
from biobert_ray.config import AnnotateConfig, command_options
from biobert_ray.tasks.base import Task

#: Windows per forward pass when ``AnnotateConfig.batch_size`` is not set: small batches pad least on
#: CPU (docs/benchmarks.md); larger ones keep a GPU busy.
DEFAULT_BATCH_SIZE = {"cpu": 16, "gpu": 64}


def part_uri(out: str, shard: str, identity_digest: str, row_group: int) -> str:
    """The part file of one row group: named by the shard's identity, so a rerun can reuse it."""
    return storage.join(out, "_parts", shard, f"{identity_digest}-{row_group:06d}.parquet")


def batch_size(config: AnnotateConfig) -> int:
    """Windows per forward pass: ``--batch-size``, or the default for the device."""
    return config.batch_size or DEFAULT_BATCH_SIZE["gpu" if config.use_gpu else "cpu"]


def model_identity(task: Task, config: AnnotateConfig) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Each model's reference and fingerprint, and the options that change the rows of a run."""
    refs = config.model
    options = {
        "task": task.name,
        "max_seq_length": {ref: config.max_seq_length or models.info(ref)["max_seq_length"] for ref in refs},
        "stride": config.stride,
        "batch_size": batch_size(config),
        "precision": config.precision,
        "quantize": config.quantize,
    }
    task_options = command_options(task.options, "annotate")
    if task_options:
        options["task_options"] = task_options
    return [{"ref": ref, "fingerprint": models.fingerprint(ref)} for ref in refs], options


def _row_groups(uri: str, remaining: int | None) -> tuple[list[tuple[int, int]], int]:
    """``(row group, rows to take)`` pairs of a shard under a cap of ``remaining`` rows, and its rows."""
    with storage.open_parquet(uri) as parquet:
        metadata = parquet.metadata
    groups = []
    for index in range(metadata.num_row_groups):
        rows = metadata.row_group(index).num_rows
        take = rows if remaining is None else min(rows, remaining)
        if remaining is not None:
            remaining -= take
        if take:
            groups.append((index, take))
    return groups, metadata.num_rows


def _complete_by_name(table: str) -> dict[str, str]:
    """The complete shards of ``table`` by shard name."""
    return {runs.shard_name(uri): uri for uri in runs.complete_shards(table)[0]}


def _side_identity(task: Task, side: dict[str, str]) -> dict[str, Any]:
    """The identity of the side-table shards a shard is read with (their markers and sizes)."""
    tables = task.side_tables()
    return {
        f"side_{name}": {
            "marker": runs.digest(runs.read_marker(tables[name], uri)),
            "size": storage.size(uri),
        }
        for name, uri in side.items()
    }


def plan(task: Task, config: AnnotateConfig, log) -> dict[str, Any]:
    """What this run must do: ``pending`` shards, ``skipped`` complete ones, ``incomplete`` inputs.

    A pending shard is ``{shard, path, identity, digest, capped, row_groups, reused, side}``: the row
    groups to annotate (``(index, rows)``), the parts of earlier runs with the same identity, and the
    shards of the task's side tables (same name; a shard without a complete one is incomplete).
    """
    complete, incomplete = runs.complete_shards(config.articles)
    if not complete and not incomplete:
        raise FileNotFoundError(f"no articles table (no *.parquet files) at {config.articles}")
    for item in incomplete:
        log(f"warning: not reading {item['shard']}: {item['reason']}")
    model_ids, options = model_identity(task, config)
    sides = {name: _complete_by_name(table) for name, table in task.side_tables().items()}
    pending, skipped = [], []
    remaining = config.max_articles
    for uri in complete:
        name = runs.shard_name(uri)
        side = {table: shards.get(name) for table, shards in sides.items()}
        if missing := [table for table, side_uri in side.items() if side_uri is None]:
            reason = f"its {missing[0]} shard {name} is missing or not complete"
            log(f"warning: not reading {uri}: {reason}")
            incomplete.append({"shard": uri, "reason": reason})
            continue
        groups, rows = _row_groups(uri, remaining)
        taken = sum(take for _, take in groups)
        if remaining is not None:
            remaining -= taken
        capped = taken < rows
        source = {"shard": name, "ingest_marker": runs.digest(runs.read_marker(config.articles, uri))}
        identity = {
            "input": {**source, "size": storage.size(uri), **_side_identity(task, side)},
            "models": model_ids,
            "options": {**options, "articles": taken if capped else "all"},
        }
        done, why = (None, "overwrite") if config.overwrite else runs.check_shard(config.out, name, identity)
        if done is not None:
            log(f"skip {uri}: shard {name} is complete ({done['rows']} rows)")
            # markers written before units were counted for every task counted NER's sentences
            units = done.get("units", done.get("sentences", 0))
            skipped.append({**done, "units": units, "status": "skipped"})
            continue
        if why not in ("new", "overwrite"):
            log(f"redo {uri}: {why}")
        digest = runs.digest(identity)
        reused = {g: part_uri(config.out, name, digest, g) for g, _ in groups}
        reused = {g: part for g, part in reused.items() if not config.overwrite and storage.exists(part)}
        pending.append(
            {
                "shard": name, "path": uri, "identity": identity, "digest": digest, "capped": capped,
                "row_groups": groups, "reused": reused, "side": side,
            }
        )  # fmt: skip
    return {"pending": pending, "skipped": skipped, "incomplete": incomplete}
