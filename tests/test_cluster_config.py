"""cluster.yaml passes Ray's own cluster-launcher validation and says what the product needs.

The checks are the ones `ray up` runs before it touches the cloud: ``prepare_config`` (merge with the
AWS defaults, docker checks, per-node-type worker bounds) then ``validate_config`` (Ray's JSON schema
plus its cross-field rules). No real cloud calls are made: the security checks run Ray's own AWS
bootstrap steps (IAM role, subnets, security group) against moto's in-process EC2/IAM, and Ray's own
working_dir packaging on a temporary directory.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import shutil
import zipfile
from pathlib import Path

import boto3
import pytest
import yaml
from conftest import REPO
from jsonschema import ValidationError
from ray._private.runtime_env.packaging import create_package
from ray.autoscaler._private.aws import config as aws_config
from ray.autoscaler._private.aws import utils as aws_utils
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = REPO / "cluster.yaml"
README = REPO / "README.md"
#: Dashboard / job submission API, GCS, Ray Client: never reachable from outside the cluster.
RAY_PORTS = (8265, 6379, 10001)
#: Credential files that must never leave this machine, and files that must be uploaded.
CREDENTIAL_FILES = (".env", "key.pem", ".aws/credentials", ".aws/config", "jobs/.env", ".ssh/id_ed25519")
NORMAL_FILES = ("jobs/ingest.py", "biobert_ray/runtime.py", "README.md")


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


# --- security: IAM, network, dashboard, uploads ------------------------------------------------------


def readme_cluster_section() -> str:
    text = README.read_text()
    start = text.index("## On a cluster\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


@pytest.fixture
def moto_aws(monkeypatch):
    """moto's in-process AWS for Ray's bootstrap steps (not the session's S3 server, nor real AWS)."""
    from moto import mock_aws

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    def clear_ray_boto_caches():
        aws_utils.resource_cache.cache_clear()
        aws_utils.client_cache.cache_clear()
        aws_config._get_subnets_or_die.cache_clear()

    clear_ray_boto_caches()
    with mock_aws():
        yield
    clear_ray_boto_caches()


def test_every_node_type_has_its_own_instance_profile(raw, monkeypatch):
    monkeypatch.chdir(REPO)
    config = ray_up_checks(raw)
    arns = {}
    for name, node_type in config["available_node_types"].items():
        profile = node_type["node_config"].get("IamInstanceProfile")
        assert profile, f"node type {name} has no IamInstanceProfile"
        assert re.fullmatch(r"arn:aws:iam::(ACCOUNT_ID|\d{12}):instance-profile/[\w+=,.@-]+", profile["Arn"])
        arns[name] = profile["Arn"]
    head = config["head_node_type"]
    for name, arn in arns.items():
        if name != head:
            assert arn != arns[head], f"{name} would get the head's EC2 (autoscaler) rights"
    assert not any("ray-autoscaler" in arn for arn in arns.values()), "Ray's default role has full EC2 and S3"


def test_ray_up_creates_no_default_role_when_the_head_has_a_profile(raw, monkeypatch, moto_aws):
    monkeypatch.chdir(REPO)
    config = ray_up_checks(raw)
    config["head_node"] = {}  # as bootstrap_aws does before this step
    aws_config._configure_iam_role(config)
    iam = boto3.client("iam", region_name=config["provider"]["region"])
    assert iam.list_roles()["Roles"] == []  # no ray-autoscaler-v1 with EC2/S3 full access
    assert iam.list_instance_profiles()["InstanceProfiles"] == []
    assert "IamInstanceProfile" not in config["head_node"]


def check_ingress(rules: list[dict]) -> None:
    """SSH from explicit ranges, or all traffic from the cluster's own group; nothing else."""
    assert rules
    for rule in rules:
        cidrs = [r["CidrIp"] for r in rule.get("IpRanges", [])]
        cidrs += [r["CidrIpv6"] for r in rule.get("Ipv6Ranges", [])]
        assert not rule.get("PrefixListIds"), rule
        if rule["IpProtocol"] == "-1":  # intra-cluster: only from security groups, never an address range
            assert rule.get("UserIdGroupPairs") and not cidrs, rule
            continue
        assert rule["IpProtocol"] == "tcp", rule
        assert rule["FromPort"] == rule["ToPort"] == 22, f"only SSH may be open: {rule}"
        assert not any(rule["FromPort"] <= port <= rule["ToPort"] for port in RAY_PORTS), rule
        assert not rule.get("UserIdGroupPairs"), rule
        assert cidrs, rule
        for cidr in cidrs:
            assert cidr not in ("0.0.0.0/0", "::/0"), f"SSH open to the world: {rule}"
            assert ipaddress.ip_network(cidr).prefixlen >= 8, f"SSH open to a huge range: {cidr}"


def test_security_group_allows_only_ssh_from_the_users_range(raw, monkeypatch):
    monkeypatch.chdir(REPO)
    config = ray_up_checks(raw)
    group = config["provider"]["security_group"]
    assert group["GroupName"]
    rules = group["IpPermissions"]
    assert all(rule["IpProtocol"] == "tcp" for rule in rules), "cluster.yaml rules are SSH only"
    check_ingress(rules)
    for name, node_type in config["available_node_types"].items():
        # a SecurityGroupIds here would bypass provider.security_group
        assert "SecurityGroupIds" not in node_type["node_config"], name
        assert "NetworkInterfaces" not in node_type["node_config"], name
    # the head keeps Ray's default start commands
    assert "head_start_ray_commands" not in raw
    assert "worker_start_ray_commands" not in raw


def launch_groups(config: dict) -> list[dict]:
    """Ray's subnet and security-group steps of `ray up`; the groups the nodes launch in."""
    config = aws_config._configure_subnet(copy.deepcopy(config))
    config = aws_config._configure_security_group(config)
    ids = {i for t in config["available_node_types"].values() for i in t["node_config"]["SecurityGroupIds"]}
    ec2 = boto3.client("ec2", region_name=config["provider"]["region"])
    return ec2.describe_security_groups(GroupIds=sorted(ids))["SecurityGroups"]


def test_ray_launches_nodes_in_the_precreated_group_unchanged(raw, monkeypatch, moto_aws):
    """The README creates the group first: SSH from the user's range, all traffic from the group."""
    monkeypatch.chdir(REPO)
    config = ray_up_checks(raw)
    wanted = config["provider"]["security_group"]
    ec2 = boto3.client("ec2", region_name=config["provider"]["region"])
    group_id = ec2.create_security_group(GroupName=wanted["GroupName"], Description="biobert-ray")["GroupId"]
    from_itself = {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group_id}]}
    rules = [*wanted["IpPermissions"], from_itself]
    ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=rules)

    (group,) = launch_groups(config)
    assert group["GroupId"] == group_id
    check_ingress(group["IpPermissions"])
    self_rules = [r for r in group["IpPermissions"] if r["IpProtocol"] == "-1"]
    assert [p["GroupId"] for r in self_rules for p in r["UserIdGroupPairs"]] == [group_id]


def test_a_group_ray_creates_itself_opens_ssh_to_the_world(raw, monkeypatch, moto_aws):
    """Why cluster.yaml and the README say to create the group first: Ray 2.60 adds SSH from 0.0.0.0/0
    to a group it creates, next to the configured rules. Should this fail after a Ray upgrade, Ray no
    longer does so, and the docs can drop that step."""
    monkeypatch.chdir(REPO)
    (group,) = launch_groups(ray_up_checks(raw))
    ssh = [r for r in group["IpPermissions"] if r.get("FromPort") == 22]
    assert "0.0.0.0/0" in {r["CidrIp"] for rule in ssh for r in rule["IpRanges"]}


def test_security_group_commands_and_names_match_cluster_yaml(raw):
    section = readme_cluster_section()
    assert f"--group-name {raw['provider']['security_group']['GroupName']}" in section
    assert '--protocol tcp --port 22 --cidr "$MY_IP/32"' in section
    assert '--protocol all --source-group "$SG"' in section
    for node_type in raw["available_node_types"].values():
        profile = node_type["node_config"]["IamInstanceProfile"]["Arn"].rsplit("/", 1)[1]
        assert profile in section, f"the README does not create {profile}"


def test_dashboard_is_reached_only_through_the_ssh_tunnel():
    for name, text in (("cluster.yaml", CLUSTER_YAML.read_text()), ("README", readme_cluster_section())):
        assert "ray dashboard cluster.yaml" in text, name
        assert "--address http://127.0.0.1:8265" in text, name
        assert "HEAD:8265" not in text, f"{name} still submits to the head's public address"
        assert not re.search(r"open (it|8265|the port) to", text), f"{name} advises opening the port"


def policy_actions(statement: dict) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def test_readme_iam_policies_are_least_privilege(raw):
    blocks = re.findall(r"```json\n(.*?)```", readme_cluster_section(), re.S)
    policies = [json.loads(block) for block in blocks]
    assert len(policies) == 2
    for policy in policies:
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            assert not any(a == "*" or a.endswith(":*") for a in policy_actions(statement)), statement
    s3, autoscaler = policies
    read = {"s3:GetObject", "s3:ListBucket"}
    write = {"s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:DeleteObject", "s3:AbortMultipartUpload"}
    for statement in s3["Statement"]:
        assert set(policy_actions(statement)) in (read, write), statement
        assert all(re.fullmatch(r"arn:aws:s3:::[a-z0-9.-]+(/\*)?", r) for r in statement["Resource"])
    assert {a.split(":")[0] for s in autoscaler["Statement"] for a in policy_actions(s)} == {"ec2", "iam"}
    (pass_role,) = [s for s in autoscaler["Statement"] if "iam:PassRole" in policy_actions(s)]
    worker_profiles = {
        t["node_config"]["IamInstanceProfile"]["Arn"].rsplit("/", 1)[1]
        for name, t in raw["available_node_types"].items()
        if name != raw["head_node_type"]
    }
    assert {pass_role["Resource"].rsplit("/", 1)[1]} == worker_profiles  # role named as its profile
    (terminate,) = [s for s in autoscaler["Statement"] if "ec2:TerminateInstances" in policy_actions(s)]
    this_cluster = {"StringEquals": {"aws:ResourceTag/ray-cluster-name": raw["cluster_name"]}}
    assert terminate["Condition"] == this_cluster


def uploaded_by_ray(tmp_path: Path, ignore_files: tuple[str, ...], include_gitignore: bool) -> set[str]:
    """What `ray job submit --working-dir` packs (Ray's own packaging) from a directory holding this
    repository's ignore files, credential files and ordinary files."""
    src = tmp_path / "src"
    for name in (*CREDENTIAL_FILES, *NORMAL_FILES):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text("x")
    for name in ignore_files:
        assert (REPO / name).is_file(), f"{name} is missing"
        shutil.copy(REPO / name, src / name)
    package = tmp_path / "package.zip"
    create_package(str(src), package, include_gitignore=include_gitignore)
    with zipfile.ZipFile(package) as zf:
        return {n for n in zf.namelist() if not n.endswith("/")}


@pytest.mark.parametrize(
    ("ignore_files", "include_gitignore"),
    [
        pytest.param((".gitignore", ".rayignore"), True, id="repository-as-is"),
        pytest.param((".rayignore",), False, id="rayignore-alone"),  # RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1
        pytest.param((".gitignore",), True, id="gitignore-alone"),  # also what `ray up`'s rsync reads
    ],
)
def test_working_dir_upload_leaves_credentials_out(tmp_path, ignore_files, include_gitignore):
    uploaded = uploaded_by_ray(tmp_path, ignore_files, include_gitignore)
    assert set(NORMAL_FILES) <= uploaded
    assert not set(CREDENTIAL_FILES) & uploaded


def test_rayignore_also_leaves_out_local_environments_and_outputs(tmp_path):
    src = tmp_path / "src"
    for name in (".venv/bin/python", "out/articles/a.parquet", ".git/config", "jobs/ingest.py"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text("x")
    shutil.copy(REPO / ".rayignore", src / ".rayignore")
    create_package(str(src), tmp_path / "package.zip", include_gitignore=False)
    with zipfile.ZipFile(tmp_path / "package.zip") as zf:
        assert {n for n in zf.namelist() if not n.endswith("/")} == {".rayignore", "jobs/ingest.py"}


def test_rsync_to_the_nodes_reads_both_ignore_files(raw):
    assert {".gitignore", ".rayignore"} <= set(raw["rsync_filter"])
