"""Fault benchmark: rows lost and rows duplicated by ``annotate`` under real faults, against a clean run.

Every run annotates the same articles table with the same model and options, on one local Ray that
this script starts (``biobert_ray.runtime.connect()``), with real Parquet files and real processes
killed with real signals:

- data: the bundled MEDLINE sample (``biobert_ray/sample_data/pubmed``: 609 articles in 3 shards)
  ingested with ``rows_per_group=64``, so ``medline16n0902`` (604 articles) has 10 row groups and each
  small shard one (12 row groups in all);
- model: ``--model PATH`` (a fine-tuned NER model directory, e.g. ``out/demo/ner-disease`` from
  ``biobert-ray demo``); without it, an untrained Disease B/I/O head on the default base model
  (all-MiniLM-L6-v2, ``torch.manual_seed(0)``), saved once under ``--work`` and reused, so that every
  run of every invocation uses identical weights;
- options: ``precision="fp32"`` (scores bit-identical whatever the batch composition),
  ``cpus_per_actor`` left to choose, one model actor.

Faults, each in its own output directory under ``--work``:

1. **clean**: one ``annotate.run``; the reference table.
2. **actor killed**: SIGKILL to the Predictor actor's process when the first part file appears.
3. **row group that always kills its actor**: ``stages.KILL_AT_PMID_ENV`` set to a PMID of row group
   3 of ``medline16n0902``; the run must fail with that row group in ``_errors``; then a rerun without it.
4. **driver killed**: ``python -m biobert_ray.cli annotate ner ... --address <this Ray>`` killed with
   SIGKILL at its first part file, then the same run in this process (it takes over the lease).
5. **concurrent run**: a second ``annotate.run`` on the same output while the first holds the lease
   must raise ``LeaseHeldError``; the first run's table is compared.
6. **capped run**: ``max_articles=100``, then the same without the cap.
7. **changed model**: a complete run, then a rerun with a copy of the model at another path (compared
   without the ``model`` column, which must then hold only the copy's path).
8. **corrupt input**: the sample files copied with ``medline16n0902.xml.gz`` cut to its first third,
   ingested and annotated (the run must fail: the half-ingested shard is not read), then the whole
   file restored, re-ingested and annotated into the same output. The input file names are those of
   the clean run's ingest, so its table is the reference.

Rows are compared as multisets of whole rows without ``run_id``: per distinct row, the clean count c
and the faulted count f give ``lost = sum(max(0, c - f))`` and ``duplicated = sum(max(0, f - c))``.
Prints a markdown table (fault, what happened, rows lost, rows duplicated, seconds of the whole
scenario) and then the numbers as JSON. The exit status is 1 when any count is non-zero, when a
scenario could not be measured, or when a run did not behave as expected (the "UNEXPECTED" notes).
Before each scenario the script waits for the model actors of earlier runs to exit and prints the
1-minute load average: on a shared machine the seconds say as much about the neighbours as about us.

    python benchmarks/faults.py                               # --work /tmp/faults
    python benchmarks/faults.py --model out/demo/ner-disease --json /tmp/faults.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import polars as pl
import psutil
import pyarrow.parquet as pq
import ray

from biobert_ray import annotate, inference, ingest, lease, models
from biobert_ray.annotate import stages
from biobert_ray.config import AnnotateConfig, IngestConfig
from biobert_ray.runtime import connect
from biobert_ray.samples import sample_path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path(sample_path("pubmed"))
ROWS_PER_GROUP = 64
BIG_SHARD = "medline16n0902"
POISONED_ROW_GROUP = 3
LABELS = ["O", "B-Disease", "I-Disease"]
PRECISION = "fp32"
#: Longest wait for a run to reach a point (a part file, a lease) or to finish, in seconds.
TIMEOUT = 600.0


@dataclass
class Bench:
    """What every scenario shares: the work directory, the articles table, the model, the reference."""

    work: Path
    articles: str
    model: str
    verbose: bool
    row_groups: int
    clean: Counter = field(default_factory=Counter)
    clean_with_model: Counter = field(default_factory=Counter)


@dataclass
class Outcome:
    """One scenario's result: what happened, the row counts against the clean run, its wall time."""

    fault: str
    happened: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    lost: int | None = None
    duplicated: int | None = None
    rows: int | None = None
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def expect(self, condition: bool, what: str) -> None:
        """Note ``what`` as unexpected when ``condition`` is false."""
        if not condition:
            self.unexpected.append(what)


def build_model(work: Path) -> str:
    """The default model: an untrained Disease B/I/O head on the base model, saved once under ``work``."""
    out = work / "model-minilm-ner-seed0"
    if (out / models.METADATA_FILE).exists():
        return str(out)
    import torch
    from transformers import AutoModelForTokenClassification

    base = models.default_base_model()
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(
        base,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    metadata = {"task": "ner", "label_list": LABELS, "entity_types": ["Disease"], "max_seq_length": 128}
    models.save(model, models.load_tokenizer(base), str(out), metadata)
    return str(out)


def logger(lines: list[str], verbose: bool) -> Callable[[str], None]:
    """A ``log`` for the runs that keeps every line (and prints it with ``--verbose``)."""

    def log(line: str) -> None:
        lines.append(str(line))
        if verbose:
            print(f"    | {line}", flush=True)

    return log


def run_ingest(inputs: Path, out: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Ingest every file of ``inputs`` into the articles table ``out`` (64 articles per row group)."""
    config = IngestConfig(input=(str(inputs),), out=str(out), rows_per_group=ROWS_PER_GROUP)
    return ingest.run(config, log=log)


def annotate_config(bench: Bench, out: Path, model: str | None = None, **kw: Any) -> AnnotateConfig:
    """The one configuration every run uses, but for ``out`` (and what a scenario changes)."""
    return AnnotateConfig(
        articles=kw.pop("articles", bench.articles),
        model=(model or bench.model,),
        out=str(out),
        precision=PRECISION,
        **kw,
    )


def start_run(config: AnnotateConfig, log: Callable[[str], None]) -> tuple[threading.Thread, dict[str, Any]]:
    """``annotate.run("ner", config)`` in a thread; its report (or exception) lands in the returned dict."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["report"] = annotate.run("ner", config, log=log)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, name="annotate", daemon=True)
    thread.start()
    return thread, result


def finish_run(thread: threading.Thread, result: dict[str, Any]) -> dict[str, Any]:
    """Wait for a run started by :func:`start_run`; its report, or its exception raised here."""
    thread.join(timeout=TIMEOUT)
    if thread.is_alive():
        raise TimeoutError(f"the run did not finish within {TIMEOUT:.0f}s")
    if "error" in result:
        raise result["error"]
    return result["report"]


def wait_for(condition: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` every 50 ms until it is true; TimeoutError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def parts(out: Path) -> list[Path]:
    """Part files of unfinished shards."""
    return sorted(out.glob("_parts/*/*.parquet"))


def temporaries(out: Path) -> list[Path]:
    """Files a killed writer left half-written (``*.tmp-*``), anywhere under ``out``."""
    return sorted(out.rglob("*.tmp-*"))


def predictor_processes() -> list[psutil.Process]:
    """The model actors of this script's Ray (its processes descend from this one)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if any("Predictor" in part for part in proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


class PredictorWatch:
    """Samples the Predictor processes every 0.2 s while a run goes on: which new ones ran (``pids``)."""

    def __init__(self) -> None:
        self.pids: set[int] = set()
        self.before: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="predictor-watch", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.pids.update(p.pid for p in predictor_processes() if p.pid not in self.before)
            self._stop.wait(0.2)

    def __enter__(self) -> PredictorWatch:
        self.before = {p.pid for p in predictor_processes()}  # actors of an earlier run, still exiting
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def settle(timeout: float = 60.0) -> None:
    """Wait (up to ``timeout``) until the model actors of earlier runs have exited."""
    deadline = time.monotonic() + timeout
    while predictor_processes() and time.monotonic() < deadline:
        time.sleep(0.2)


def table(out: Path, drop_model: bool = False) -> Counter:
    """The multiset of output rows of ``out`` (``<out>/*.parquet``), without ``run_id`` (and ``model``)."""
    files = sorted(out.glob("*.parquet"))
    if not files:
        return Counter()
    frame = pl.read_parquet([str(f) for f in files]).drop("run_id")
    if drop_model:
        frame = frame.drop("model")
    return Counter(frame.rows())


def compare(outcome: Outcome, clean: Counter, faulted: Counter) -> None:
    """Fill ``outcome``'s rows lost and duplicated: faulted against clean, per distinct row."""
    outcome.lost = sum(max(0, n - faulted.get(row, 0)) for row, n in clean.items())
    outcome.duplicated = sum(max(0, n - clean.get(row, 0)) for row, n in faulted.items())
    outcome.rows = sum(faulted.values())


def describe(report: dict[str, Any]) -> str:
    """A run report in a few words: status, shards processed/skipped/failed, articles, seconds."""
    c = report["counts"]
    return (
        f"{report['status']} ({c['shards_processed']} processed, {c['shards_skipped']} skipped, "
        f"{c['shards_failed']} failed; {c['articles']} articles; {report['wall_seconds']:.1f}s)"
    )


def fresh(path: Path) -> Path:
    """``path`` emptied (removed if it exists); its parent created."""
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# --- the scenarios ---------------------------------------------------------------------------------


def clean_run(bench: Bench, outcome: Outcome) -> None:
    """1. One run, nothing injected: the reference table."""
    out = fresh(bench.work / "1-clean" / "entities")
    lines: list[str] = []
    report = annotate.run("ner", annotate_config(bench, out), log=logger(lines, bench.verbose))
    outcome.happened.append(f"status {describe(report)}")
    outcome.expect(
        report["status"] == "ok" and report["counts"]["articles"] == 609, "not ok with 609 articles"
    )
    bench.clean_with_model, bench.clean = table(out), table(out, drop_model=True)
    compare(outcome, bench.clean_with_model, bench.clean_with_model)
    outcome.details["counts"] = report["counts"]


def actor_killed(bench: Bench, outcome: Outcome) -> None:
    """2. SIGKILL to the Predictor actor when the first part file appears; the run must finish ok."""
    out = fresh(bench.work / "2-actor-killed" / "entities")
    lines: list[str] = []
    with PredictorWatch() as watch:
        thread, result = start_run(annotate_config(bench, out), logger(lines, bench.verbose))
        wait_for(lambda: parts(out) and predictor_processes(), "the first part file and the actor")
        victims = predictor_processes()
        done_before = len(parts(out))
        for victim in victims:
            os.kill(victim.pid, signal.SIGKILL)
        report = finish_run(thread, result)
    outcome.happened.append(
        f"SIGKILL to {len(victims)} Predictor process(es) (pid {', '.join(str(v.pid) for v in victims)}) "
        f"with {done_before} of {bench.row_groups} row groups written"
    )
    restarted = watch.pids - {v.pid for v in victims}
    outcome.happened.append(f"{len(restarted)} new Predictor process(es) seen after the kill (restart)")
    outcome.happened.append(f"status {describe(report)}")
    outcome.expect(report["status"] == "ok", "status not ok")
    outcome.expect(bool(restarted), "no restarted actor seen")
    outcome.details.update(victims=[v.pid for v in victims], restarted=sorted(restarted))
    compare(outcome, bench.clean_with_model, table(out))


def poisoned_row_group(bench: Bench, outcome: Outcome) -> None:
    """3. A row group whose PMID kills its actor each time: it fails alone; a rerun redoes only it."""
    out = fresh(bench.work / "3-poisoned-row-group" / "entities")
    shard = pq.ParquetFile(Path(bench.articles) / f"{BIG_SHARD}.parquet")
    poisoned = shard.read_row_group(POISONED_ROW_GROUP, columns=["pmid"])["pmid"][0].as_py()
    lines: list[str] = []
    os.environ[stages.KILL_AT_PMID_ENV] = str(poisoned)
    try:
        with PredictorWatch() as watch:
            started = time.perf_counter()
            report = annotate.run("ner", annotate_config(bench, out), log=logger(lines, bench.verbose))
            failing_seconds = time.perf_counter() - started
    finally:
        del os.environ[stages.KILL_AT_PMID_ENV]
    failed = [
        (s["name"], f["row_group"], f["reason"])
        for s in report["shards"]
        for f in s.get("failed_row_groups", [])
    ]
    errors_dir = out / "_errors"
    errors = pl.read_parquet(errors_dir / "*.parquet") if list(errors_dir.glob("*.parquet")) else None
    in_errors = sorted(errors.select("shard", "row_group").rows()) if errors is not None else []
    kept = len(parts(out))
    outcome.happened.append(
        f"PMID {poisoned} (row group {POISONED_ROW_GROUP} of {BIG_SHARD}): status {describe(report)} "
        f"in {failing_seconds:.1f}s"
    )
    outcome.happened.append(f"{len(watch.pids)} Predictor processes in all (the first and its restarts)")
    outcome.happened.append(
        f"_errors: {', '.join(f'{s} row group {g}' for s, g in in_errors) or 'none'}"
        + (f" ({errors['reason'][0]!r})" if errors is not None else "")
    )
    outcome.happened.append(f"{kept} part file(s) kept for the rerun")
    outcome.expect(report["status"] == "failed", "the poisoned run did not fail")
    outcome.expect(
        in_errors == [(BIG_SHARD, POISONED_ROW_GROUP)], "_errors does not hold exactly that row group"
    )
    outcome.expect(not (out / f"{BIG_SHARD}.parquet").exists(), "the failed shard was published")
    outcome.details.update(
        poisoned_pmid=poisoned, failing_run_seconds=round(failing_seconds, 1), failed_row_groups=failed,
        errors_rows=in_errors, parts_kept=kept, predictor_processes=len(watch.pids),
    )  # fmt: skip

    lines.clear()
    again = annotate.run("ner", annotate_config(bench, out), log=logger(lines, bench.verbose))
    reusing = [line for line in lines if "reusing" in line]
    outcome.happened.append(f"rerun: status {describe(again)}; {reusing[0] if reusing else 'reused no part'}")
    outcome.expect(again["status"] == "ok", "the rerun did not end ok")
    outcome.expect(not parts(out) and not list(errors_dir.glob("*.parquet")), "parts or _errors left")
    compare(outcome, bench.clean_with_model, table(out))


def driver_killed(bench: Bench, outcome: Outcome) -> None:
    """4. The CLI driver in its own process, SIGKILLed at its first part file; rerun in this process."""
    out = fresh(bench.work / "4-driver-killed" / "entities")
    driver_log = out.parent / "driver.log"
    command = [
        sys.executable, "-m", "biobert_ray.cli", "annotate", "ner", "--articles", bench.articles,
        "--model", bench.model, "--out", str(out), "--precision", PRECISION,
        "--address", ray.get_runtime_context().gcs_address,
    ]  # fmt: skip
    with driver_log.open("wb") as sink:
        driver = subprocess.Popen(command, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: parts(out) or driver.poll() is not None, "the driver's first part file")
            if driver.poll() is not None:
                raise RuntimeError(
                    f"the driver exited ({driver.returncode}): {driver_log.read_text()[-2000:]}"
                )
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait(timeout=60)
        finally:
            if driver.poll() is None:
                driver.kill()
    written = len(parts(out))
    lease_left = (out / lease.LEASE_FILE).exists()
    tmp_before = len(temporaries(out))
    outcome.happened.append(
        f"driver SIGKILLed (exit {driver.returncode}) with {written} part file(s) written; "
        f"lease left behind: {lease_left}; {tmp_before} *.tmp-* file(s)"
    )
    lines: list[str] = []
    report = annotate.run("ner", annotate_config(bench, out), log=logger(lines, bench.verbose))
    takeover = [line for line in lines if "taking over the lease" in line]
    reusing = [line for line in lines if "reusing" in line]
    tmp_after = len(temporaries(out))
    took_over = (
        f"took over the lease ({takeover[0].rsplit(': ', 1)[-1]})" if takeover else "NO lease takeover"
    )
    outcome.happened.append(
        f"rerun in this process: {took_over}; {reusing[0] if reusing else 'reused no part'}; "
        f"status {describe(report)}"
    )
    outcome.happened.append(f"{tmp_after} *.tmp-* file(s) afterwards")
    outcome.expect(lease_left, "the killed driver left no lease")
    outcome.expect(bool(takeover), "the rerun did not take over the lease")
    outcome.expect(report["status"] == "ok", "the rerun did not end ok")
    outcome.expect(tmp_after == 0, "temporary files left")
    outcome.expect(not (out / lease.LEASE_FILE).exists() and not parts(out), "lease or parts left")
    outcome.details.update(
        parts_before_kill=written, tmp_files_before_rerun=tmp_before, tmp_files_after=tmp_after
    )
    compare(outcome, bench.clean_with_model, table(out))


def concurrent_run(bench: Bench, outcome: Outcome) -> None:
    """5. A second run on the same output while the first holds the lease must be refused."""
    out = fresh(bench.work / "5-concurrent" / "entities")
    lines: list[str] = []
    thread, result = start_run(annotate_config(bench, out), logger(lines, bench.verbose))
    wait_for(lambda: (out / lease.LEASE_FILE).exists() or not thread.is_alive(), "the first run's lease")
    refused: str | None = None
    try:
        second = annotate.run("ner", annotate_config(bench, out), log=logger([], bench.verbose))
        outcome.happened.append(f"second run NOT refused: status {describe(second)}")
    except lease.LeaseHeldError as exc:
        refused = str(exc)
        outcome.happened.append("second run raised LeaseHeldError")
    report = finish_run(thread, result)
    outcome.happened.append(f"first run: status {describe(report)}")
    outcome.expect(refused is not None, "the second run was not refused")
    outcome.expect(report["status"] == "ok", "the first run did not end ok")
    outcome.details["refusal"] = refused
    compare(outcome, bench.clean_with_model, table(out))


def capped_run(bench: Bench, outcome: Outcome) -> None:
    """6. ``max_articles=100``, then the same run without the cap into the same output."""
    out = fresh(bench.work / "6-capped" / "entities")
    lines: list[str] = []
    capped = annotate.run(
        "ner", annotate_config(bench, out, max_articles=100), log=logger(lines, bench.verbose)
    )
    outcome.happened.append(f"capped: status {describe(capped)}")
    lines.clear()
    full = annotate.run("ner", annotate_config(bench, out), log=logger(lines, bench.verbose))
    redone = sum("was capped" in line for line in lines)
    outcome.happened.append(f"uncapped: {redone} shard(s) redone as 'was capped'; status {describe(full)}")
    outcome.expect(capped["counts"]["articles"] == 100, "the capped run did not take 100 articles")
    outcome.expect(
        full["status"] == "ok" and full["counts"]["shards_processed"] == 3, "not all shards redone"
    )
    compare(outcome, bench.clean_with_model, table(out))


def changed_model(bench: Bench, outcome: Outcome) -> None:
    """7. A complete run, then a rerun with a copy of the model at another path: every shard redone."""
    base = fresh(bench.work / "7-changed-model")
    out, copy = base / "entities", base / "model-copy"
    shutil.copytree(bench.model, copy)
    first = annotate.run("ner", annotate_config(bench, out), log=logger([], bench.verbose))
    outcome.happened.append(f"model M: status {describe(first)}")
    lines: list[str] = []
    second = annotate.run(
        "ner", annotate_config(bench, out, model=str(copy)), log=logger(lines, bench.verbose)
    )
    why = sorted({line.split(": ", 1)[-1] for line in lines if line.startswith("redo")})
    outcome.happened.append(
        f"copy of M: redo because {'; '.join(why) or 'nothing'}; status {describe(second)}"
    )
    model_values = sorted(pl.read_parquet(out / "*.parquet", columns=["model"])["model"].unique())
    only_copy = model_values == [str(copy)]
    outcome.happened.append(f"model column: {'only the copy' if only_copy else model_values}")
    outcome.expect(second["counts"]["shards_processed"] == 3, "not every shard redone")
    outcome.expect(only_copy, "the model column does not hold only the copy's path")
    compare(outcome, bench.clean, table(out, drop_model=True))


def corrupt_input(bench: Bench, outcome: Outcome) -> None:
    """8. A truncated gzip input: its half-ingested shard is not annotated; re-ingested whole, it is."""
    base = fresh(bench.work / "8-corrupt-input")
    inputs, articles, out = base / "inputs", base / "articles", base / "entities"
    inputs.mkdir(parents=True)
    for source in sorted(SAMPLE.iterdir()):
        shutil.copy(source, inputs / source.name)
    target = inputs / f"{BIG_SHARD}.xml.gz"
    whole = target.read_bytes()
    target.write_bytes(whole[: len(whole) // 3])
    log = logger([], bench.verbose)
    broken = run_ingest(inputs, articles, log)
    failures = "; ".join(f["reason"] for f in broken["failed_files"])
    outcome.happened.append(f"ingest of the cut file: {broken['status']} ({failures[:100]})")
    kept = articles / f"{BIG_SHARD}.parquet"
    half = pq.ParquetFile(kept).metadata.num_rows if kept.exists() else 0
    first = annotate.run("ner", annotate_config(bench, out, articles=str(articles)), log=log)
    not_read = [Path(i["shard"]).name for i in first["incomplete_inputs"]]
    outcome.happened.append(
        f"annotate: status {describe(first)}; not read: {', '.join(not_read) or 'none'} "
        f"({half} articles kept)"
    )
    target.write_bytes(whole)
    fixed = run_ingest(inputs, articles, log)
    outcome.happened.append(
        f"re-ingest: {fixed['status']}, {fixed['counts']['files_processed']} file(s) processed"
    )
    second = annotate.run("ner", annotate_config(bench, out, articles=str(articles)), log=log)
    outcome.happened.append(f"annotate again: status {describe(second)}")
    outcome.expect(broken["status"] == "failed", "the ingest of the cut file did not fail")
    outcome.expect(
        first["status"] == "failed" and not_read == [f"{BIG_SHARD}.parquet"], "the half shard was read"
    )
    outcome.expect(
        second["status"] == "ok" and second["counts"]["shards_processed"] == 1, "not only the fixed shard"
    )
    outcome.details.update(half_ingested_articles=half)
    compare(outcome, bench.clean_with_model, table(out))


SCENARIOS: list[tuple[str, Callable[[Bench, Outcome], None]]] = [
    ("clean", clean_run),
    ("actor killed", actor_killed),
    ("row group that always kills its actor", poisoned_row_group),
    ("driver killed", driver_killed),
    ("concurrent run", concurrent_run),
    ("capped run", capped_run),
    ("changed model", changed_model),
    ("corrupt input", corrupt_input),
]


def markdown(outcomes: list[Outcome]) -> str:
    """The results as a markdown table: fault, what happened, rows lost, rows duplicated, seconds."""
    lines = ["| fault | what happened | rows lost | rows duplicated | seconds |", "|---|---|---|---|---|"]
    for o in outcomes:
        happened = "; ".join([*o.happened, *(f"UNEXPECTED: {u}" for u in o.unexpected)])
        lost = "n/a" if o.lost is None else str(o.lost)
        duplicated = "n/a" if o.duplicated is None else str(o.duplicated)
        lines.append(
            f"| {o.fault} | {happened.replace('|', '/')} | {lost} | {duplicated} | {o.seconds:.1f} |"
        )
    return "\n".join(lines)


def cpu_line() -> str:
    """The CPU's model name and whether it has native bf16 instructions."""
    name, flags = platform.processor() or platform.machine(), set(inference.cpuinfo("flags").split())
    if name in ("", platform.machine()):
        name = inference.cpuinfo("model name") or name
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return f"{name}, {os.cpu_count()} CPUs, bf16 flags: {', '.join(bf16) or 'none'}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/faults", help="work directory (default /tmp/faults)")
    ap.add_argument("--model", help="fine-tuned NER model directory (default: build one under --work)")
    ap.add_argument(
        "--only", nargs="+", type=int, help="scenario numbers to run (1, the reference, always runs)"
    )
    ap.add_argument("--json", help="also write the JSON results to this file")
    ap.add_argument("--verbose", action="store_true", help="print every log line of the runs")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    model = str(Path(args.model).resolve()) if args.model else build_model(work)
    print(f"python {platform.python_version()}, ray {ray.__version__}; {cpu_line()}", flush=True)
    print(f"model: {model}; work: {work}", flush=True)
    connect()
    print(f"ray: {ray.cluster_resources().get('CPU', 0):g} CPUs, GCS {ray.get_runtime_context().gcs_address}")
    articles = work / "articles"
    ingested = run_ingest(SAMPLE, articles, logger([], args.verbose))
    groups = {p.stem: pq.ParquetFile(p).metadata.num_row_groups for p in sorted(articles.glob("*.parquet"))}
    print(f"articles: {ingested['status']}, {ingested['counts']['articles']} articles, row groups {groups}")
    bench = Bench(
        work=work, articles=str(articles), model=model, verbose=args.verbose, row_groups=sum(groups.values())
    )

    outcomes: list[Outcome] = []
    for number, (fault, scenario) in enumerate(SCENARIOS, start=1):
        if number > 1 and args.only and number not in args.only:
            continue
        outcome = Outcome(f"{number}. {fault}")
        settle()
        load = os.getloadavg()[0]
        print(f"[{number}/{len(SCENARIOS)}] {fault} (load average {load:.2f}) ...", flush=True)
        outcome.details["load_average_at_start"] = round(load, 2)
        t0 = time.perf_counter()
        try:
            scenario(bench, outcome)
        except Exception as exc:
            outcome.unexpected.append(f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
        outcome.seconds = time.perf_counter() - t0
        outcomes.append(outcome)
        print(
            f"    lost {outcome.lost}, duplicated {outcome.duplicated}, {outcome.seconds:.1f}s: "
            + "; ".join([*outcome.happened, *(f"UNEXPECTED: {u}" for u in outcome.unexpected)]),
            flush=True,
        )
        if number == 1 and outcome.lost is None:
            print("the clean run failed: nothing to compare against", file=sys.stderr)
            break

    total = time.perf_counter() - started
    print(
        f"\nclean table: {sum(bench.clean_with_model.values())} rows; total {total:.1f}s; "
        f"load average at the end {os.getloadavg()[0]:.2f}\n"
    )
    print(markdown(outcomes))
    results = {
        "model": model,
        "cpu": cpu_line(),
        "clean_rows": sum(bench.clean_with_model.values()),
        "total_seconds": round(total, 1),
        "scenarios": [
            {
                "fault": o.fault, "lost": o.lost, "duplicated": o.duplicated, "rows": o.rows,
                "seconds": round(o.seconds, 1), "happened": o.happened, "unexpected": o.unexpected,
                "details": o.details,
            }
            for o in outcomes
        ],
    }  # fmt: skip
    text = json.dumps(results, indent=2, default=str)
    print("\n" + text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    bad = [o for o in outcomes if o.lost != 0 or o.duplicated != 0 or o.unexpected]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
