"""Ray Train plumbing shared by fine-tuning and pretraining: workers, storage, run names, failures.

Checkpoints go through the same fsspec filesystems as every other path (local or ``s3://``), so an
S3-compatible endpoint set by ``AWS_ENDPOINT_URL`` applies to them too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig, UserCallback

from biobert_ray import storage
from biobert_ray.console import Relay


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


class ReportFailures(UserCallback):
    """Tells the driver's console when training workers fail (Ray Train then restarts them from the
    last checkpoint, up to ``max_failures`` times): the workers' own output stays in Ray's logs."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def after_exception(self, run_context: Any, worker_exceptions: dict[int, Exception]) -> None:
        for rank, exc in sorted(worker_exceptions.items()):
            cause = getattr(exc, "_base_exc", exc)  # Ray Train wraps the worker's own exception
            self.relay.send(
                {"line": f"warning: training worker {rank} failed: {type(cause).__name__}: {cause}"}
            )


def run_config(
    name: str,
    storage_path: str,
    max_failures: int,
    num_to_keep: int | None = None,
    score_attribute: str | None = None,
    score_order: str = "max",
    relay: Relay | None = None,
) -> RunConfig:
    """Where and how a run keeps its checkpoints, and how often it retries after a failure.

    With ``relay``, worker failures are reported on the driver's console (:class:`ReportFailures`).
    """
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
        callbacks=[ReportFailures(relay)] if relay is not None else None,
    )
