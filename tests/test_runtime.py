"""What a driver joining a cluster sends there: non-secret settings only, never credentials.

A runtime_env is kept by the cluster's GCS and shown by its dashboard and state API, and AWS keys in
it would override the nodes' instance profile; no test here starts Ray.
"""

from __future__ import annotations

import re

import pytest
import ray
import ray.data

from biobert_ray import runtime, storage

#: Credentials a laptop commonly has in its environment.
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEXAMPLE",
    "AWS_SECURITY_TOKEN": "FwoGZXIvYXdzEXAMPLE",
    "AWS_PROFILE": "my-laptop-profile",
    "AWS_SHARED_CREDENTIALS_FILE": "/home/me/.aws/credentials",
    "HF_TOKEN": "hf_EXAMPLE",
}
#: Settings the workers need to reach the same storage and hub: forwarded.
SETTINGS = {
    "AWS_DEFAULT_REGION": "us-west-2",
    "AWS_REGION": "us-west-2",
    "AWS_ENDPOINT_URL": "http://minio.internal:9000",
    "HF_HOME": "/data/hf",
    "HF_HUB_OFFLINE": "1",
    "BIOBERT_RAY_CACHE": "/data/cache",
}


def test_forwarded_env_keeps_settings_and_drops_credentials():
    environ = {**SECRETS, **SETTINGS, "HOME": "/home/me", "PATH": "/usr/bin"}
    assert runtime.forwarded_env(environ) == SETTINGS
    assert runtime.forwarded_env(SECRETS) == {}


def test_no_forwarded_name_is_a_credential():
    secret_like = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL|PROFILE")
    for name in (*storage.STORAGE_ENV_VARS, *runtime.FORWARDED_ENV_VARS):
        assert not secret_like.search(name), f"{name} must not be forwarded to a cluster"
    assert set(storage.STORAGE_ENV_VARS) <= set(runtime.FORWARDED_ENV_VARS)


def test_joining_a_cluster_sends_no_credentials(monkeypatch):
    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    context = ray.data.DataContext.get_current()
    monkeypatch.setattr(context, "enable_progress_bars", context.enable_progress_bars)  # restored after
    for name in ("RAY_ADDRESS", "RAY_JOB_ID", "RAY_JOB_CONFIG_JSON_ENV_VAR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**SECRETS, **SETTINGS}.items():
        monkeypatch.setenv(name, value)

    runtime.connect("ray://head.example:10001")

    (kwargs,) = calls
    assert kwargs["address"] == "ray://head.example:10001"
    env_vars = kwargs["runtime_env"]["env_vars"]
    assert env_vars == SETTINGS
    assert not set(SECRETS) & set(env_vars)
    assert not any(value in str(kwargs) for value in SECRETS.values())


def test_options_of_a_local_ray_are_refused_with_a_cluster_address():
    with pytest.raises(ValueError, match=r"options of a local Ray \(num_cpus\) given with a cluster address"):
        runtime.connect("ray://head:10001", num_cpus=2)
