"""Typed, frozen run configurations and their command-line / YAML front end.

Each job has one frozen dataclass whose defaults run on a laptop. Every field carries one line of
help in its metadata; :func:`add_arguments` turns a dataclass into argparse options and
:func:`from_args` builds the config back, with values from ``--config FILE.yaml`` under those given
on the command line. The resolved config is saved beside every output it produced.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


def option(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field with a default and one line of help."""
    if isinstance(default, list | dict | set):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


def required(help: str, **extra: Any) -> Any:
    """A dataclass field the user must give."""
    return field(metadata={"help": help, "required": True, **extra})


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    """``biobert-ray ingest``: MEDLINE/PubMed XML files to a Parquet ``articles`` table."""

    input: tuple[str, ...] = required("input files: paths, globs or directories, local or s3://")
    out: str = required("output directory of the articles table (local or s3://)")
    overwrite: bool = option(False, "redo shards whose output is already complete")
    force: bool = option(False, "take over the output's lease even if another run seems to hold it")
    address: str | None = option(None, "Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    cpus_per_task: float = option(1.0, "CPUs reserved by each file-parsing task")
    rows_per_group: int = option(256, "Parquet row-group size of the outputs (annotate reads one at a time)")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Settings shared by fine-tuning and pretraining runs on Ray Train."""

    base_model: str | None = option(None, "hub id, local directory or s3:// URI (default: all-MiniLM-L6-v2)")
    out: str = option("out/model", "where the trained model directory is written (local or s3://)")
    num_workers: int = option(1, "Ray Train workers (DDP); one GPU each with --use-gpu")
    use_gpu: bool = option(False, "train on GPUs (bf16 autocast); CPU workers use gloo")
    cpus_per_worker: float | None = option(
        None,
        "CPUs reserved per worker (default: 1 on GPUs or a cluster; on one machine, its CPUs shared)",
    )
    learning_rate: float = option(5e-5, "peak AdamW learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay (not on biases and LayerNorm weights)")
    adam_epsilon: float = option(1e-8, "AdamW epsilon")
    warmup_ratio: float = option(0.1, "fraction of steps with linear warm-up, then linear decay")
    seed: int = option(42, "random seed")
    storage_path: str | None = option(None, "Ray Train checkpoint storage (default: <out>.checkpoints)")
    max_failures: int = option(
        2, "Ray Train retries after a worker failure, resuming from the last checkpoint"
    )
    run_name: str | None = option(
        None, "Ray Train run name; reusing it resumes that run (default: derived from out)"
    )
    address: str | None = option(None, "Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig(TrainConfig):
    """``biobert-ray finetune``: fine-tune a task head on a benchmark dataset with Ray Train."""

    train: str = required("training file (local or s3://)")
    dev: str | None = option(None, "development file: model selection and early reporting")
    epochs: int = option(3, "training epochs")
    batch_size: int = option(32, "global batch size (split across workers)")
    max_seq_length: int = option(
        128, "longest input in sub-tokens; longer sentences become overlapping windows"
    )
    stride: int = option(
        32,
        "sub-tokens of context shared by consecutive windows (question answering: --doc-stride)",
        aliases=("--doc-stride",),
    )
    max_train_samples: int | None = option(None, "use only the first N training examples (quick runs)")
    max_eval_samples: int | None = option(None, "use only the first N dev examples")


@dataclass(frozen=True, kw_only=True)
class CrossvalConfig(TrainConfig):
    """``biobert-ray crossval``: fine-tune and score every fold of a data set, as Ray Tune trials."""

    data: str = required("folder of folds <data>/<k>/train.* and <data>/<k>/test.* (BioBERT's layout)")
    folds: int = option(10, "run folds 1..N")
    out: str = option("out/crossval", "where each fold's model (fold-<k>/) and crossval.json are written")
    epochs: int = option(3, "training epochs")
    batch_size: int = option(32, "global batch size (split across workers)")
    max_seq_length: int = option(128, "longest input in sub-tokens")
    stride: int = option(
        32,
        "sub-tokens of context shared by consecutive windows (question answering: --doc-stride)",
        aliases=("--doc-stride",),
    )
    max_train_samples: int | None = option(None, "use only the first N training examples of each fold")
    max_concurrent_folds: int | None = option(
        None, "folds trained at once (default: as many as the cluster holds; one at a time on one machine "
        "unless --cpus-per-worker is given)",
    )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    """``biobert-ray evaluate``: score a fine-tuned model on a labelled file."""

    model: str = required("fine-tuned model: local directory or s3:// URI")
    data: str = required("labelled file (local or s3://)")
    out: str | None = option(None, "write the scores as JSON here")
    batch_size: int = option(64, "sequences per forward pass")
    max_seq_length: int | None = option(
        None, "window length in sub-tokens (default: the model's training value)"
    )
    stride: int | None = option(
        None,
        "sub-tokens of context shared by consecutive windows (question answering: --doc-stride; default: "
        "the model's training value)",
        aliases=("--doc-stride",),
    )


@dataclass(frozen=True, kw_only=True)
class AnnotateConfig:
    """``biobert-ray annotate``: run fine-tuned models over an articles table with Ray Data."""

    articles: str = required("articles table directory written by ingest (local or s3://)")
    model: tuple[str, ...] = required("fine-tuned model(s); several run in one pass over the corpus")
    out: str = required("output table directory (local or s3://)")
    batch_size: int | None = option(
        None, "windows per forward pass, length-sorted and dynamically padded (default: 64 on GPU, 16 on CPU)"
    )
    max_seq_length: int | None = option(
        None, "window length in sub-tokens (default: each model's training value)"
    )
    stride: int = option(
        32,
        "sub-tokens of context shared by consecutive windows (question answering: --doc-stride)",
        aliases=("--doc-stride",),
    )
    num_actors: int = option(1, "model actors (one GPU each with --use-gpu)")
    use_gpu: bool = option(False, "run models on GPUs (bf16 autocast)")
    cpus_per_actor: float | None = option(
        None, "CPUs reserved per model actor (default: 1 on GPU nodes; on one machine, its CPUs shared out)"
    )
    quantize: bool = option(False, "int8 dynamic quantization of Linear layers (CPU inference only)")
    precision: str = option(
        "auto",
        "model arithmetic: auto = bf16 autocast on GPUs and on CPUs with native bf16 (AVX512-BF16 or AMX), "
        "fp32 on other CPUs; fp32; bf16",
        choices=("auto", "fp32", "bf16"),
    )
    max_articles: int | None = option(None, "annotate only the first N articles (quick runs)")
    max_failed_row_groups: int = option(
        10, "stop the run when more row groups than this fail (each goes to _errors; a rerun retries them)"
    )
    overwrite: bool = option(False, "redo shards whose output is already complete")
    force: bool = option(False, "take over the output's lease even if another run seems to hold it")
    address: str | None = option(None, "Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")


@dataclass(frozen=True, kw_only=True)
class PretrainConfig(TrainConfig):
    """``biobert-ray pretrain``: continue masked-LM pretraining on an articles table."""

    storage_path: str | None = option(None, "Ray Train run storage (default: <out>.checkpoints)")
    adam_epsilon: float = option(1e-6, "AdamW epsilon (BERT's pretraining value)")
    corpus: str = required("articles table directory written by ingest (local or s3://)")
    text_columns: tuple[str, ...] = option(("title", "abstract"), "text columns of the corpus to train on")
    seq_len: int = option(128, "tokens per packed sequence")
    global_batch: int = option(32, "sequences per optimizer step over all workers (gradient accumulation)")
    micro_batch: int = option(16, "sequences per forward pass on one worker")
    max_steps: int = option(100, "optimizer steps")
    mlm_probability: float = option(0.15, "fraction of tokens selected for masking (80/10/10)")
    whole_word_masking: bool = option(False, "mask all sub-tokens of a selected word together")
    checkpoint_every: int = option(50, "steps between checkpoints")
    keep_checkpoints: int = option(3, "checkpoints kept (the oldest are deleted)")
    eval_every: int = option(50, "steps between held-out MLM loss/accuracy evaluations")
    eval_documents: int = option(64, "documents held out for evaluation")
    log_every: int = option(10, "steps between progress lines")
    resume: bool = option(False, "continue from the last checkpoint of this run")
    train_vocab: bool = option(False, "train a WordPiece vocabulary on the corpus and start from scratch")
    vocab_size: int = option(30522, "vocabulary size with --train-vocab")
    scratch_size: str = option(
        "base",
        "model size with --train-vocab: base (BERT-base, 12x768), small (4x512) or tiny (2x128)",
        choices=("base", "small", "tiny"),
    )
    max_grad_norm: float = option(1.0, "gradient clipping: largest global L2 norm of the gradients")


def _base_type(tp: Any) -> Any:
    """``int`` for ``int | None``; the element type for ``tuple[str, ...]``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    return tp


def add_arguments(parser: argparse.ArgumentParser, config_cls: type, command: str | None = None) -> None:
    """Add one ``--option`` per field of ``config_cls`` and, for a job's config, a ``--config`` YAML option.

    With ``command`` (a task's options), only the fields whose ``commands`` metadata names it.
    """
    hints = typing.get_type_hints(config_cls)
    if command is None:
        parser.add_argument("--config", help="YAML file of option values (command-line values win)")
    for f in dataclasses.fields(config_cls):
        if command is not None and command not in f.metadata.get("commands", ()):
            continue
        flag = "--" + f.name.replace("_", "-")
        tp = _base_type(hints[f.name])
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": f.metadata.get("help", "")}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) in (tuple, list):
            kwargs.update(nargs="+", type=typing.get_args(tp)[0], action="extend")
        else:
            kwargs["type"] = tp
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if f.default is not dataclasses.MISSING and f.default is not None:
            kwargs["help"] += f" (default: {f.default})"
        parser.add_argument(flag, *f.metadata.get("aliases", ()), **kwargs)


def from_args(
    config_cls: type[C], args: argparse.Namespace, others: tuple[type, ...] = (), **overrides: Any
) -> C:
    """Build ``config_cls`` from parsed arguments, a ``--config`` YAML file and explicit overrides.

    The YAML file may also hold the fields of ``others`` (the job's config beside a task's options,
    or the other way round); any other key is an error.
    """
    names = {f.name for f in dataclasses.fields(config_cls)}
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        with open(args.config) as f:
            given = yaml.safe_load(f) or {}
        unknown = set(given) - names - {f.name for other in others for f in dataclasses.fields(other)}
        if unknown:
            raise ValueError(f"{args.config}: unknown options {sorted(unknown)}")
        values.update({k: v for k, v in given.items() if k in names})
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    missing = [
        f.name
        for f in dataclasses.fields(config_cls)
        if f.metadata.get("required") and values.get(f.name) in (None, (), [])
    ]
    if missing:
        raise ValueError(
            "missing required options: " + ", ".join("--" + m.replace("_", "-") for m in missing)
        )
    hints = typing.get_type_hints(config_cls)
    for name, value in values.items():
        if typing.get_origin(_base_type(hints[name])) is tuple and isinstance(value, list | str):
            values[name] = tuple([value] if isinstance(value, str) else value)
    return config_cls(**values)


def command_options(options: Any, command: str) -> dict[str, Any]:
    """The fields of a task's ``options`` that apply to ``command`` (their ``commands`` metadata)."""
    return {
        f.name: getattr(options, f.name)
        for f in dataclasses.fields(options)
        if command in f.metadata.get("commands", ())
    }


def to_dict(config: Any) -> dict[str, Any]:
    """A config as a JSON-ready dict (tuples become lists)."""
    return dataclasses.asdict(config)
