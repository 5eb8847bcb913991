"""Annotation under faults: a killed actor, a row group that always kills its actor, a killed driver,
a second run on the same output. Each run's table must equal a clean run's, row for row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import psutil
import pytest
import ray
from conftest import REPO

from biobert_ray import annotate, lease
from biobert_ray.annotate import stages
from biobert_ray.config import AnnotateConfig

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def articles(medline_160) -> str:
    return medline_160


def config(articles: str, model: str, out: Path, **kw) -> AnnotateConfig:
    return AnnotateConfig(articles=articles, model=(model,), out=str(out), cpus_per_actor=0.5, **kw)


def rows(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "*.parquet").drop("run_id").sort(pl.all())


@pytest.fixture(scope="module")
def clean(articles, tiny_ner_model, tmp_path_factory) -> pl.DataFrame:
    out = tmp_path_factory.mktemp("clean") / "entities"
    report = annotate.run("ner", config(articles, tiny_ner_model, out), log=lambda *_: None)
    assert report["status"] == "ok" and report["counts"]["articles"] == 160
    return rows(out)


def wait_for(condition, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def parts(out: Path) -> list[Path]:
    return list(out.glob("_parts/*/*.parquet"))


def predictor_processes() -> list[psutil.Process]:
    """The annotation actors of this test session's Ray (its processes descend from pytest)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if any("Predictor" in part for part in proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_a_killed_actor_is_restarted_and_the_table_equals_a_clean_run(
    articles, tiny_ner_model, clean, tmp_path
):
    out = tmp_path / "entities"
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(
            annotate.run("ner", config(articles, tiny_ner_model, out), log=lambda *_: None)
        )
    )
    thread.start()
    wait_for(lambda: parts(out) and predictor_processes(), what="the first row group")
    (victim,) = predictor_processes()
    victim.kill()
    thread.join(timeout=240)
    assert result["status"] == "ok" and result["counts"]["shards_processed"] == 2
    assert rows(out).equals(clean), "no row lost or duplicated"
    assert not psutil.pid_exists(victim.pid) or victim.status() == psutil.STATUS_ZOMBIE


def test_a_row_group_that_always_kills_its_actor_fails_alone_and_a_rerun_retries_only_it(
    articles, tiny_ner_model, clean, tmp_path, monkeypatch
):
    out = tmp_path / "entities"
    poisoned = pl.read_parquet(f"{articles}/pubmed25n0002.parquet")["pmid"][20]  # row group 1 of shard 2
    monkeypatch.setenv(stages.KILL_AT_PMID_ENV, str(poisoned))
    started = time.monotonic()
    report = annotate.run("ner", config(articles, tiny_ner_model, out), log=lambda *_: None)
    assert time.monotonic() - started < 200, "bounded: retries do not go on for ever"
    assert report["status"] == "failed"
    assert report["counts"]["shards_processed"] == 1 and report["counts"]["shards_failed"] == 1
    (failed,) = [s for s in report["shards"] if s["status"] == "failed"]
    assert failed["name"] == "pubmed25n0002" and [f["row_group"] for f in failed["failed_row_groups"]] == [1]
    errors = pl.read_parquet(out / "_errors" / "*.parquet")
    assert errors.select("shard", "row_group").rows() == [("pubmed25n0002", 1)]
    assert "died" in errors["reason"][0]
    assert not (out / "pubmed25n0002.parquet").exists(), "a failed shard is never published"
    assert len(parts(out)) == 4, "the shard's other row groups are kept for the rerun"

    monkeypatch.delenv(stages.KILL_AT_PMID_ENV)
    log: list[str] = []
    again = annotate.run("ner", config(articles, tiny_ner_model, out), log=log.append)
    assert again["status"] == "ok" and again["counts"]["shards_skipped"] == 1
    assert any("reusing 4 row group(s)" in line for line in log), log
    assert rows(out).equals(clean)
    assert not (out / "_errors" / "pubmed25n0002.parquet").exists() and not parts(out)


def test_a_killed_driver_leaves_nothing_half_written_and_the_rerun_equals_a_clean_run(
    articles, tiny_ner_model, clean, tmp_path
):
    out = tmp_path / "entities"
    command = [
        sys.executable, "-m", "biobert_ray.cli", "annotate", "ner", "--articles", articles,
        "--model", tiny_ner_model, "--out", str(out), "--cpus-per-actor", "0.5",
        "--address", ray.get_runtime_context().gcs_address,
    ]  # fmt: skip
    driver = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: parts(out) or driver.poll() is not None, timeout=180, what="the driver's first part")
        assert driver.poll() is None, driver.stderr.read().decode()
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert (out / lease.LEASE_FILE).exists(), "the killed run's lease is left behind"
    assert not list(out.glob("*.parquet")) or all(p.stat().st_size for p in out.glob("*.parquet"))
    log: list[str] = []
    report = annotate.run("ner", config(articles, tiny_ner_model, out), log=log.append)
    assert any("taking over the lease" in line and "no longer exists" in line for line in log), log
    assert report["status"] == "ok"
    assert rows(out).equals(clean), "no row lost or duplicated"
    assert not list(out.rglob("*.tmp-*")) and not parts(out) and not (out / lease.LEASE_FILE).exists()


def test_a_second_run_on_the_same_output_is_refused(articles, tiny_ner_model, tmp_path):
    out = tmp_path / "entities"
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(
            annotate.run("ner", config(articles, tiny_ner_model, out), log=lambda *_: None)
        )
    )
    thread.start()
    wait_for(lambda: (out / lease.LEASE_FILE).exists(), what="the first run's lease")
    with pytest.raises(lease.LeaseHeldError, match="another run is writing this output"):
        annotate.run("ner", config(articles, tiny_ner_model, out), log=lambda *_: None)
    thread.join(timeout=240)
    assert result["status"] == "ok", "the first run was not disturbed"
    assert not (out / lease.LEASE_FILE).exists()
