"""Relation annotation benchmark: ``biobert-ray annotate re`` against a plain ``transformers`` pipeline loop
and against the bare model forward, in one run, over the same candidate pairs and the same fine-tuned
relation model.

Input: the articles of the bundled MEDLINE sample (ingested on the fly with
``biobert_ray.ingest.ingest_file``, or ``--articles DIR``) that have an abstract, the first ``--limit`` of
them, ``--repeat`` times over with new PMIDs (copy ``k`` adds ``k`` times one more than the largest PMID,
so that every article of the corpus is its own), written as a one-shard articles table whose titles are
null, as ``benchmarks/annotate.py`` does. The ``entities`` table of those articles is ``--entities`` (one
shard named like the articles shard, ``abstracts``, complete: e.g. the ``entities`` directory of an
earlier run with the same ``--limit``, ``--repeat`` and ``--keep``), or by default is made by
``annotate.run("ner", ...)`` with ``--ner-model`` over the articles table before the clock starts (its
time printed apart). The candidates are the pairs of mentions whose types are the relation model's
argument types, marked as the model was trained (``RelationTask.units``). Measured, in candidate pairs
per second:

- **ours**: ``biobert_ray.annotate.run("re", AnnotateConfig(..., precision="fp32"),
  RelationOptions(entities=E, keep_negative=True))`` end to end (Parquet in, relations Parquet out, a
  row per candidate, fresh output directory, ``overwrite=True``) with ``num_actors=1``,
  ``cpus_per_actor=1.5`` (the actor runs 2 torch threads). Ray is started before the clock starts; its
  start-up is printed apart.
- **bare forward**: ``model(**batch)`` alone, under ``torch.inference_mode`` with the same threads, over
  exactly the batches our pipeline feeds its model, rebuilt with our own code path: per row group of
  the articles shard (what one actor call gets), the candidates of ``RelationTask.for_models([metadata])
  .units`` over the row group's articles and their ``entities`` rows, their windows
  (``RelationTask.encode``), length-sorted and cut into ``--batch-size`` windows as
  ``inference.predict`` does (``RelationTask.collate``). Padding is built before the clock starts.
- **pipeline loop**: ``transformers.pipeline("text-classification", model=MODEL)`` called once per
  candidate's marked text (``Candidate.text``), the plain loop the target is set against; and
  **pipeline batched**: the same pipeline called once over the list with ``batch_size=--batch-size``.
  Both with ``truncation=True`` and ``max_length`` the model's window length (``max_seq_length`` of its
  ``biobert_ray.json``), so that it reads at most as many sub-tokens per candidate as ours (the
  tokenizer's own limit, 512 for MiniLM, is longer; ours centres a long text's window on the
  arguments, the pipeline keeps its first sub-tokens).

    python benchmarks/relations.py --model out/demo/re-cid --ner-model out/demo/ner-chem-disease --repeat 4

Prints the CPU, one line per measurement, and the ratios; every figure is from this one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import torch

# the corpus of benchmarks/annotate.py (this script's directory is on sys.path when it runs)
from annotate import load_abstracts, time_forward, write_table

from biobert_ray import allocator, annotate, inference, models, storage
from biobert_ray.annotate import build, plan
from biobert_ray.config import AnnotateConfig
from biobert_ray.runtime import connect
from biobert_ray.tasks.relation.task import Candidate, RelationOptions, RelationTask

CPUS_PER_ACTOR = 1.5
STRIDE = AnnotateConfig.__dataclass_fields__["stride"].default
THREADS = round(CPUS_PER_ACTOR)  # what annotate.build gives the actor's torch
SHARD = "abstracts"  # the shard annotate.write_table writes, and the entities shard read beside it


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.machine()`` where there is none)."""
    return inference.cpuinfo("model name") or platform.machine()


def repeated(abstracts: pa.Table, repeat: int) -> pa.Table:
    """``abstracts`` ``repeat`` times over, copy ``k``'s PMIDs shifted by ``k`` times (largest PMID + 1)."""
    pmids = abstracts.column("pmid")
    shift = pc.max(pmids).as_py() + 1
    copies = [abstracts.set_column(0, "pmid", pc.add(pmids, k * shift)) for k in range(repeat)]
    return pa.concat_tables(copies)


def config(articles: str, model_ref: str, out: str, batch_size: int) -> AnnotateConfig:
    """The annotation settings of every run here: one actor of 1.5 CPUs, fp32, a fresh output."""
    return AnnotateConfig(
        articles=articles, model=(model_ref,), out=out, batch_size=batch_size, num_actors=1,
        cpus_per_actor=CPUS_PER_ACTOR, precision="fp32", overwrite=True,
    )  # fmt: skip


def build_entities(articles: str, ner_model: str, out: str, batch_size: int) -> tuple[float, int]:
    """Annotate the entities of ``articles`` with ``ner_model`` into ``out``: wall seconds and entity rows."""
    start = time.perf_counter()
    report = annotate.run("ner", config(articles, ner_model, out, batch_size), log=lambda _: None)
    if report["status"] != "ok":
        raise RuntimeError(f"annotate ner for the entities failed: {report.get('error') or report['shards']}")
    return time.perf_counter() - start, report["counts"]["rows"]


def candidate_batches(
    articles: str, entities: str, task: RelationTask, model_ref: str, batch_size: int
) -> tuple[list[Candidate], list[dict[str, torch.Tensor]]]:
    """The candidates of the articles, and the padded batches our pipeline's actor feeds the model for
    them, in the order it feeds them.

    As the stages do: per row group of the articles shard (one actor call), the candidates of its
    articles and their ``entities`` rows (``task.units``), their windows (``task.encode``) with the
    tokenizer and window length of the model's tokenizer group, length-sorted and cut into
    ``batch_size`` windows. Raises ValueError when ``entities`` has rows that do not match the articles.
    """
    groups, membership = build.tokenizer_groups((model_ref,), None)
    group = groups[membership[model_ref]]
    tokenizer = models.cached_tokenizer(group["tokenizer_ref"])
    pad_id = models.cached_tokenizer(model_ref).pad_token_id
    mentions = pq.read_table(storage.join(entities, f"{SHARD}.parquet"))
    units: list[Candidate] = []
    batches = []
    with storage.open_parquet(storage.join(articles, f"{SHARD}.parquet")) as parquet:
        for row_group in range(parquet.metadata.num_row_groups):
            group_articles = parquet.read_row_group(row_group, columns=list(task.article_columns))
            rows = mentions.filter(pc.is_in(mentions.column("pmid"), value_set=group_articles.column("pmid")))
            group_units = task.units(group_articles, {"entities": rows})
            if group_units.rejected:
                raise ValueError(
                    f"{entities} does not match the articles: {group_units.rejected[0]['reason']}"
                )
            windows = task.encode(group_units, tokenizer, group["max_length"], STRIDE)
            ordered = sorted((w for per_unit in windows for w in per_unit), key=lambda w: len(w["input_ids"]))
            for start in range(0, len(ordered), batch_size):
                batches.append(task.collate(ordered[start : start + batch_size], pad_id, False))
            units.extend(group_units)
    if not units:
        raise ValueError(
            f"no candidate pairs: {entities} holds no two mentions of the model's argument types"
        )
    return units, batches


def time_ours(
    articles: str, entities: str, model_ref: str, batch_size: int, negative: str | None, candidates: int
) -> tuple[float, int]:
    """Wall seconds of one ``annotate.run("re")`` into a fresh directory, and the relations it predicted
    (rows not of the ``negative`` class). Raises RuntimeError unless it wrote one row per candidate."""
    out = tempfile.mkdtemp(prefix="relations-bench-out-")
    try:
        options = RelationOptions(entities=entities, keep_negative=True)
        start = time.perf_counter()
        report = annotate.run("re", config(articles, model_ref, out, batch_size), options, log=lambda _: None)
        seconds = time.perf_counter() - start
        counts = report["counts"]
        if report["status"] != "ok" or counts["units"] != candidates or counts["rows"] != candidates:
            raise RuntimeError(
                f"annotate re: status {report['status']}, {counts['units']} candidates and {counts['rows']} "
                f"rows, expected {candidates} of each ({report.get('error') or report['shards']})"
            )
        labels = pq.read_table(storage.join(out, f"{SHARD}.parquet"), columns=["relation"]).column("relation")
        return seconds, sum(label != negative for label in labels.to_pylist())
    finally:
        shutil.rmtree(out, ignore_errors=True)


def time_pipeline(
    texts: list[str], model_ref: str, batch_size: int | None, max_length: int, negative: str | None
) -> tuple[float, int]:
    """Wall seconds of a ``transformers`` text-classification pipeline over ``texts``, truncated to
    ``max_length``: called once per text (``batch_size`` None, the plain loop) or once over the list in
    batches of ``batch_size``; and the relations it predicted (labels not ``negative``)."""
    from transformers import pipeline as hf_pipeline

    classifier = hf_pipeline("text-classification", model=model_ref, device="cpu")
    classifier(texts[:1], truncation=True, max_length=max_length)  # warm-up, untimed
    start = time.perf_counter()
    if batch_size is None:
        results = [classifier(text, truncation=True, max_length=max_length)[0] for text in texts]
    else:
        results = classifier(texts, batch_size=batch_size, truncation=True, max_length=max_length)
    seconds = time.perf_counter() - start
    return seconds, sum(result["label"] != negative for result in results)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="out/demo/re-cid", help="fine-tuned relation model directory")
    parser.add_argument(
        "--entities",
        default=None,
        help="entities table of the articles (default: annotate it with --ner-model)",
    )
    parser.add_argument(
        "--ner-model", default="out/demo/ner-chem-disease", help="NER model that makes the entities table"
    )
    parser.add_argument(
        "--articles",
        default=None,
        help="articles table the abstracts come from (default: the bundled sample)",
    )
    parser.add_argument("--limit", type=int, default=None, help="first N abstracts (default: all)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="the abstracts this many times over, with new PMIDs"
    )
    parser.add_argument(
        "--batch-size", type=int, default=plan.DEFAULT_BATCH_SIZE["cpu"], help="candidates per forward"
    )
    parser.add_argument(
        "--keep", default=None, help="a new directory to write the articles and entities tables to, and keep"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every measurement once; print candidate pairs/s and the ratios."""
    args = parse_args(argv)
    torch.set_num_threads(THREADS)
    allocator.tune()  # as in our actors, so that the bare forward and the pipelines get the same malloc
    model_ref = models.resolve(args.model)
    info = models.info(model_ref)
    task = RelationTask(RelationOptions()).for_models([info["metadata"]])
    negative = info["metadata"].get("negative_label")
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="relations-bench-"))
    try:
        abstracts = repeated(load_abstracts(args.articles, args.limit, workdir), args.repeat)
        articles = write_table(abstracts, workdir / "articles")
        print(
            f"{cpu_name()} ({platform.machine()}), {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{THREADS} torch threads; load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        start = time.perf_counter()
        connect(None)
        ray_start = time.perf_counter() - start
        print(f"Ray start-up {ray_start:.1f} s (excluded from ours)", flush=True)
        entities = args.entities
        if entities is None:
            entities = str(workdir / "entities")
            seconds, found = build_entities(articles, args.ner_model, entities, args.batch_size)
            print(f"entities: annotate ner {seconds:.2f} s, {found} entities (excluded)", flush=True)

        units, batches = candidate_batches(articles, entities, task, model_ref, args.batch_size)
        n = len(units)
        tokens = sum(int(b["attention_mask"].sum()) for b in batches)
        padded = sum(b["input_ids"].numel() for b in batches)
        print(
            f"{abstracts.num_rows} abstracts, {n} candidate pairs ({task.style} marking of "
            f"{', '.join(task.types)}), windows of <= {info['max_seq_length']} sub-tokens in {len(batches)} "
            f"batches of <= {args.batch_size}: {tokens} tokens, {padded} with padding",
            flush=True,
        )
        model = models.load_model(model_ref, RelationTask.model_class).eval()
        rate: dict[str, float] = {}

        def record(name: str, seconds: float, found: int | None = None) -> None:
            rate[name] = n / seconds
            relations = "" if found is None else f"  {found} relations"
            print(f"{name:<20} {seconds:8.2f} s {n / seconds:9.2f} candidates/s{relations}", flush=True)

        def ratio(a: str, b: str, target: str) -> None:
            print(f"{a} / {b}: {rate[a] / rate[b]:.2f} {target}")

        record("bare fp32", time_forward(model, batches))
        record("ours fp32", *time_ours(articles, entities, model_ref, args.batch_size, negative, n))
        texts = [unit.text for unit in units]
        window = info["max_seq_length"]
        record("pipeline loop", *time_pipeline(texts, model_ref, None, window, negative))
        record("pipeline batched", *time_pipeline(texts, model_ref, args.batch_size, window, negative))
        ratio("ours fp32", "bare fp32", "(target >= 0.8)")
        ratio("ours fp32", "pipeline loop", "(target >= 1.5)")
        ratio("ours fp32", "pipeline batched", "(for information: the pipeline given batches)")
        print(f"ours fp32 with Ray start-up: {n / (n / rate['ours fp32'] + ray_start):.2f} candidates/s")
    finally:
        ray.shutdown()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
