"""cluster.yaml passes Ray's own cluster-launcher validation and says what the product needs.

The checks are the ones `ray up` runs before it touches the cloud: ``prepare_config`` (merge with the
AWS defaults, docker checks, per-node-type worker bounds) then ``validate_config`` (Ray's JSON schema
plus its cross-field rules). No cloud calls are made.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from jsonschema import ValidationError
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = REPO / "cluster.yaml"


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def ray_up_checks(config: dict) -> dict:
    """What `ray up` does to the file before it contacts the provider; raises when the file is invalid."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_is_valid_and_fits_the_product(raw, monkeypatch):
    monkeypatch.chdir(REPO)  # `ray up cluster.yaml` is run from the repository root
    config = ray_up_checks(raw)

    assert config["provider"]["type"] == "aws"
    assert config["provider"]["region"]

    node_types = config["available_node_types"]
    head = node_types[config["head_node_type"]]
    assert head["resources"].get("CPU", 0) >= 1
    assert head["resources"].get("GPU", 0) == 0, "the head must not advertise GPUs"
    assert head["max_workers"] == 0

    gpu_types = {name: t for name, t in node_types.items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu_types, "no worker node type offers a GPU"
    for name, node_type in gpu_types.items():
        assert name != config["head_node_type"]
        assert node_type["min_workers"] == 0, "GPU workers should scale from zero"
        assert 1 <= node_type["max_workers"] <= config["max_workers"]

    # Every image is pinned to one Ray release: {x.y.z}-py{XY}-{cpu|gpu|cuXXX}, never latest/nightly.
    docker = config["docker"]
    images = [docker[k] for k in ("image", "head_image", "worker_image") if docker.get(k)]
    images += [
        t["docker"]["worker_image"] for t in node_types.values() if t.get("docker", {}).get("worker_image")
    ]
    assert images
    for image in images:
        name, _, tag = image.partition(":")
        assert name == "rayproject/ray"
        assert re.fullmatch(r"\d+\.\d+\.\d+-py3\d+-(cpu|gpu|cu\d+)", tag), f"image not pinned: {image}"

    # This repository is synced to every node and installed from there, on head and workers alike.
    mounts = {remote.rstrip("/"): local for remote, local in config["file_mounts"].items()}
    assert "~/biobert_ray" in mounts
    source = (REPO / Path(mounts["~/biobert_ray"]).expanduser()).resolve()
    assert re.search(r'^name = "biobert-ray"$', (source / "pyproject.toml").read_text(), re.M)
    install = "pip install -e ~/biobert_ray"
    assert install in raw["setup_commands"]
    assert install in config["head_setup_commands"]
    assert install in config["worker_setup_commands"]
    assert ".gitignore" in config["rsync_filter"], "the local .venv would be synced to every node"


@pytest.mark.parametrize(
    ("break_it", "error", "message"),
    [
        pytest.param(
            lambda c: c.update(max_worker=8), ValidationError, "max_worker", id="unknown-top-level-key"
        ),
        pytest.param(
            lambda c: c.update(max_workers="eight"), ValidationError, "integer", id="max_workers-str"
        ),
        pytest.param(
            lambda c: c["available_node_types"]["gpu_worker"].pop("node_config"),
            ValidationError,
            "node_config",
            id="no-node-config",
        ),
        pytest.param(
            lambda c: c.update(head_node_type="no_such_type"), ValueError, "head_node_type", id="unknown-head"
        ),
        pytest.param(
            lambda c: c["available_node_types"]["gpu_worker"].update(min_workers=99),
            ValueError,
            "min_workers",
            id="min-above-max",
        ),
    ],
)
def test_broken_copies_fail_validation(raw, monkeypatch, break_it, error, message):
    monkeypatch.chdir(REPO)
    ray_up_checks(raw)  # the original passes ...
    broken = copy.deepcopy(raw)
    break_it(broken)
    with pytest.raises(error, match=message):  # ... and each broken copy is refused
        ray_up_checks(broken)
