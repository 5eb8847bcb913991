"""Connecting to Ray: a local Ray by default, an existing cluster when an address is given."""

from __future__ import annotations

import logging
import os

import ray

from biobert_ray.storage import STORAGE_ENV_VARS

#: Idle worker processes a local Ray keeps (Ray's default is one per CPU). A worker that has run a
#: stage has torch and transformers imported; on a 2-core machine Ray's default killed it after a
#: second idle, so the next annotation stage started a fresh process (2.5 s of imports) that
#: competed with the model forward for a core. Annotating the 530-abstract sample took 35-38 s
#: with the default and 33 s with this (docs/benchmarks.md).
LOCAL_IDLE_WORKERS = max(8, os.cpu_count() or 1)

#: Variables forwarded to the workers of an existing cluster, so they read the same storage and hub.
FORWARDED_ENV_VARS = (*STORAGE_ENV_VARS, "HF_HOME", "HF_HUB_OFFLINE", "BIOBERT_RAY_CACHE")


def connect(address: str | None = None) -> None:
    """Start or join Ray once per process.

    ``address`` (or ``$RAY_ADDRESS``) joins an existing cluster and forwards the storage variables
    of :data:`FORWARDED_ENV_VARS` to its workers; with neither, a local Ray starts on this machine,
    whose workers inherit this process's environment and which keeps up to
    :data:`LOCAL_IDLE_WORKERS` idle workers. Inside a submitted Ray job, ``RAY_ADDRESS`` is
    already set and the job's own runtime environment is kept.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict = {"logging_level": logging.WARNING, "log_to_driver": True}
    in_job = "RAY_JOB_ID" in os.environ or "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ
    if address and not in_job:
        env = {k: os.environ[k] for k in FORWARDED_ENV_VARS if k in os.environ}
        if env:
            kwargs["runtime_env"] = {"env_vars": env}
    if not address:
        kwargs["include_dashboard"] = False
        kwargs["_system_config"] = {"num_workers_soft_limit": LOCAL_IDLE_WORKERS}
    ray.init(address=address, **kwargs)
    ray.data.DataContext.get_current().enable_progress_bars = False
