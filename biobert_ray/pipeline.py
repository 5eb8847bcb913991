"""Corpus annotation with Ray Data: articles in, one output table per task out.

The chain reads like a list::

    read + split (CPU) -> encode (CPU) -> predict (actor pool, models loaded once) -> decode + write (CPU)

- **read + split**: one task per row group of each input shard (a Parquet file of the ``articles``
  table; ingest writes row groups of 256 articles) reads ``pmid``, ``title``, ``abstract`` and cuts
  each section into sentences (``text.split_sentences``), keeping each
  sentence's character offset into its section.
- **encode**: sentences become words (``text.split_words``) and model windows (``Task.encode``), once
  per distinct tokenizer among the models. Ray Data fuses it with read + split; it takes the whole
  block of a row group, so each row group stays one task and one block (with a batch size here the
  fused task would bundle row groups until it held a batch, and the whole corpus could reach the
  actor as one block, so that nothing downstream started before the last forward).
- **predict**: each actor loads every model once (``num_gpus=1`` per actor on GPU nodes) and runs the
  windows of a row group's block through each model in length-sorted, dynamically padded batches
  (``inference.predict``; bf16 autocast on GPUs and, per ``AnnotateConfig.precision``, on CPUs with
  native bf16), keeping only what decoding needs (``Task.select``). A block is never cut or joined
  with another, so a row group's batches, and with them its output down to the last bit of each
  score, do not depend on what else Ray scheduled beside it (a rerun of one shard gives its rows).
- **decode + write**: ``Task.decode`` turns the outputs into rows (``schemas.ENTITIES`` for NER), written
  as a part file per row group under ``_parts/``.

The driver counts finished articles per shard from the stage's summaries; when a shard is complete
its parts are merged, sorted, into ``<shard>.parquet`` (atomically) and its completion marker is
written, so a rerun skips finished shards like ingest does. Resources (actors, GPUs, CPUs, batch
sizes) are all set in :func:`build`.
"""

from __future__ import annotations

import functools
import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch

from biobert_ray import inference, models, runs, storage, text
from biobert_ray.config import AnnotateConfig
from biobert_ray.runtime import connect
from biobert_ray.tasks import get_task

SECTIONS = ("title", "abstract")
#: Windows per forward pass when ``AnnotateConfig.batch_size`` is not set. On CPU small batches pad
#: least and were fastest (2-core CPU, MiniLM: 16 windows 22.0 s, 64 windows 25.8 s for the same
#: 530 abstracts); on GPU larger batches keep the device busy.
DEFAULT_BATCH_SIZE = {"cpu": 16, "gpu": 64}


class Words:
    """A corpus sentence as words: what the NER task encodes and decodes (``words``, no gold ``tags``)."""

    __slots__ = ("tags", "words")

    def __init__(self, words: list[str]) -> None:
        self.words, self.tags = words, ()


@functools.lru_cache(maxsize=16)
def model_info(ref: str) -> dict[str, Any]:
    """Label map, window settings and tokenizer identity of a fine-tuned model (cached per process)."""
    from transformers import AutoConfig

    resolved = models.resolve(ref)
    config = AutoConfig.from_pretrained(resolved, local_files_only=Path(resolved).is_dir())
    metadata = models.read_metadata(ref)
    digest = hashlib.sha256()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        path = Path(resolved) / name
        if path.exists():
            digest.update(path.read_bytes())
    return {
        "id2label": {int(k): v for k, v in config.id2label.items()},
        "task": metadata.get("task", "ner"),
        "max_seq_length": metadata.get("max_seq_length", 128),
        "tokenizer_key": digest.hexdigest()[:16],
    }


def split_shard(batch: dict[str, np.ndarray]) -> pa.Table:
    """Read one row group of an articles shard and cut its sections into sentences (one row per sentence).

    The input row names the shard, its path, the row group and how many of its rows to take. Every
    article yields at least one row (an empty sentence when it has no text) and exactly one row with
    ``last = True``, so the driver can count finished articles.
    """
    (shard,), (path,) = batch["shard"], batch["path"]
    (row_group,), (limit,) = batch["row_group"], batch["limit"]
    fs, inner = storage.filesystem(path)
    with fs.open(inner, "rb") as f:
        group = pq.ParquetFile(f).read_row_group(int(row_group), columns=["pmid", *SECTIONS])
        articles = group.slice(0, int(limit)).to_pylist()
    rows: dict[str, list] = {
        k: [] for k in ("shard", "pmid", "section", "sentence_index", "sentence_start", "text", "last")
    }

    def add(pmid, section, index, start, sentence) -> None:
        for key, value in zip(rows, (shard, pmid, section, index, start, sentence, False), strict=True):
            rows[key].append(value)

    for article in articles:
        first_row = len(rows["pmid"])
        for section in SECTIONS:
            section_text = article[section] or ""
            for index, (start, end) in enumerate(text.split_sentences(section_text)):
                add(article["pmid"], section, index, start, section_text[start:end])
        if len(rows["pmid"]) == first_row:
            add(article["pmid"], "title", 0, 0, "")
        rows["last"][-1] = True
    return pa.table(rows)


def encode_sentences(batch: pa.Table, groups: dict[str, dict[str, Any]], stride: int) -> pa.Table:
    """Add word spans and, per tokenizer group, the model windows of every sentence."""
    sentences = batch.column("text").to_pylist()
    spans = [text.split_words(s) for s in sentences]
    units = [Words([s[a:b] for a, b in word_spans]) for s, word_spans in zip(sentences, spans, strict=True)]
    columns = {
        "word_starts": pa.array([[a for a, _ in w] for w in spans], pa.list_(pa.int32())),
        "word_ends": pa.array([[b for _, b in w] for w in spans], pa.list_(pa.int32())),
    }
    for key, group in groups.items():
        tokenizer = models.cached_tokenizer(group["tokenizer_ref"])
        windows = get_task(group["task"]).encode(units, tokenizer, group["max_length"], stride)
        columns[f"windows_{key}"] = pa.array(windows, WINDOWS)
    for name, column in columns.items():
        batch = batch.append_column(name, column)
    return batch


WINDOWS = pa.list_(
    pa.struct(
        [
            pa.field("input_ids", pa.list_(pa.int32())),
            pa.field("positions", pa.list_(pa.int32())),
            pa.field("word_ids", pa.list_(pa.int32())),
        ]
    )
)


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """int8 dynamic quantization of every Linear layer, with per-output-channel weight scales.

    Per-channel scales kept NCBI-disease test F1 within 0.7 points of fp32 on the models measured
    (per-tensor scales lost about 2 points); see docs/benchmarks.md. CPU inference only.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


def cpu_bf16(precision: str, quantize: bool) -> bool:
    """Whether a CPU actor runs its models under bf16 autocast (``AnnotateConfig.precision``).

    Decided in the actor, on the node that runs it. int8 models (``quantize``) stay as they are.
    """
    if quantize or precision == "fp32":
        return False
    return precision == "bf16" or inference.cpu_has_fast_bf16()


class Predictor:
    """Ray Data actor: loads every model once, then runs each batch's windows through each of them."""

    def __init__(
        self,
        refs: list[str],
        groups: dict[str, str],
        batch_size: int,
        use_gpu: bool,
        quantize: bool,
        threads: int,
        precision: str,
    ):
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(threads)
        self.cpu_bf16 = cpu_bf16(precision, quantize)
        self.refs, self.groups, self.batch_size = refs, groups, batch_size
        self.models = []
        for ref in refs:
            task = get_task(model_info(ref)["task"])
            model = models.load_model(ref, task.model_class).to(self.device).eval()
            if quantize and self.device.type == "cpu":
                model = quantize_int8(model)
            pad_id = models.cached_tokenizer(ref).pad_token_id
            self.models.append((task, model, pad_id))

    def __call__(self, batch: pa.Table) -> pa.Table:
        for index, (ref, (task, model, pad_id)) in enumerate(zip(self.refs, self.models, strict=True)):
            per_sentence = batch.column(f"windows_{self.groups[ref]}").to_pylist()
            flat = [w for windows in per_sentence for w in windows]
            selected = inference.predict(
                model, flat, task.select, pad_id, self.batch_size, self.device, self.cpu_bf16
            )
            outputs, start = [], 0
            for windows in per_sentence:
                outputs.append(
                    [np.asarray(s, dtype=np.float32).ravel() for s in selected[start : start + len(windows)]]
                )
                start += len(windows)
            batch = batch.append_column(
                f"outputs_{index}", pa.array(outputs, pa.list_(pa.list_(pa.float32())))
            )
        return batch


def decode_and_write(
    batch: pa.Table, refs: list[str], groups: dict[str, str], out: str, run_id: str
) -> pa.Table:
    """Decode every model's outputs into ``entities`` rows, write one part file per shard of the batch.

    Returns one summary row per shard: the part written, its row count, and how many sentences and
    articles of the shard this batch finished.
    """
    infos = [model_info(ref) for ref in refs]
    tasks = [get_task(info["task"]) for info in infos]
    schema = tasks[0].schema
    columns = {
        name: batch.column(name).to_pylist() for name in batch.column_names if not name.startswith("windows_")
    }
    windows = {key: batch.column(f"windows_{key}").to_pylist() for key in set(groups.values())}
    by_shard: dict[str, list[dict]] = {}
    done: dict[str, list[int]] = {}
    for row in range(batch.num_rows):
        shard = columns["shard"][row]
        counts = done.setdefault(shard, [0, 0])
        counts[0] += 1
        counts[1] += int(columns["last"][row])
        rows = by_shard.setdefault(shard, [])
        sentence = columns["text"][row]
        starts, ends = columns["word_starts"][row], columns["word_ends"][row]
        unit = Words([sentence[a:b] for a, b in zip(starts, ends, strict=True)])
        provenance = {
            "pmid": columns["pmid"][row],
            "section": columns["section"][row],
            "sentence_index": columns["sentence_index"][row],
            "run_id": run_id,
        }
        offset = columns["sentence_start"][row]
        for index, (ref, info, task) in enumerate(zip(refs, infos, tasks, strict=True)):
            n_labels = len(info["id2label"])
            selected = [
                np.asarray(o, dtype=np.float32).reshape(-1, n_labels)
                for o in columns[f"outputs_{index}"][row]
            ]
            prediction = task.decode(unit, windows[groups[ref]][row], selected, info["id2label"])
            for found in task.rows(prediction, sentence, starts, ends):
                found["char_start"] += offset
                found["char_end"] += offset
                rows.append({**provenance, **found, "model": ref})
    summary: dict[str, list] = {k: [] for k in ("shard", "part", "entities", "sentences", "articles")}
    for shard, rows in by_shard.items():
        part = storage.join(out, "_parts", shard, f"{uuid.uuid4().hex}.parquet")
        storage.write_parquet(pa.Table.from_pylist(rows, schema=schema), part, schema)
        for key, value in zip(summary, (shard, part, len(rows), *done[shard]), strict=True):
            summary[key].append(value)
    return pa.table(summary)


def _plan(config: AnnotateConfig, log) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pending shards ``{shard, path, limit, row_groups}`` and the summaries of shards already complete.

    ``limit`` is how many articles of the shard to annotate (all, unless ``max_articles`` cuts them)
    and ``row_groups`` the ``(row group, rows to take)`` pairs that hold them: each row group is one
    unit of Ray Data work, so a large shard is read and processed in pieces that stream.
    """
    files = storage.list_files(config.articles, ".parquet")
    if not files:
        raise FileNotFoundError(f"no articles table (no *.parquet files) at {config.articles}")
    pending, skipped = [], []
    remaining = config.max_articles
    for path in files:
        name = runs.shard_name(path)
        fs, inner = storage.filesystem(path)
        with fs.open(inner, "rb") as f:
            metadata = pq.ParquetFile(f).metadata
        row_groups = []
        for index in range(metadata.num_row_groups):
            rows = metadata.row_group(index).num_rows
            take = rows if remaining is None else min(rows, remaining)
            if remaining is not None:
                remaining -= take
            if take:
                row_groups.append((index, take))
        limit = sum(take for _, take in row_groups)
        done = None if config.overwrite else runs.read_complete(config.out, name)
        if done is not None:
            log(f"skip {path}: shard {name} is complete ({done['rows']} rows)")
            skipped.append({**done, "status": "skipped"})
        else:
            pending.append({"shard": name, "path": path, "limit": limit, "row_groups": row_groups})
    return pending, skipped


def _groups(
    refs: tuple[str, ...], max_seq_length: int | None
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Models that share a tokenizer and window length share one encoding: ``(groups, ref -> group key)``."""
    groups: dict[str, dict[str, Any]] = {}
    membership: dict[str, str] = {}
    for ref in refs:
        info = model_info(ref)
        max_length = max_seq_length or info["max_seq_length"]
        key = f"{info['tokenizer_key']}_{max_length}"
        groups.setdefault(key, {"tokenizer_ref": ref, "max_length": max_length, "task": info["task"]})
        membership[ref] = key
    tasks = {model_info(ref)["task"] for ref in refs}
    if len(tasks) > 1:
        raise ValueError(f"models of different tasks cannot share one annotation run: {sorted(tasks)}")
    return groups, membership


def build(config: AnnotateConfig, pending: list[dict[str, Any]], run_id: str) -> ray.data.Dataset:
    """The Ray Data chain of the module docstring, with every resource setting in one place."""
    groups, membership = _groups(config.model, config.max_seq_length)
    refs = list(config.model)
    threads = max(1, round(config.cpus_per_actor))
    batch_size = config.batch_size or DEFAULT_BATCH_SIZE["gpu" if config.use_gpu else "cpu"]
    work = [
        {"shard": p["shard"], "path": p["path"], "row_group": group, "limit": take}
        for p in pending
        for group, take in p["row_groups"]
    ]
    return (
        ray.data.from_items(work, override_num_blocks=len(work))
        .map_batches(split_shard, batch_size=1, batch_format="numpy", num_cpus=0.25)
        .map_batches(
            encode_sentences, fn_kwargs={"groups": groups, "stride": config.stride},
            batch_size=None, batch_format="pyarrow", num_cpus=0.25,
        )
        .map_batches(
            Predictor,
            fn_constructor_kwargs={
                "refs": refs, "groups": membership, "batch_size": batch_size,
                "use_gpu": config.use_gpu, "quantize": config.quantize, "threads": threads,
                "precision": config.precision,
            },
            compute=ray.data.ActorPoolStrategy(size=config.num_actors),
            batch_size=None, batch_format="pyarrow",
            num_gpus=1 if config.use_gpu else 0, num_cpus=config.cpus_per_actor,
        )
        .map_batches(
            decode_and_write,
            fn_kwargs={"refs": refs, "groups": membership, "out": config.out, "run_id": run_id},
            batch_size=None, batch_format="pyarrow", num_cpus=0.25,
        )
    )  # fmt: skip


def _finish_shard(out: str, name: str, parts: list[str], schema: pa.Schema, summary: dict[str, Any]) -> None:
    """Merge a complete shard's parts into ``<shard>.parquet``, sorted, then mark the shard complete."""
    tables = []
    for part in parts:
        fs, inner = storage.filesystem(part)
        with fs.open(inner, "rb") as f:
            tables.append(pq.read_table(f, schema=schema))
    merged = pa.concat_tables(tables) if tables else schema.empty_table()
    merged = merged.sort_by(
        [(c, "ascending") for c in ("pmid", "section", "sentence_index", "char_start", "model")]
    )
    target = storage.join(out, f"{name}.parquet")
    storage.write_parquet(merged, target, schema)
    runs.mark_complete(out, name, {**summary, "name": name, "rows": merged.num_rows, "outputs": [target]})
    for part in parts:
        storage.remove(part)


def _clear_parts(out: str, name: str) -> None:
    """Remove part files a crashed earlier run left for shard ``name``."""
    for part in storage.list_files(storage.join(out, "_parts", name), ".parquet"):
        storage.remove(part)


def run(config: AnnotateConfig, log=print) -> dict[str, Any]:
    """Annotate every pending shard of ``config.articles`` with ``config.model``; returns the run summary.

    The summary (also ``<out>/_run.json``) holds config, versions, counts (shards, articles,
    sentences, rows per model), wall time and articles/s.
    """
    started, start = runs.utc_now(), time.perf_counter()
    run_id = runs.new_run_id()
    pending, skipped = _plan(config, log)
    task = get_task(model_info(config.model[0])["task"])
    schema = task.schema
    progress: dict[str, dict[str, Any]] = {
        p["shard"]: {
            "source": p["path"],
            "articles_expected": p["limit"],
            "articles": 0,
            "sentences": 0,
            "rows": 0,
            "parts": [],
        }
        for p in pending
    }
    finished = []
    for shard in [p for p in pending if p["limit"] == 0]:
        _finish_shard(
            config.out, shard["shard"], [], schema, {"source": shard["path"], "articles": 0, "sentences": 0}
        )
        finished.append({"name": shard["shard"], "articles": 0, "sentences": 0, "rows": 0, "status": "ok"})
    pending = [p for p in pending if p["limit"] > 0]
    if pending:
        connect(config.address)
        for shard in pending:
            _clear_parts(config.out, shard["shard"])
        for summary in build(config, pending, run_id).iter_rows():
            state = progress[summary["shard"]]
            state["parts"].append(summary["part"])
            for key in ("articles", "sentences"):
                state[key] += summary[key]
            state["rows"] += summary["entities"]
            if state["articles"] == state["articles_expected"]:
                record = {
                    "source": state["source"],
                    "articles": state["articles"],
                    "sentences": state["sentences"],
                }
                _finish_shard(config.out, summary["shard"], state["parts"], schema, record)
                log(
                    f"{state['source']}: {state['articles']} articles, {state['sentences']} sentences, "
                    f"{state['rows']} {task.table} rows"
                )
                finished.append({"name": summary["shard"], **record, "rows": state["rows"], "status": "ok"})
    wall = time.perf_counter() - start
    shards = [*finished, *skipped]
    return runs.write_summary(
        config.out,
        "annotate",
        config,
        started,
        wall,
        counts={
            "shards": len(shards),
            "shards_processed": len(finished),
            "shards_skipped": len(skipped),
            "articles": sum(s["articles"] for s in shards),
            "sentences": sum(s["sentences"] for s in shards),
            "rows": sum(s["rows"] for s in shards),
        },
        rate=("articles_per_second", sum(s["articles"] for s in finished)),
        shards=shards,
        run_id=run_id,
    )
