"""Shared fixtures: a real S3-compatible server, a local Ray, a Ray head for job submission.

The S3 server (moto in server mode on 127.0.0.1) starts first and its endpoint goes into the
environment, so every Ray worker started afterwards inherits it and reaches the same server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from biobert_ray.runtime import (
    LOCAL_IDLE_WORKERS,
    LOCAL_TRAIN_ENV,
    PREEMPTION_WATCHER_ENV_VAR,
    TRAIN_POLL_ENV_VAR,
    connect,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "biobert_ray" / "sample_data"
RAY_BIN = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def s3_endpoint() -> str:
    """A moto S3 server on loopback for the whole session; AWS_* variables point at it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    yield endpoint
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new empty bucket on the session's S3 server; returns ``s3://<name>``."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def ray_local(s3_endpoint: str):
    """One local Ray for the session (2 CPUs, a small object store), started as the commands start a
    local Ray (:func:`biobert_ray.runtime.connect`: idle workers kept, no preemption watcher)."""
    import ray

    connect(num_cpus=2, object_store_memory=600 * 1024**2)
    yield ray
    ray.shutdown()


def _ray_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop(PREEMPTION_WATCHER_ENV_VAR, None)  # set by the session's local Ray; a cluster keeps Ray's default
    # a head of one small machine: its training runs poll their workers as a local Ray's do
    env[TRAIN_POLL_ENV_VAR] = LOCAL_TRAIN_ENV[TRAIN_POLL_ENV_VAR]
    env.update(
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # keep the node on 127.0.0.1
        RAY_AUTH_MODE="token",  # the default of `ray start`; clients must send the same token
        RAY_AUTH_TOKEN=uuid.uuid4().hex + uuid.uuid4().hex,
        RAY_USAGE_STATS_ENABLED="0",
        # keep idle workers as a local Ray of `biobert_ray.runtime.connect` does (Ray's default of one
        # per CPU kills them after a second idle on this 2-CPU head, and each new one imports torch again)
        RAY_num_workers_soft_limit=str(LOCAL_IDLE_WORKERS),
    )
    return env


def _stop_head(temp_dir: Path) -> None:
    """Stop only the processes of the head started in ``temp_dir`` (and their children)."""
    import psutil

    procs = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(str(temp_dir) in arg for arg in proc.info["cmdline"] or []):
                procs.append(proc)
                procs.extend(proc.children(recursive=True))
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    # workers and the dashboard exit within about a second; the GCS, raylet, runtime-env agent and
    # autoscaler monitor outlast 10 s on SIGTERM (every run), so the rest are killed after 2 s
    _, alive = psutil.wait_procs(procs, timeout=2)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


@pytest.fixture(scope="session")
def ray_head(s3_endpoint: str):
    """A `ray start --head` cluster on loopback with free ports; yields (dashboard URL, env)."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rayhead", dir="/tmp"))
    env = _ray_env()
    dashboard_port = free_port()
    cmd = [
        RAY_BIN, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(free_port()),
        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
        "--ray-client-server-port", str(free_port()), "--temp-dir", str(temp_dir),
        # the session's local Ray holds the default agent ports: give this head its own
        "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
        "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port()),
        "--num-cpus", "2", "--object-store-memory", str(600 * 1024**2), "--disable-usage-stats",
    ]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
    try:
        yield f"http://127.0.0.1:{dashboard_port}", env
    finally:
        _stop_head(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def submit_job(ray_head, *entrypoint: str, timeout: float = 240) -> str:
    """`ray job submit` from the repo root and wait; returns the logs, fails unless the job succeeded."""
    address, env = ray_head
    submit_id = f"test-{uuid.uuid4().hex[:8]}"
    cmd = [
        RAY_BIN,
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        str(REPO),
        "--submission-id",
        submit_id,
    ]
    deadline = time.monotonic() + 120
    while True:  # right after `ray start` the head's job agent may not be up yet
        proc = subprocess.run(
            [*cmd, "--no-wait", "--", *entrypoint],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode == 0 or "No available agent" not in proc.stderr or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert proc.returncode == 0, proc.stderr
    # polled in-process over the head's HTTP API: a `ray job status` process per poll (0.6 s of CPU,
    # every 2 s) took a core's fifth from the job under test on this 2-core machine
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address, headers={"authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"})
    deadline = time.monotonic() + timeout
    status = client.get_job_status(submit_id)
    while not status.is_terminal() and time.monotonic() < deadline:
        time.sleep(1)
        status = client.get_job_status(submit_id)
    logs = client.get_job_logs(submit_id)
    assert status == JobStatus.SUCCEEDED, f"job {submit_id} did not succeed: {status}\n{logs}"
    return logs


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """Directory of a randomly initialised 2-layer BERT with a WordPiece vocab trained on bundled text."""
    from tiny_bert import build_tiny_bert

    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny_bert")))


def save_tiny_ner_model(
    tiny_bert: str, out: Path, entity_type: str, seed: int = 1, o_bias: float = 0.0
) -> str:
    """A tiny untrained NER model (B/I/O of ``entity_type``) saved the way `finetune` saves, windows of 24.

    Its head is initialised from ``seed`` and biased so that it predicts mentions of all shapes: about
    one token in ten to twenty begins a mention. ``o_bias`` raises the bias of ``O``: 0.25 gives about
    five times fewer mentions, and 25 times fewer pairs for relation tests that need no more.
    """
    import torch
    from transformers import AutoModelForTokenClassification

    from biobert_ray import models

    labels = ["O", f"B-{entity_type}", f"I-{entity_type}"]
    torch.manual_seed(seed)
    model = AutoModelForTokenClassification.from_pretrained(
        tiny_bert,
        num_labels=3,
        id2label=dict(enumerate(labels)),
        label2id={x: i for i, x in enumerate(labels)},
    )
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([o_bias, 0.2, 0.4]))
    metadata = {"task": "ner", "label_list": labels, "entity_types": [entity_type], "max_seq_length": 24}
    models.save(model, models.load_tokenizer(tiny_bert), str(out), metadata)
    return str(out)


def save_tiny_re_model(tiny_bert: str, out, argument_types: tuple[str, ...] = ("DISEASE", "GENE")) -> str:
    """A tiny untrained GAD-style relation model (labels 0/1, anonymised marking, by default of
    @GENE$/@DISEASE$ pairs; one argument type relates any two mentions of that type)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from biobert_ray import models

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert, num_labels=2, id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1}
    )
    metadata = {
        "task": "re", "label_list": ["0", "1"], "marking": "anonymized", "negative_label": "0",
        "argument_types": list(argument_types), "max_seq_length": 64,
    }  # fmt: skip
    models.save(model, models.load_tokenizer(tiny_bert), str(out), metadata)
    return str(out)


def save_tiny_qa_model(tiny_bert: str, out) -> str:
    """A tiny untrained span (question answering) model."""
    import torch
    from transformers import AutoModelForQuestionAnswering

    from biobert_ray import models

    torch.manual_seed(0)
    model = AutoModelForQuestionAnswering.from_pretrained(
        tiny_bert, num_labels=2, id2label={0: "start", 1: "end"}, label2id={"start": 0, "end": 1}
    )
    metadata = {"task": "qa", "label_list": ["start", "end"], "max_seq_length": 96}
    models.save(model, models.load_tokenizer(tiny_bert), str(out), metadata)
    return str(out)


def save_tiny_yesno_model(tiny_bert: str, out, labels: tuple[str, ...] = ("no", "yes")) -> str:
    """A tiny untrained yes/no (sequence classification) model."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from biobert_ray import models

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )  # fmt: skip
    metadata = {"task": "yesno", "label_list": list(labels), "max_seq_length": 96}
    models.save(model, models.load_tokenizer(tiny_bert), str(out), metadata)
    return str(out)


@pytest.fixture(scope="session")
def tiny_ner_model(tiny_bert, tmp_path_factory) -> str:
    """A tiny untrained Disease tagger (see :func:`save_tiny_ner_model`)."""
    return save_tiny_ner_model(tiny_bert, tmp_path_factory.mktemp("tiny_ner") / "model", "Disease")


@pytest.fixture(scope="session")
def sample_articles(ray_local, tmp_path_factory) -> str:
    """The bundled MEDLINE sample ingested into an articles table (609 articles in 3 shards)."""
    from biobert_ray import ingest
    from biobert_ray.config import IngestConfig

    out = str(tmp_path_factory.mktemp("sample") / "articles")
    ingest.run(IngestConfig(input=(str(SAMPLES / "pubmed"),), out=out), log=lambda *_: None)
    return out


def medline_records(count: int) -> list[str]:
    """The first ``count`` ``<MedlineCitation>`` records of the bundled 2016 MEDLINE file, as XML text."""
    import gzip
    import re

    text = gzip.decompress((SAMPLES / "pubmed" / "medline16n0902.xml.gz").read_bytes()).decode()
    return re.findall(r"<MedlineCitation .*?</MedlineCitation>", text, re.S)[:count]


def write_medline(path: Path, records: list[str]) -> Path:
    """``records`` as one MEDLINE file (gzipped when ``path`` ends in ``.gz``)."""
    import gzip

    data = f"<MedlineCitationSet>{''.join(records)}</MedlineCitationSet>".encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.fixture(scope="session")
def medline_160(ray_local, tmp_path_factory) -> str:
    """160 real abstracts ingested in two shards of 5 row groups each (16 articles per row group)."""
    from biobert_ray import ingest
    from biobert_ray.config import IngestConfig

    inputs = tmp_path_factory.mktemp("medline")
    records = medline_records(160)
    write_medline(inputs / "pubmed25n0001.xml", records[:80])
    write_medline(inputs / "pubmed25n0002.xml", records[80:])
    out = str(tmp_path_factory.mktemp("articles") / "articles")
    ingest.run(IngestConfig(input=(str(inputs),), out=out, rows_per_group=16), log=lambda *_: None)
    return out


def run_notebook(name: str, out: Path) -> str:
    """Execute ``notebooks/<name>`` with ``BIOBERT_RAY_OUT=out`` (and ``out`` as its directory); returns
    what its cells printed. Fails if any cell raised."""
    import os

    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(REPO / "notebooks" / name, as_version=4)
    previous = os.environ.get("BIOBERT_RAY_OUT")
    os.environ["BIOBERT_RAY_OUT"] = str(out)
    try:
        NotebookClient(
            notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(out)}}
        ).execute()
    finally:
        if previous is None:
            del os.environ["BIOBERT_RAY_OUT"]
        else:
            os.environ["BIOBERT_RAY_OUT"] = previous
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    return "".join(o.get("text", "") for o in outputs)
