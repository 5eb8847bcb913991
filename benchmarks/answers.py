"""Question answering over a corpus: ``biobert-ray annotate qa`` against the bare model forward and a
plain per-pair loop, in one run; and the retrieval index at the scale of a million abstracts.

**Throughput** (``--questions``, in (question, article) pairs per second). Input: the abstracts of the
bundled MEDLINE sample (or ``--articles``), the first ``--limit``, ``--repeat`` times over with new
PMIDs, written as a one-shard articles table with null titles (``benchmarks/annotate.py``), so that a
pair is one question with one abstract. ``--questions`` questions (``What is reported about <the first
words of an abstract>?``), each naming ``--docs-per-question`` articles (so every run reads the same
pairs, without retrieval), in one question batch. Model: a fine-tuned span model (``--model``, e.g. the
demo's). Measured:

- **ours**: ``biobert_ray.annotate.run("qa", AnnotateConfig(..., precision="fp32"),
  QaOptions(questions=FILE))`` end to end (questions file and Parquet in, ``answers`` Parquet out), one
  actor of 1.5 CPUs (2 torch threads), a fresh output directory. Ray is started before the clock; its
  start-up is printed apart. Where bf16 is faster on this CPU (``inference.cpu_has_fast_bf16``) ours
  and the bare forward also run under bf16 autocast (``precision="bf16"``, what the default ``"auto"``
  picks there).
- **bare forward**: ``model(**batch)`` alone, under ``torch.inference_mode`` with the same threads, over
  exactly the batches our actor gets, rebuilt with our code path: the batch's work list
  (``answers.plan.work_list``), per row group holding its articles the units of ``QaTask.units``, their
  windows (``QaTask.encode``), length-sorted and cut into ``--batch-size`` windows
  (``QaTask.collate``).
- **plain loop**: what ``transformers.pipeline("question-answering")`` did, one call per pair. That
  pipeline was removed in transformers 5.3 (huggingface/transformers#43325; this project runs 5.x), so
  the loop is its recipe written out with run_qa's functions of ``benchmarks/qa_baseline.py``: per
  pair, ``tokenizer(question, context, truncation="only_second", max_length, stride,
  return_overflowing_tokens=True, padding="max_length")``, one forward over the pair's features, and
  utils_qa's n-best post-processing (``example_spans``), with the model's window length, our stride,
  n-best 20 and answers of at most 30 sub-tokens. **plain batched**: the same over all pairs' features
  in batches of ``--batch-size``.

**Retrieval** (``--index-abstracts N``, e.g. 1000000): the sample's articles (title and abstract)
repeated with new PMIDs up to ``N`` articles, written as an articles table of ``--shard-rows`` articles
per shard (marked complete as ingest marks its shards); then ``retrieval.build_index`` over it (wall
time, size on disk), and ``Retriever.search`` of ``--queries`` questions for their 50 best articles
(milliseconds per question: mean, median, 95th percentile). The table is written before the clock
starts.

    biobert-ray demo    # once: writes out/demo/qa-bioasq
    HF_HUB_OFFLINE=1 python benchmarks/answers.py --model out/demo/qa-bioasq --repeat 2 --questions 64
    HF_HUB_OFFLINE=1 python benchmarks/answers.py --model out/demo/qa-bioasq --questions 0 \\
        --index-abstracts 1000000

Prints the CPU, one line per measurement and the ratios; every figure is from this one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")


import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import torch

# helpers of the other benchmarks (this script's directory is on sys.path when it runs)
from annotate import load_abstracts, time_forward, write_table
from qa_baseline import example_spans, test_features
from relations import CPUS_PER_ACTOR, THREADS, config, cpu_name, repeated

from biobert_ray import allocator, annotate, inference, ingest, models, retrieval, runs, schemas, storage
from biobert_ray.annotate import build
from biobert_ray.annotate import plan as annotate_plan
from biobert_ray.answers import plan
from biobert_ray.runtime import connect
from biobert_ray.samples import sample_path
from biobert_ray.tasks.qa.formats import QaExample
from biobert_ray.tasks.qa.questions import Question
from biobert_ray.tasks.qa.task import QaOptions, QaTask

STRIDE = 32  # annotate's default --doc-stride
N_BEST, MAX_ANSWER_LENGTH = QaOptions().n_best, QaOptions().max_answer_length
RETRIEVED = 50  # annotate qa's default --top-docs


def make_questions(abstracts: pa.Table, count: int, per_question: int) -> list[Question]:
    """``count`` factoid questions, question ``q`` about the first words of article ``q * per_question``
    and naming that article and the ``per_question - 1`` after it (cyclically)."""
    pmids, texts = abstracts.column("pmid").to_pylist(), abstracts.column("abstract").to_pylist()
    questions = []
    for q in range(count):
        first = (q * per_question) % len(pmids)
        words = " ".join(texts[first].split()[:8]).rstrip(".,;:")
        named = tuple(pmids[(first + i) % len(pmids)] for i in range(per_question))
        questions.append(Question(f"q{q}", f"What is reported about {words}?", "factoid", named))
    return questions


def write_questions(questions: Sequence[Question], path: Path) -> str:
    """The questions as the JSON lines ``annotate qa`` reads; the file's path."""
    lines = (json.dumps({"id": q.id, "question": q.text, "pmids": list(q.pmids)}) for q in questions)
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def our_batches(
    articles: str, questions: list[Question], task: QaTask, model_ref: str, batch_size: int
) -> tuple[list[QaExample], list[dict[str, torch.Tensor]]]:
    """The (question, section) units of the questions, and the padded batches our actor feeds the model
    for them, in the order it feeds them (one call per row group holding a wanted article)."""
    groups, membership = build.tokenizer_groups((model_ref,), None)
    group = groups[membership[model_ref]]
    tokenizer = models.cached_tokenizer(group["tokenizer_ref"])
    pad_id = models.cached_tokenizer(model_ref).pad_token_id
    locator = plan.Locator(articles, None, questions, log=lambda _: None)
    work, _ = plan.work_list(questions, locator, RETRIEVED, ["span"])
    shard_uris = {runs.shard_name(uri): uri for uri in runs.complete_shards(articles)[0]}
    units: list[QaExample] = []
    batches = []
    for shard, rows in sorted(work["span"].items()):
        side = pa.Table.from_pylist(rows, schema=schemas.QA_WORK)
        with storage.open_parquet(shard_uris[shard]) as parquet:
            for row_group, _ in plan.row_groups_with(shard_uris[shard], {r["pmid"] for r in rows}):
                held = parquet.read_row_group(row_group, columns=list(task.article_columns))
                wanted = side.filter(pc.is_in(side.column("pmid"), value_set=held.column("pmid")))
                group_units = task.units(held, {"work": wanted})
                windows = task.encode(group_units, tokenizer, group["max_length"], STRIDE)
                ordered = sorted(
                    (w for per_unit in windows for w in per_unit), key=lambda w: len(w["input_ids"])
                )
                for start in range(0, len(ordered), batch_size):
                    batches.append(task.collate(ordered[start : start + batch_size], pad_id, False))
                units.extend(group_units)
    return units, batches


def time_ours(
    articles: str, questions_file: str, model_ref: str, batch_size: int, pairs: int, precision: str
) -> float:
    """Wall seconds of one ``annotate.run("qa")`` at ``precision`` into a fresh directory. Raises
    RuntimeError unless it read every pair and answered every question."""
    out = tempfile.mkdtemp(prefix="answers-bench-out-")
    try:
        options = QaOptions(questions=questions_file)
        settings = replace(config(articles, model_ref, out, batch_size), precision=precision)
        start = time.perf_counter()
        report = annotate.run("qa", settings, options, log=lambda _: None)
        seconds = time.perf_counter() - start
        counts = report["counts"]
        if report["status"] != "ok" or counts["units"] != pairs or counts["answered"] != counts["questions"]:
            raise RuntimeError(
                f"annotate qa: status {report['status']}, {counts['units']} pairs read of {pairs}, "
                f"{counts['answered']} of {counts['questions']} questions answered ({report.get('error')})"
            )
        return seconds
    finally:
        shutil.rmtree(out, ignore_errors=True)


def time_plain(
    units: Sequence[QaExample], model: torch.nn.Module, tokenizer, max_length: int, batch_size: int | None
) -> tuple[float, int]:
    """Wall seconds of run_qa's pre-processing, forward and post-processing over ``units``: one pair at
    a time (``batch_size`` None) or all pairs' features in batches of ``batch_size``; and the spans."""
    args = SimpleNamespace(max_seq_length=max_length, doc_stride=STRIDE)

    def answer(group: Sequence[QaExample], size: int) -> int:
        features, owners, offsets = test_features(group, tokenizer, args)
        starts, ends = [], []
        for first in range(0, len(features), size):
            chunk = features[first : first + size]
            inputs = {key: torch.tensor([f[key] for f in chunk]) for key in chunk[0]}
            outputs = model(**inputs)
            starts.append(outputs.start_logits.numpy())
            ends.append(outputs.end_logits.numpy())
        logits = np.concatenate(starts), np.concatenate(ends)
        spans = example_spans(group, owners, offsets, *logits, N_BEST, MAX_ANSWER_LENGTH)
        return sum(len(s) for s in spans)

    with torch.inference_mode():
        answer(units[:1], 64)  # warm-up, untimed
        start = time.perf_counter()
        found = sum(answer([unit], 64) for unit in units) if batch_size is None else answer(units, batch_size)
        return time.perf_counter() - start, found


def synthetic_articles(target: int, shard_rows: int, directory: Path) -> str:
    """An articles table of ``target`` articles: the bundled sample's articles with a title or an
    abstract, repeated with new PMIDs (copy ``k`` adds ``k`` times one more than the largest PMID),
    ``shard_rows`` per shard, each shard marked complete as ingest marks its shards."""
    ingested = directory / "ingested"
    for source in storage.list_files(sample_path("pubmed")):
        if source.endswith(ingest.INPUT_SUFFIXES):
            ingest.ingest_file(source, str(ingested))
    sample = pa.concat_tables([pq.read_table(p) for p in storage.list_files(str(ingested), ".parquet")])
    empty = pc.and_(pc.is_null(sample["title"]), pc.is_null(sample["abstract"]))
    sample = sample.filter(pc.invert(empty)).select(schemas.ARTICLES.names).cast(schemas.ARTICLES)
    shift = pc.max(sample.column("pmid")).as_py() + 1
    table_dir = directory / "articles"
    table_dir.mkdir()
    for shard, first in enumerate(range(0, target, shard_rows)):
        rows = min(shard_rows, target - first)
        indexes = pa.array([(first + i) % sample.num_rows for i in range(rows)])
        copies = pa.array([(first + i) // sample.num_rows for i in range(rows)], pa.int64())
        block = sample.take(indexes)
        block = block.set_column(0, "pmid", pc.add(block.column("pmid"), pc.multiply(copies, shift)))
        path = table_dir / f"synthetic-{shard:05d}.parquet"
        pq.write_table(block, path, row_group_size=1000)
        runs.mark_complete(str(table_dir), path.stem, {"input": {"synthetic": [first, rows]}}, [str(path)])
    return str(table_dir)


def measure_retrieval(args: argparse.Namespace, workdir: Path) -> None:
    """Build the index of ``--index-abstracts`` articles and time ``--queries`` searches (module
    docstring)."""
    start = time.perf_counter()
    articles = synthetic_articles(args.index_abstracts, args.shard_rows, workdir)
    shards = list(Path(articles).glob("*.parquet"))
    table_bytes = sum(p.stat().st_size for p in shards)
    print(
        f"synthetic articles table: {args.index_abstracts} articles, {len(shards)} shards, "
        f"{table_bytes / 1e9:.2f} GB, written in {time.perf_counter() - start:.1f} s (excluded)",
        flush=True,
    )
    index_dir = str(workdir / "index")
    start = time.perf_counter()
    manifest = retrieval.build_index(articles, index_dir, threads=args.index_threads, log=lambda _: None)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in Path(index_dir).rglob("*") if p.is_file())
    print(
        f"index build: {manifest['documents']} articles in {seconds:.1f} s "
        f"({manifest['documents'] / seconds:.0f} articles/s, {args.index_threads} writer threads), "
        f"{size / 1e9:.2f} GB on disk",
        flush=True,
    )
    retriever = retrieval.open_index(index_dir, articles)
    demo = Path(sample_path("questions", "demo.jsonl")).read_text().splitlines()
    texts = [json.loads(line)["question"] for line in demo]
    sample = pq.read_table(next(Path(articles).glob("*.parquet")), columns=["title"]).column("title")
    texts += [f"What is known about {t.rstrip('.')}?" for t in sample.drop_null().to_pylist()]
    queries = texts[: args.queries]
    retriever.search(queries[0], RETRIEVED)  # warm-up, untimed
    times = []
    for query in queries:
        start = time.perf_counter()
        retriever.search(query, RETRIEVED)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    print(
        f"search ({len(times)} questions, top {RETRIEVED}): mean {statistics.mean(times):.1f} ms, "
        f"median {statistics.median(times):.1f} ms, p95 {times[int(0.95 * (len(times) - 1))]:.1f} ms",
        flush=True,
    )


def measure_throughput(args: argparse.Namespace, workdir: Path) -> None:
    """ours, bare forward and the plain loops over the same pairs (module docstring)."""
    model_ref = models.resolve(args.model)
    info = models.info(model_ref)
    task = QaTask(QaOptions())
    abstracts = repeated(load_abstracts(args.articles, args.limit, workdir), args.repeat)
    articles = write_table(abstracts, workdir / "articles")
    questions = make_questions(abstracts, args.questions, args.docs_per_question)
    questions_file = write_questions(questions, workdir / "questions.jsonl")
    start = time.perf_counter()
    connect(None)
    ray_start = time.perf_counter() - start
    print(f"Ray start-up {ray_start:.1f} s (excluded from ours)", flush=True)
    units, batches = our_batches(articles, questions, task, model_ref, args.batch_size)
    n = len(units)
    windows = sum(len(b["input_ids"]) for b in batches)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    print(
        f"{abstracts.num_rows} abstracts, {len(questions)} questions x {args.docs_per_question} articles "
        f"= {n} pairs; {windows} windows of <= {info['max_seq_length']} sub-tokens (stride {STRIDE}) in "
        f"{len(batches)} batches of <= {args.batch_size}: {tokens} tokens",
        flush=True,
    )
    model = models.load_model(model_ref, QaTask.model_class).eval()
    tokenizer = models.cached_tokenizer(model_ref)
    rate: dict[str, float] = {}

    def record(name: str, seconds: float, note: str = "") -> None:
        rate[name] = n / seconds
        print(f"{name:<16} {seconds:8.2f} s {n / seconds:9.2f} pairs/s {note}", flush=True)

    record("bare fp32", time_forward(model, batches))
    record("ours fp32", time_ours(articles, questions_file, model_ref, args.batch_size, n, "fp32"))
    bf16 = inference.cpu_has_fast_bf16()
    if bf16:  # what precision="auto" picks on this CPU
        record("bare bf16", time_forward(model, batches, cpu_bf16=True))
        record("ours bf16", time_ours(articles, questions_file, model_ref, args.batch_size, n, "bf16"))
    seconds, found = time_plain(units, model, tokenizer, info["max_seq_length"], None)
    record("plain loop", seconds, f"({found} spans)")
    seconds, found = time_plain(units, model, tokenizer, info["max_seq_length"], args.batch_size)
    record("plain batched", seconds, f"({found} spans)")
    ratios = [("ours fp32", "bare fp32", ">= 0.8"), ("ours fp32", "plain loop", ">= 1.5")]
    if bf16:
        ratios += [("ours bf16", "bare bf16", ">= 0.8"), ("ours bf16", "plain loop", ">= 1.5")]
    ratios.append(("ours fp32", "plain batched", "for information"))
    for ours, other, target in ratios:
        print(f"{ours} / {other}: {rate[ours] / rate[other]:.2f} (target {target})")
    print(f"ours fp32 with Ray start-up: {n / (n / rate['ours fp32'] + ray_start):.2f} pairs/s")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="out/demo/qa-bioasq", help="fine-tuned span (qa) model directory")
    parser.add_argument("--articles", default=None, help="articles table (default: the bundled sample)")
    parser.add_argument("--limit", type=int, default=None, help="first N abstracts (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="the abstracts this many times over")
    parser.add_argument("--questions", type=int, default=64, help="questions (0: skip the throughput runs)")
    parser.add_argument("--docs-per-question", type=int, default=10, help="articles each question names")
    parser.add_argument(
        "--batch-size", type=int, default=annotate_plan.DEFAULT_BATCH_SIZE["cpu"], help="windows per forward"
    )
    parser.add_argument("--index-abstracts", type=int, default=0, help="articles of the index measurement")
    parser.add_argument("--shard-rows", type=int, default=50_000, help="articles per synthetic shard")
    parser.add_argument("--index-threads", type=int, default=1, help="tantivy writer threads")
    parser.add_argument("--queries", type=int, default=100, help="questions searched for the latency")
    parser.add_argument("--workdir", default=None, help="where the tables go (default: a temporary folder)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurements asked for; print pairs/s, ratios, index build time, size and latency."""
    args = parse_args(argv)
    torch.set_num_threads(THREADS)
    allocator.tune()  # as in our actors, so that the bare forward and the loops get the same malloc
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="answers-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"{cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {THREADS} torch threads "
        f"(actor: {CPUS_PER_ACTOR} CPUs); load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    try:
        if args.questions:
            measure_throughput(args, workdir)
        if args.index_abstracts:
            measure_retrieval(args, workdir)
    finally:
        ray.shutdown()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
