"""The Ray Data chain of corpus annotation: articles row groups in, part files and summaries out.

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
- **decode + write**: ``Task.decode`` turns the outputs into rows (``schemas.ENTITIES`` for NER),
  written atomically as the row group's part file, whose name the driver chose
  (:func:`part_uri`); the stage returns one summary row per row group.

**Faults are bounded.** A Python exception in any stage becomes that row group's summary row with an
``error`` (the later stages pass it on), so one bad row group fails alone and says why. A process
that dies (a segfault, an out-of-memory kill) is retried: each task up to :data:`RETRIES` more times,
on a restarted actor for the predict stage; a row group that still fails is dropped from the stream
(``max_errored_blocks``), which the driver sees as a missing summary. When more than
``--max-failed-row-groups`` fail, the run stops: nothing retries forever.

:mod:`biobert_ray.annotate` plans the work, runs this chain and finishes shards. Resources (actors,
GPUs, CPUs, batch sizes, retries) are all set in :func:`build`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import signal
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch

from biobert_ray import inference, models, storage, text
from biobert_ray.config import AnnotateConfig
from biobert_ray.tasks import get_task

SECTIONS = ("title", "abstract")
#: Windows per forward pass when ``AnnotateConfig.batch_size`` is not set. On CPU small batches pad
#: least and were fastest (2-core CPU, MiniLM: 16 windows 22.0 s, 64 windows 25.8 s for the same
#: 530 abstracts); on GPU larger batches keep the device busy.
DEFAULT_BATCH_SIZE = {"cpu": 16, "gpu": 64}
#: Extra attempts of a task (and of an actor call, on a restarted actor) after its process died.
RETRIES = 2
#: CPUs of each of the two CPU stages (read + split + encode, decode + write).
STAGE_CPUS = 0.25
#: Fault injection for tests and drills: an actor whose batch holds this PMID kills its own process.
KILL_AT_PMID_ENV = "BIOBERT_RAY_KILL_ACTOR_AT_PMID"


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


def part_uri(out: str, shard: str, identity_digest: str, row_group: int) -> str:
    """The part file of one row group: named by the shard's identity, so a rerun can reuse it."""
    return storage.join(out, "_parts", shard, f"{identity_digest}-{row_group:06d}.parquet")


def _failure(batch: pa.Table, stage: str, exc: BaseException) -> pa.Table:
    """The one-row table that carries a row group's failure through the later stages."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    place = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    return pa.table(
        {
            "shard": [batch.column("shard")[0].as_py()],
            "row_group": [int(batch.column("row_group")[0].as_py())],
            "error": [f"{stage}: {type(exc).__name__}: {exc}{place}"],
        }
    )


def guarded(stage: Callable[..., pa.Table]) -> Callable[..., pa.Table]:
    """Run ``stage`` on a row group's block; an exception becomes the block's failure row.

    A block that already carries a failure (an ``error`` column) passes through untouched.
    """

    @functools.wraps(stage)
    def run(batch: pa.Table, *args, **kwargs) -> pa.Table:
        if "error" in batch.column_names:
            return batch
        try:
            return stage(batch, *args, **kwargs)
        except Exception as exc:
            return _failure(batch, stage.__name__, exc)

    return run


def split_shard(batch: dict[str, np.ndarray]) -> pa.Table:
    """Read one row group of an articles shard and cut its sections into sentences (one row per sentence).

    The input row names the shard, its path, the row group and how many of its rows to take. Every
    article yields at least one row (an empty sentence when it has no text) and exactly one row with
    ``last = True``, so the driver can count finished articles. A failure to read it becomes the row
    group's failure row.
    """
    try:
        return _split_shard(batch)
    except Exception as exc:
        key = pa.table({"shard": [batch["shard"][0]], "row_group": [int(batch["row_group"][0])]})
        return _failure(key, "split_shard", exc)


def _split_shard(batch: dict[str, np.ndarray]) -> pa.Table:
    (shard,), (path,) = batch["shard"], batch["path"]
    (row_group,), (limit,) = batch["row_group"], batch["limit"]
    fs, inner = storage.filesystem(path)
    with fs.open(inner, "rb") as f:
        group = pq.ParquetFile(f).read_row_group(int(row_group), columns=["pmid", *SECTIONS])
        articles = group.slice(0, int(limit)).to_pylist()
    rows: dict[str, list] = {
        k: []
        for k in ("shard", "row_group", "pmid", "section", "sentence_index", "sentence_start", "text", "last")
    }

    def add(pmid, section, index, start, sentence) -> None:
        values = (shard, int(row_group), pmid, section, index, start, sentence, False)
        for key, value in zip(rows, values, strict=True):
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


@guarded
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
        kill_at_pmid: int | None = None,
    ):
        self.kill_at_pmid = kill_at_pmid
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
        if "error" in batch.column_names:
            return batch
        if self.kill_at_pmid is not None and self.kill_at_pmid in set(batch.column("pmid").to_pylist()):
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            return self._predict(batch)
        except Exception as exc:
            return _failure(batch, "predict", exc)

    def _predict(self, batch: pa.Table) -> pa.Table:
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


SUMMARY = pa.schema(
    [
        pa.field("shard", pa.string()),
        pa.field("row_group", pa.int64()),
        pa.field("part", pa.string()),
        pa.field("rows", pa.int64()),
        pa.field("sentences", pa.int64()),
        pa.field("articles", pa.int64()),
        pa.field("error", pa.string()),
    ]
)


def decode_and_write(
    batch: pa.Table,
    refs: list[str],
    groups: dict[str, str],
    out: str,
    run_id: str,
    digests: dict[str, str],
    expected: dict[str, int],
) -> pa.Table:
    """Decode one row group's outputs into rows (``entities`` for NER) and write its part file.

    ``digests`` maps each shard to its identity digest (the part's name, :func:`part_uri`) and
    ``expected`` each ``shard/row_group`` to the articles it holds: a block that does not hold them all
    fails rather than write a partial part. Returns one :data:`SUMMARY` row (with ``error`` set, and
    nothing written, when this or an earlier stage failed).
    """
    if "error" not in batch.column_names:
        try:
            return _decode_and_write(batch, refs, groups, out, run_id, digests, expected)
        except Exception as exc:
            batch = _failure(batch, "decode_and_write", exc)
    failed = batch.to_pylist()[0]
    row = {**dict.fromkeys(SUMMARY.names), **failed, "rows": 0, "sentences": 0, "articles": 0}
    return pa.Table.from_pylist([row], schema=SUMMARY)


def _decode_and_write(
    batch: pa.Table,
    refs: list[str],
    groups: dict[str, str],
    out: str,
    run_id: str,
    digests: dict[str, str],
    expected: dict[str, int],
) -> pa.Table:
    infos = [model_info(ref) for ref in refs]
    tasks = [get_task(info["task"]) for info in infos]
    schema = tasks[0].schema
    columns = {
        name: batch.column(name).to_pylist() for name in batch.column_names if not name.startswith("windows_")
    }
    shard, row_group = columns["shard"][0], columns["row_group"][0]
    key = f"{shard}/{row_group}"
    articles = sum(columns["last"])
    if len(set(zip(columns["shard"], columns["row_group"], strict=True))) != 1 or articles != expected[key]:
        raise RuntimeError(f"the block of {key} holds {articles} of its {expected[key]} articles")
    windows = {k: batch.column(f"windows_{k}").to_pylist() for k in set(groups.values())}
    rows: list[dict] = []
    for row in range(batch.num_rows):
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
    part = part_uri(out, shard, digests[shard], row_group)
    counts = {b"sentences": str(batch.num_rows).encode()}  # for a rerun that reuses the part
    storage.write_parquet(pa.Table.from_pylist(rows, schema=schema), part, schema.with_metadata(counts))
    summary = {
        "shard": shard, "row_group": row_group, "part": part, "rows": len(rows),
        "sentences": batch.num_rows, "articles": articles, "error": None,
    }  # fmt: skip
    return pa.Table.from_pylist([summary], schema=SUMMARY)


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


def build(
    config: AnnotateConfig,
    work: list[dict[str, Any]],
    run_id: str,
    digests: dict[str, str],
    cpus_per_actor: float,
) -> ray.data.Dataset:
    """The Ray Data chain of the module docstring, with every resource setting in one place.

    ``work`` holds one ``{shard, path, row_group, limit}`` item per row group to annotate; ``digests``
    maps each shard to its identity digest (see :func:`part_uri`).
    """
    groups, membership = _groups(config.model, config.max_seq_length)
    refs = list(config.model)
    threads = max(1, round(cpus_per_actor))
    batch_size = config.batch_size or DEFAULT_BATCH_SIZE["gpu" if config.use_gpu else "cpu"]
    expected = {f"{w['shard']}/{w['row_group']}": w["limit"] for w in work}
    kill_at = os.environ.get(KILL_AT_PMID_ENV)
    dataset = ray.data.from_items(work, override_num_blocks=len(work))
    # Retries are bounded per row group. Ray Data 2.60 takes max_retries / max_restarts /
    # max_task_retries only through map_batches' ray_remote_args (deprecated, removed in 2.64: pyproject
    # pins ray<2.64); its actor default retries every task for ever. A row group whose process died
    # after its retries is dropped (the driver records it), up to a bound.
    dataset.context.max_errored_blocks = config.max_failed_row_groups
    return (
        dataset.map_batches(
            split_shard, batch_size=1, batch_format="numpy", num_cpus=STAGE_CPUS, max_retries=RETRIES,
        )
        .map_batches(
            encode_sentences, fn_kwargs={"groups": groups, "stride": config.stride},
            batch_size=None, batch_format="pyarrow", num_cpus=STAGE_CPUS, max_retries=RETRIES,
        )
        .map_batches(
            Predictor,
            fn_constructor_kwargs={
                "refs": refs, "groups": membership, "batch_size": batch_size,
                "use_gpu": config.use_gpu, "quantize": config.quantize, "threads": threads,
                "precision": config.precision, "kill_at_pmid": int(kill_at) if kill_at else None,
            },
            # one row group at a time per actor: a process that dies takes only its own row group with
            # it, not a queued one (which would spend its retries on another's fault)
            compute=ray.data.ActorPoolStrategy(size=config.num_actors, max_tasks_in_flight_per_actor=1),
            batch_size=None, batch_format="pyarrow",
            num_gpus=1 if config.use_gpu else 0, num_cpus=cpus_per_actor,
            max_restarts=-1, max_task_retries=RETRIES,
        )
        .map_batches(
            decode_and_write,
            fn_kwargs={
                "refs": refs, "groups": membership, "out": config.out, "run_id": run_id,
                "digests": digests, "expected": expected,
            },
            batch_size=None, batch_format="pyarrow", num_cpus=STAGE_CPUS, max_retries=RETRIES,
        )
    )  # fmt: skip
