"""Ray Train plumbing shared by fine-tuning and pretraining: resources, storage, checkpoints.

Checkpoints go through the same fsspec filesystems as every other path (local or ``s3://``), so an
S3-compatible endpoint set by ``AWS_ENDPOINT_URL`` applies to them too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig

from biobert_ray import storage


def scaling_config(num_workers: int, use_gpu: bool, cpus_per_worker: float) -> ScalingConfig:
    """DDP workers with ``cpus_per_worker`` CPUs each (fractions allowed) and one GPU each if asked."""
    resources = {"CPU": cpus_per_worker}
    if use_gpu:
        resources["GPU"] = 1
    return ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=resources)


def default_run_name(out: str, prefix: str, identity: dict | None = None) -> str:
    """A stable run name for an output location and a run's identity (the settings that define it).

    Rerunning the same command gives the same name, so Ray Train resumes that run from its last
    checkpoint; a changed identity gives a new name and a fresh run.
    """
    key = json.dumps([out, identity], sort_keys=True, default=str)
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def default_storage_path(out: str) -> str:
    """Where a run writing its model to ``out`` keeps its checkpoints: ``<out>.checkpoints``."""
    return f"{out.rstrip('/')}.checkpoints"


def storage_for(storage_path: str) -> tuple[str, pafs.FileSystem]:
    """``(path, pyarrow filesystem)`` for Ray Train's ``RunConfig`` from any fsspec URI."""
    fs, path = storage.filesystem(storage_path)
    if storage.is_local(fs):
        Path(path).mkdir(parents=True, exist_ok=True)
        return str(Path(path).resolve()), pafs.LocalFileSystem()
    return path, pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def run_config(
    name: str,
    storage_path: str,
    max_failures: int,
    num_to_keep: int | None = None,
    score_attribute: str | None = None,
    score_order: str = "max",
) -> RunConfig:
    """Where and how a run keeps its checkpoints, and how often it retries after a failure."""
    path, filesystem = storage_for(storage_path)
    return RunConfig(
        name=name,
        storage_path=path,
        storage_filesystem=filesystem,
        failure_config=FailureConfig(max_failures=max_failures),
        checkpoint_config=CheckpointConfig(
            num_to_keep=num_to_keep,
            checkpoint_score_attribute=score_attribute,
            checkpoint_score_order=score_order,
        ),
    )


@contextlib.contextmanager
def checkpoint_files(checkpoint: Checkpoint) -> Iterator[Path]:
    """A local copy of ``checkpoint`` private to this process, deleted on exit.

    ``Checkpoint.as_directory()`` downloads a remote checkpoint into one directory shared by the
    processes of a node; two workers restoring at once can then read weight files that the other is
    still rewriting (a SIGBUS in the memory-mapped safetensors load). Each worker downloads its own.
    """
    with tempfile.TemporaryDirectory(prefix="checkpoint-") as directory:
        yield Path(checkpoint.to_directory(directory))
