"""Connecting to Ray: a local Ray by default, an existing cluster when an address is given."""

from __future__ import annotations

import logging
import os

import ray

from biobert_ray.storage import STORAGE_ENV_VARS

#: Variables forwarded to the workers of an existing cluster, so they read the same storage and hub.
FORWARDED_ENV_VARS = (*STORAGE_ENV_VARS, "HF_HOME", "HF_HUB_OFFLINE", "BIOBERT_RAY_CACHE")


def connect(address: str | None = None) -> None:
    """Start or join Ray once per process.

    ``address`` (or ``$RAY_ADDRESS``) joins an existing cluster and forwards the storage variables
    of :data:`FORWARDED_ENV_VARS` to its workers; with neither, a local Ray starts on this machine,
    whose workers inherit this process's environment. Inside a submitted Ray job, ``RAY_ADDRESS`` is
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
    ray.init(address=address, **kwargs)
    ray.data.DataContext.get_current().enable_progress_bars = False
