"""Connecting to Ray: a local Ray by default, an existing cluster when an address is given."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import ray
import ray.data

from biobert_ray import console
from biobert_ray.storage import STORAGE_ENV_VARS

#: Idle worker processes a local Ray keeps (Ray's default is one per CPU). A worker that has run a
#: stage has torch and transformers imported; on a 2-core machine Ray's default killed it after a
#: second idle, so the next annotation stage started a fresh process (2.5 s of imports) that
#: competed with the model forward for a core. Annotating the 530-abstract sample took 35-38 s
#: with the default and 33 s with this (docs/benchmarks.md).
LOCAL_IDLE_WORKERS = max(8, os.cpu_count() or 1)

#: Variables forwarded to the workers of an existing cluster, so they read the same storage and hub:
#: non-secret settings only. Credentials (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
#: ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``HF_TOKEN``, ...) are never forwarded: the cluster's GCS
#: keeps a runtime_env, its dashboard and state API show it, and keys would override the nodes'
#: instance profile, which is how cluster nodes reach S3.
FORWARDED_ENV_VARS = (*STORAGE_ENV_VARS, "HF_HOME", "HF_HUB_OFFLINE", "BIOBERT_RAY_CACHE")

#: Ray Train's preemption watcher, an extra actor process per training run that polls whether the
#: run's nodes are being drained (spot instances of a cluster). A local Ray on one machine has no
#: such nodes, so :func:`connect` turns it off there unless the variable is set.
PREEMPTION_WATCHER_ENV_VAR = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"

#: How often Ray Train's controller polls its workers (Ray's default: every 2 s). Each step of a run
#: (workers started, running, finished) waits for the next poll, so a short local run spent seconds
#: waiting: a 6-step fine-tuning took 21 s at 2 s and 16 s at 0.25 s on a 2-core machine. A poll is
#: one small actor call per worker, so a local Ray polls every 0.25 s unless the variable is set.
TRAIN_POLL_ENV_VAR = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"

#: Ray Train settings :func:`connect` gives a local Ray where the environment sets none; a cluster
#: keeps Ray's defaults. Read by Ray Train when a run starts.
LOCAL_TRAIN_ENV = {PREEMPTION_WATCHER_ENV_VAR: "0", TRAIN_POLL_ENV_VAR: "0.25"}


def forwarded_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of ``environ`` that :func:`connect` passes to a cluster's workers.

    Only the names in :data:`FORWARDED_ENV_VARS` (an allow-list of non-secret settings); anything
    else, credentials included, stays on this machine.
    """
    return {k: environ[k] for k in FORWARDED_ENV_VARS if k in environ}


def connect(address: str | None = None, **local_options: Any) -> None:
    """Start or join Ray once per process.

    ``address`` (or ``$RAY_ADDRESS``) joins an existing cluster and forwards the non-secret settings
    of :data:`FORWARDED_ENV_VARS` to its workers (:func:`forwarded_env`; never credentials: the
    cluster's nodes use their instance profile); with neither, a local Ray starts on this machine,
    whose workers inherit this process's environment, with no dashboard, up to
    :data:`LOCAL_IDLE_WORKERS` idle workers and :data:`LOCAL_TRAIN_ENV` for training runs (no
    preemption watcher, workers polled every 0.25 s) where the environment sets none;
    ``local_options`` (``ray.init`` arguments such as ``num_cpus``) are passed to that local Ray only
    (ValueError with an address). Inside a submitted Ray job, ``RAY_ADDRESS`` is already set and the
    job's own runtime environment is kept. Ray's own log lines and the workers' output stay off the
    console unless ``console.VERBOSE`` (:func:`biobert_ray.console.quiet_ray`), and Ray Data draws no
    progress bars.
    """
    address = address or os.environ.get("RAY_ADDRESS")
    if address and local_options:
        raise ValueError(f"options of a local Ray ({', '.join(local_options)}) given with a cluster address")
    if ray.is_initialized():
        return
    console.quiet_ray()
    kwargs: dict = {"logging_level": logging.INFO, "log_to_driver": console.VERBOSE}
    in_job = "RAY_JOB_ID" in os.environ or "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ
    if address and not in_job:
        env = forwarded_env(os.environ)
        if env:
            kwargs["runtime_env"] = {"env_vars": env}
    if not address:
        kwargs["include_dashboard"] = False
        kwargs["_system_config"] = {"num_workers_soft_limit": LOCAL_IDLE_WORKERS}
        kwargs.update(local_options)
        for name, value in LOCAL_TRAIN_ENV.items():
            os.environ.setdefault(name, value)
    ray.init(address=address, **kwargs)
    ray.data.DataContext.get_current().enable_progress_bars = False
