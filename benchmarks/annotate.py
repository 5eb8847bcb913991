"""Annotate benchmark: ``biobert-ray annotate ner`` against a plain ``transformers`` pipeline loop and
against the bare model forward, in one run, over the same abstracts and the same fine-tuned model.

Input: the articles of the bundled MEDLINE sample (ingested on the fly with
``biobert_ray.ingest.ingest_file``, or ``--articles DIR``) that have an abstract, the first ``--limit`` of
them, ``--repeat`` times over, written as a one-shard articles table whose titles are null, so that all
contenders see exactly the same texts: the abstracts. Repeating the sample gives a corpus large
enough that our fixed start-up (the model actor's process imports torch and transformers and loads
the model, about 3 s) weighs as it would on a real corpus rather than a fifth of a 25 s run.
Measured, in abstracts per second:

- **ours**: ``biobert_ray.annotate.run(AnnotateConfig(..., precision="fp32"))`` end to end (Parquet
  in, entities Parquet out, fresh output directory, ``overwrite=True``) with ``num_actors=1``,
  ``cpus_per_actor=1.5`` (the actor runs 2 torch threads). Ray is started before the clock starts;
  its start-up is printed apart.
- **pipeline loop**: ``transformers.pipeline("token-classification", model=MODEL,
  aggregation_strategy="simple", stride=STRIDE)`` called once per abstract. ``stride`` makes the pipeline
  cover abstracts longer than the model's 512 sub-tokens with overlapping 512-token chunks instead of
  truncating them (it needs the fast tokenizer, which the model directory has).
- **bare forward**: ``model(**batch)`` alone, under ``torch.inference_mode`` with the same threads, over
  exactly the token batches our pipeline feeds its model, rebuilt with our own code path: sentences
  and words (``tasks.ner.corpus_sentences``), windows (``NerTask().encode``), grouped
  by row group as the actor gets them, then length-sorted and cut into ``--batch-size`` windows as
  ``inference.predict`` does (``NerTask.collate``). Padding is built before the clock starts.

Where bf16 is faster on this CPU (``inference.cpu_has_fast_bf16``) ours and the bare
forward also run under bf16 autocast (``AnnotateConfig(precision="bf16")``, what ``"auto"``, the
default, picks there), and the fp32 and bf16 models are scored on the NCBI-disease dev and test sets.
``--quantize`` also runs ours and the bare forward with int8 dynamic quantization of the Linear layers
(``AnnotateConfig(quantize=True)``; ``stages.quantize_int8``, per-channel scales, for the bare forward)
and scores the fp32 and int8 models on the NCBI-disease dev and test sets (``--score``;
``evaluation.evaluate_examples``, strict IOB2 entity F1), since int8 changes the model's output.
``--stages`` times the stages of our pipeline in this process, without Ray (read + units + encode,
predict minus forward, forward, decode + write, per row group), and with ``--profile`` prints the
cProfile of the stages (the forward included, inside ``predict``). ``--timeline`` runs ours once
more with every stage call timestamped (stage functions and actor class swapped for logging
subclasses/wrappers for that run): when each stage ran, in which process, when that process started,
and how much of each predict call was the model forward. Together they show where the time goes
beyond the model forward.

    HF_HUB_OFFLINE=1 python benchmarks/annotate.py --model /tmp/ft2/model --quantize --stages --timeline

Prints one line per measurement, the ratios and the test scores; every figure is from this one run.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch

from biobert_ray import allocator, annotate, evaluation, inference, ingest, models, runs, schemas, storage
from biobert_ray.annotate import build, plan, stages
from biobert_ray.config import AnnotateConfig, IngestConfig
from biobert_ray.runtime import connect
from biobert_ray.samples import sample_path
from biobert_ray.tasks import ner as ner_task
from biobert_ray.tasks.base import ModelInfo
from biobert_ray.tasks.ner import NerOptions, NerTask

CPUS_PER_ACTOR = 1.5
INGEST_ROWS_PER_GROUP = IngestConfig.__dataclass_fields__["rows_per_group"].default
THREADS = round(CPUS_PER_ACTOR)  # what annotate.build gives the actor's torch
NER = NerTask()


def load_abstracts(articles: str | None, limit: int | None, workdir: Path) -> pa.Table:
    """``pmid``/``abstract`` of the articles with a non-blank abstract, in table order, at most ``limit``."""
    if articles is None:
        articles = str(workdir / "ingested")
        for source in storage.list_files(sample_path("pubmed")):
            if source.endswith(ingest.INPUT_SUFFIXES):
                ingest.ingest_file(source, articles)
    tables = [pq.read_table(path) for path in storage.list_files(articles, ".parquet")]
    rows = [
        {"pmid": r["pmid"], "abstract": r["abstract"]}
        for table in tables
        for r in table.select(["pmid", "abstract"]).to_pylist()
        if (r["abstract"] or "").strip()
    ]
    return pa.Table.from_pylist(rows[:limit])


def write_table(abstracts: pa.Table, directory: Path) -> str:
    """A one-shard articles table (``schemas.ARTICLES``) of the abstracts, titles null; its directory."""
    n = abstracts.num_rows
    columns = {
        "pmid": abstracts.column("pmid"),
        "abstract": abstracts.column("abstract"),
        "source_file": pa.array(["benchmark"] * n),
        "record_index": pa.array(range(n), pa.int32()),
    }
    table = pa.table(
        {f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in schemas.ARTICLES}, schema=schemas.ARTICLES
    )
    directory.mkdir(parents=True)
    # row groups as ingest writes them: annotation reads and streams one row group at a time
    shard = directory / "abstracts.parquet"
    pq.write_table(table, shard, row_group_size=INGEST_ROWS_PER_GROUP)
    # annotate reads only complete shards: mark it as ingest would, its input being this benchmark
    runs.mark_complete(str(directory), "abstracts", {"input": {"benchmark": n}}, [str(shard)])
    return str(directory)


def model_batches(
    abstracts: Sequence[str], tokenizer: Any, max_length: int, stride: int, batch_size: int
) -> list[dict[str, torch.Tensor]]:
    """The padded batches our pipeline's actor feeds the model, in the order it feeds them.

    The actor gets the sentences of one row group (``INGEST_ROWS_PER_GROUP`` abstracts) per call and
    length-sorts the windows of a call.
    """
    batches = []
    for first in range(0, len(abstracts), INGEST_ROWS_PER_GROUP):
        group = abstracts[first : first + INGEST_ROWS_PER_GROUP]
        articles = pa.table(
            {"pmid": list(range(len(group))), "title": [None] * len(group), "abstract": group}
        )
        units = ner_task.corpus_sentences(articles)
        encoded = NER.encode(units, tokenizer, max_length, stride)
        ordered = sorted((w for per_unit in encoded for w in per_unit), key=lambda w: len(w["input_ids"]))
        for start in range(0, len(ordered), batch_size):
            batches.append(NER.collate(ordered[start : start + batch_size], tokenizer.pad_token_id, False))
    return batches


def quantized(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with int8 dynamic quantization of its Linear layers, exactly as ``quantize=True`` does.

    torch 2.13 warns that ``torch.ao.quantization`` is deprecated (in favour of torchao); the warnings are
    silenced here, the actor of ``quantize=True`` still prints them.
    """
    warnings.filterwarnings("ignore", message=r"torch\.(ao\.quantization|quantize_per_tensor)")
    return stages.quantize_int8(model)


def time_forward(
    model: torch.nn.Module, batches: Sequence[dict[str, torch.Tensor]], cpu_bf16: bool = False
) -> float:
    """Seconds spent in ``model(**batch)`` over all batches (one untimed warm-up batch first).

    ``cpu_bf16`` runs them under bf16 autocast, as ``AnnotateConfig(precision="bf16")`` does.
    """
    total = 0.0
    with torch.inference_mode(), inference.autocast(torch.device("cpu"), cpu_bf16):
        model(**batches[0])
        for batch in batches:
            start = time.perf_counter()
            model(**batch)
            total += time.perf_counter() - start
    return total


def time_ours(
    articles: str, model_ref: str, args: argparse.Namespace, quantize: bool, precision: str = "fp32"
) -> tuple[float, int]:
    """Wall seconds of one ``annotate.run`` into a fresh directory, and the entity rows it wrote."""
    out = tempfile.mkdtemp(prefix="annotate-bench-out-")
    try:
        config = AnnotateConfig(
            articles=articles, model=(model_ref,), out=out, batch_size=args.batch_size, stride=args.stride,
            num_actors=1, cpus_per_actor=CPUS_PER_ACTOR, quantize=quantize, precision=precision,
            overwrite=True,
        )  # fmt: skip
        start = time.perf_counter()
        report = annotate.run("ner", config, log=lambda _: None)
        return time.perf_counter() - start, report["counts"]["rows"]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def time_pipeline_loop(abstracts: Sequence[str], model_ref: str, stride: int) -> tuple[float, int]:
    """Wall seconds of a ``transformers`` token-classification pipeline called once per abstract."""
    from transformers import pipeline as hf_pipeline

    classifier = hf_pipeline(
        "token-classification", model=model_ref, aggregation_strategy="simple", stride=stride, device="cpu"
    )
    classifier(abstracts[0])  # warm-up, untimed
    entities = 0
    start = time.perf_counter()
    for abstract in abstracts:
        entities += len(classifier(abstract))
    return time.perf_counter() - start, entities


def entity_f1(
    model: torch.nn.Module, model_ref: str, labelled_file: str, batch_size: int
) -> dict[str, float]:
    """Strict IOB2 entity P/R/F1 of ``model`` on an NCBI-disease file, windows as ``evaluate ner`` makes."""
    task = NerTask(NerOptions(entity_type="Disease"))
    metadata = models.read_metadata(model_ref)
    tokenizer = models.load_tokenizer(model_ref)
    examples = task.read(labelled_file)
    windows = task.encode(examples, tokenizer, metadata.get("max_seq_length", 128), 32)
    info = ModelInfo(model_ref, dict(model.config.id2label), metadata)
    scores = evaluation.evaluate_examples(
        task, model, info, examples, windows, tokenizer.pad_token_id, batch_size, torch.device("cpu")
    )
    return {k: scores["overall"][k] for k in ("precision", "recall", "f1")}


class Bf16Autocast(torch.nn.Module):
    """A model wrapper whose forward runs under CPU bf16 autocast, for scoring bf16 predictions."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.config = inner, inner.config

    def forward(self, **batch: torch.Tensor) -> Any:
        """The inner model's output, computed under bf16 autocast."""
        with inference.autocast(torch.device("cpu"), cpu_bf16=True):
            return self.inner(**batch)


class TimedModel(torch.nn.Module):
    """A model wrapper that adds the seconds of every forward call to ``seconds``."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.seconds = inner, 0.0

    def forward(self, **batch: torch.Tensor) -> Any:
        """The inner model's output; the call's wall time is added to ``seconds``."""
        start = time.perf_counter()
        output = self.inner(**batch)
        self.seconds += time.perf_counter() - start
        return output


def stage_times(
    articles: str, model_ref: str, args: argparse.Namespace, quantize: bool, profiler: cProfile.Profile | None
) -> dict[str, float]:
    """Seconds of each pipeline stage run in this process without Ray, over the whole input.

    Calls the very functions the Ray Data stages call (``read_and_encode``, ``Predictor``,
    ``decode_and_write``) once per row group, as the Ray Data stages get them; the model
    forward is timed apart from the rest of ``Predictor.__call__``. ``profiler``, when given, is enabled
    around every stage call (the forward inside the predict call included).
    """
    refs = [model_ref]
    groups, membership = build.tokenizer_groups(tuple(refs), None)
    predictor = stages.Predictor(NER, refs, membership, args.batch_size, False, quantize, THREADS, "fp32")
    model, pad_id = predictor.models[0]
    timed = TimedModel(model)
    predictor.models[0] = (timed, pad_id)
    path = storage.list_files(articles, ".parquet")[0]
    metadata = pq.ParquetFile(path).metadata
    out = tempfile.mkdtemp(prefix="annotate-bench-stages-")
    seconds = dict.fromkeys(("read_encode", "predict_other", "forward", "decode_write"), 0.0)

    @contextlib.contextmanager
    def stage(name: str) -> Iterator[None]:
        if profiler is not None:
            profiler.enable()
        start = time.perf_counter()
        yield
        seconds[name] += time.perf_counter() - start
        if profiler is not None:
            profiler.disable()

    def run(name: str, fn: Callable[..., pa.Table], *fn_args: Any, **kwargs: Any) -> pa.Table:
        with stage(name):
            return fn(*fn_args, **kwargs)

    try:
        for row_group in range(metadata.num_row_groups):
            work = {
                "shard": np.array(["bench"]), "path": np.array([path]), "row_group": np.array([row_group]),
                "limit": np.array([metadata.row_group(row_group).num_rows]), "side": np.array(["{}"]),
            }  # fmt: skip
            encoded = run("read_encode", stages.read_and_encode, work, NER, groups, args.stride)
            timed.seconds = 0.0
            batch = run("predict_other", predictor, encoded)
            seconds["predict_other"] -= timed.seconds
            seconds["forward"] += timed.seconds
            run(
                "decode_write", stages.decode_and_write, batch, NER, refs, membership, out, "bench",
                {"bench": "bench"},
            )  # fmt: skip
    finally:
        shutil.rmtree(out, ignore_errors=True)
    seconds["batches"] = metadata.num_row_groups
    return seconds


def log_event(log: str, stage: str, start: float, **fields: Any) -> None:
    """Append one stage call to ``log``, a JSON-lines file that the stage processes of the machine share.

    An event holds the process and when it started, the call's wall-clock start, now as its end, ``fields``.
    """
    process = psutil.Process()
    event = {
        "stage": stage, "pid": process.pid, "process_started": process.create_time(),
        "start": start, "end": time.time(), **fields,
    }  # fmt: skip
    with open(log, "a") as f:
        f.write(json.dumps(event) + "\n")


def timed_stage(name: str, fn: Callable[..., pa.Table], log: str) -> Callable[..., pa.Table]:
    """``fn`` that also logs each call's wall-clock span and input rows to ``log``."""

    def stage(batch: Any, *args: Any, **kwargs: Any) -> pa.Table:
        start = time.time()
        result = fn(batch, *args, **kwargs)
        rows = len(next(iter(batch.values()))) if isinstance(batch, dict) else batch.num_rows
        log_event(log, name, start, rows=rows)
        return result

    return stage


class TimedPredictor(stages.Predictor):
    """``stages.Predictor`` that logs its construction and each call (with its forward seconds) to ``log``.

    Defined in the benchmark's ``__main__``, so Ray ships the class itself (``log`` included) to the actor.
    """

    log = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        start = time.time()
        super().__init__(*args, **kwargs)
        self.models = [(TimedModel(model), pad_id) for model, pad_id in self.models]
        log_event(self.log, "actor_init", start)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """The parent's call, logged with the seconds its model forwards took."""
        for model, _ in self.models:
            model.seconds = 0.0
        start = time.time()
        result = super().__call__(batch)
        forward = sum(model.seconds for model, _ in self.models)
        log_event(self.log, "predict", start, rows=batch.num_rows, forward=forward)
        return result


def timeline(articles: str, model_ref: str, args: argparse.Namespace, quantize: bool) -> None:
    """One ``annotate.run`` with every stage call timestamped; prints when each ran and the gaps.

    The stage functions and the actor class of ``biobert_ray.annotate.stages`` are swapped for logging
    wrappers for this run only (``annotate.build`` looks them up when it is called).
    """
    handle, log = tempfile.mkstemp(prefix="annotate-bench-timeline-", suffix=".jsonl")
    os.close(handle)
    TimedPredictor.log = log
    originals = {name: getattr(stages, name) for name in ("read_and_encode", "decode_and_write")}
    replacements = {name: timed_stage(name.split("_")[0], fn, log) for name, fn in originals.items()}
    originals["Predictor"], replacements["Predictor"] = stages.Predictor, TimedPredictor
    for name, value in replacements.items():
        setattr(stages, name, value)
    try:
        start = time.time()
        seconds, _ = time_ours(articles, model_ref, args, quantize)
        with open(log) as f:
            events = sorted((json.loads(line) for line in f), key=lambda e: e["start"])
    finally:
        for name, value in originals.items():
            setattr(stages, name, value)
        os.remove(log)
    print(f"timeline of ours {'int8' if quantize else 'fp32'} (s since run start; wall {seconds:.2f} s):")
    seen: set[int] = set()
    for e in events:
        forward = f", forward {e['forward']:.2f} s" if "forward" in e else ""
        rows = f"{e['rows']:5d} rows" if "rows" in e else " " * 9
        process = f"pid {e['pid']}"
        if e["pid"] not in seen:
            seen.add(e["pid"])
            process += f" (process started at {e['process_started'] - start:.2f})"
        span = f"{e['start'] - start:7.2f} - {e['end'] - start:7.2f}"
        print(f"  {span}  {e['stage']:<10} {rows}{forward}  {process}")
    calls = [e for e in events if e["stage"] == "predict"]
    forward = sum(e["forward"] for e in calls)
    busy = sum(e["end"] - e["start"] for e in calls)
    other = 1000 * (busy - forward) / len(calls)
    print(
        f"  model forward {forward:.2f} s of {seconds:.2f} s wall ({100 * forward / seconds:.0f}%); "
        f"predict calls {busy:.2f} s, {other:.1f} ms/call besides the forward; "
        f"before the first stage starts {events[0]['start'] - start:.2f} s",
        flush=True,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="/tmp/ft2/model", help="fine-tuned NER model directory")
    parser.add_argument(
        "--articles", default=None, help="articles table (default: ingest the bundled sample)"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N abstracts (default: all)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="annotate the abstracts this many times over (a larger corpus)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=plan.DEFAULT_BATCH_SIZE["cpu"], help="windows per forward"
    )
    parser.add_argument("--stride", type=int, default=32, help="window overlap in sub-tokens, both pipelines")
    parser.add_argument("--quantize", action="store_true", help="also int8: ours, bare forward, test F1")
    parser.add_argument(
        "--score",
        nargs="+",
        default=[sample_path("ncbi_disease", f"{split}.tsv.gz") for split in ("devel", "test")],
        help="labelled NER files that --quantize scores fp32 and int8 on",
    )
    parser.add_argument("--stages", action="store_true", help="time our stages in-process, without Ray")
    parser.add_argument(
        "--profile", action="store_true", help="with --stages: cProfile of the stage calls (forward included)"
    )
    parser.add_argument("--timeline", action="store_true", help="timestamp every stage call of one more run")
    return parser.parse_args(argv)


def print_stages(articles: str, model_ref: str, args: argparse.Namespace, quantize: bool, n: int) -> None:
    """Print :func:`stage_times` per stage (s, ms per batch, share) and, with ``--profile``, the cProfile."""
    profiler = cProfile.Profile() if args.profile else None
    seconds = stage_times(articles, model_ref, args, quantize, profiler)
    batches = seconds.pop("batches")
    total = sum(seconds.values())
    print(f"stages in-process, no Ray ({'int8' if quantize else 'fp32'}, {batches:.0f} batches):")
    for name, value in seconds.items():
        share = 100 * value / total
        print(f"  {name:<14} {value:7.2f} s {1000 * value / batches:8.1f} ms/batch {share:5.1f}%")
    print(f"  {'total':<14} {total:7.2f} s = {n / total:.2f} abstracts/s", flush=True)
    if profiler is not None:
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(30)
        print(stream.getvalue(), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every measurement once, print abstracts/s, ratios and (with ``--quantize``) test F1."""
    args = parse_args(argv)
    torch.set_num_threads(THREADS)
    allocator.tune()  # as in our actors, so that the bare forward and the loops get the same malloc
    model_ref = models.resolve(args.model)
    tokenizer = models.load_tokenizer(model_ref)
    max_length = models.info(model_ref)["max_seq_length"]
    workdir = Path(tempfile.mkdtemp(prefix="annotate-bench-"))
    try:
        abstracts_table = pa.concat_tables([load_abstracts(args.articles, args.limit, workdir)] * args.repeat)
        articles = write_table(abstracts_table, workdir / "articles")
        abstracts = abstracts_table.column("abstract").to_pylist()
        n = len(abstracts)
        batches = model_batches(abstracts, tokenizer, max_length, args.stride, args.batch_size)
        windows = sum(len(b["input_ids"]) for b in batches)
        tokens = sum(int(b["attention_mask"].sum()) for b in batches)
        padded = sum(b["input_ids"].numel() for b in batches)
        print(
            f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{THREADS} torch threads; load average {os.getloadavg()[0]:.2f}\n"
            f"{n} abstracts, {windows} windows of <= {max_length} sub-tokens in {len(batches)} batches "
            f"of <= {args.batch_size}: {tokens} tokens, {padded} with padding",
            flush=True,
        )
        start = time.perf_counter()
        connect(None)
        ray_start = time.perf_counter() - start
        print(f"Ray start-up {ray_start:.1f} s (excluded from ours)", flush=True)

        fp32 = models.load_model(model_ref, NerTask.model_class).eval()
        int8 = quantized(fp32) if args.quantize else None
        rate: dict[str, float] = {}

        def record(name: str, seconds: float, found: int | None = None) -> None:
            rate[name] = n / seconds
            rows = "" if found is None else f"  {found} entities"
            print(f"{name:<20} {seconds:8.2f} s {n / seconds:8.2f} abstracts/s{rows}", flush=True)

        def ratio(a: str, b: str, target: str = "") -> None:
            print(f"{a} / {b}: {rate[a] / rate[b]:.2f} {target}".rstrip())

        record("bare fp32", time_forward(fp32, batches))
        record("ours fp32", *time_ours(articles, model_ref, args, quantize=False))
        record("pipeline loop", *time_pipeline_loop(abstracts, model_ref, args.stride))
        bf16 = inference.cpu_has_fast_bf16()
        if bf16:  # what precision="auto" picks on this CPU
            record("ours bf16", *time_ours(articles, model_ref, args, quantize=False, precision="bf16"))
            record("bare bf16", time_forward(fp32, batches, cpu_bf16=True))
        if int8 is not None:
            record("ours int8", *time_ours(articles, model_ref, args, quantize=True))
            record("bare int8", time_forward(int8, batches))
        ratio("ours fp32", "bare fp32", "(target >= 0.8)")
        ratio("ours fp32", "pipeline loop", "(target >= 1.5)")
        print(f"ours fp32 with Ray start-up: {n / (n / rate['ours fp32'] + ray_start):.2f} abstracts/s")
        if bf16:
            ratio("ours bf16", "bare bf16", "(target >= 0.8)")
            ratio("ours bf16", "pipeline loop", "(target >= 1.5)")
            ratio("bare bf16", "bare fp32")
        if int8 is not None:
            ratio("ours int8", "bare int8")
            ratio("ours int8", "pipeline loop")
            ratio("bare int8", "bare fp32")
        variants = [("fp32", fp32)] + [("bf16", Bf16Autocast(fp32))] * bf16 + [("int8", int8)] * bool(int8)
        if len(variants) > 1:
            for labelled_file in args.score:
                for name, model in variants:
                    scores = entity_f1(model, model_ref, labelled_file, args.batch_size)
                    print(
                        f"{Path(labelled_file).name} {name}: P {scores['precision']:.4f} "
                        f"R {scores['recall']:.4f} F1 {scores['f1']:.4f}",
                        flush=True,
                    )
        for quantize in (False, True) if args.quantize else (False,):
            if args.timeline:
                timeline(articles, model_ref, args, quantize)
            if args.stages:
                print_stages(articles, model_ref, args, quantize, n)
    finally:
        ray.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
