"""One checkpoint layout for every training run, and restoring the newest one that loads.

A checkpoint is a directory:

- the model (``save_pretrained``, safetensors) and, for fine-tuning, its tokenizer;
- ``optimizer.pt``: the AdamW and learning-rate scheduler state dicts, read back with
  ``torch.load(weights_only=True)`` (:func:`load_torch_state`), so whoever can write to the
  checkpoint storage cannot run code on a resume;
- ``state.json``: the step, the data position (fine-tuning: the epoch; pretraining: the shards and
  sequences consumed) and what else the run records (tokens seen, last evaluation, its fingerprint).

Restoring (:func:`restore_latest_loadable`) starts from Ray Train's latest checkpoint and, when that
one does not load (a truncated weight file, a garbage state file), falls back to the next older one
the run kept, newest first, saying which it skipped and why. Checkpoint directories are therefore
named so that their names sort in the order they were written (``checkpoint_epoch_0003``,
``checkpoint_00001200``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import pyarrow.fs as pafs
import torch
from ray.train import Checkpoint

from biobert_ray import models

logger = logging.getLogger(__name__)
T = TypeVar("T")
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"


def save(
    directory: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict[str, Any],
    tokenizer: Any = None,
) -> None:
    """Write a checkpoint into ``directory``: model (and tokenizer), ``optimizer.pt``, ``state.json``.

    ``state`` must hold ``step`` and be JSON-serialisable.
    """
    directory = Path(directory)
    model.save_pretrained(directory, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, directory / OPTIMIZER_FILE
    )
    (directory / STATE_FILE).write_text(json.dumps(state, indent=2))


def load(
    directory: Path, model_class: Any, required: Iterable[str] = ("step",)
) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """``(state, model, optimizer state)`` of a local checkpoint copy; raises if any does not load.

    ``required``: keys ``state.json`` must have. The optimizer state is a dict with ``optimizer`` and
    ``scheduler``, read with ``weights_only=True``.
    """
    state = json.loads((directory / STATE_FILE).read_text())
    missing = set(required) - state.keys()
    if missing:
        raise ValueError(f"{STATE_FILE} lacks {sorted(missing)}")
    model = models.load_model(str(directory), model_class)
    optimizer_state = load_torch_state(directory / OPTIMIZER_FILE)
    if not isinstance(optimizer_state, dict) or not optimizer_state.keys() >= {"optimizer", "scheduler"}:
        raise ValueError(f"{OPTIMIZER_FILE} holds no optimizer and scheduler state")
    return state, model, optimizer_state


@contextlib.contextmanager
def checkpoint_files(checkpoint: Checkpoint) -> Iterator[Path]:
    """A local copy of ``checkpoint`` private to this process, deleted on exit.

    ``Checkpoint.as_directory()`` downloads a remote checkpoint into one directory shared by the
    processes of a node; two workers restoring at once can then read weight files that the other is
    still rewriting (a SIGBUS in the memory-mapped safetensors load). Each worker downloads its own.
    """
    with tempfile.TemporaryDirectory(prefix="checkpoint-") as directory:
        yield Path(checkpoint.to_directory(directory))


class CheckpointLoadError(RuntimeError):
    """No checkpoint of a run loads: the latest one and every older one kept all failed."""


@dataclass(frozen=True)
class Restored(Generic[T]):
    """What :func:`restore_latest_loadable` loaded (``value``), from which checkpoint, and the names of
    the newer checkpoints it skipped because they failed to load (newest first)."""

    value: T
    checkpoint: Checkpoint
    name: str
    skipped: tuple[str, ...] = ()


def checkpoint_name(checkpoint: Checkpoint) -> str:
    """The directory name of ``checkpoint`` inside its run directory (``checkpoint_00000100``)."""
    return checkpoint.path.rstrip("/").rsplit("/", 1)[-1]


def _run_dir(checkpoint: Checkpoint) -> str:
    return checkpoint.path.rstrip("/").rsplit("/", 1)[0]


def _older_checkpoints(checkpoint: Checkpoint) -> list[Checkpoint]:
    """The run's other checkpoint directories whose names sort before ``checkpoint``'s, newest first.

    They are listed on the checkpoint's own filesystem (Ray Train's storage filesystem: local disk,
    or S3 through fsspec), in the run directory that holds it. What is there is what Ray Train kept
    (``num_to_keep``); directories that sort after the latest registered checkpoint (an upload cut
    short before Ray Train registered it) are never considered.
    """
    run_dir, name = _run_dir(checkpoint), checkpoint_name(checkpoint)
    entries = checkpoint.filesystem.get_file_info(pafs.FileSelector(run_dir))
    names = [
        e.base_name
        for e in entries
        if e.type == pafs.FileType.Directory and e.base_name.startswith("checkpoint_") and e.base_name < name
    ]
    return [
        Checkpoint(path=f"{run_dir}/{n}", filesystem=checkpoint.filesystem)
        for n in sorted(names, reverse=True)
    ]


def _candidates(checkpoint: Checkpoint) -> Iterator[Checkpoint]:
    yield checkpoint
    yield from _older_checkpoints(checkpoint)  # listed only once the latest has failed


def _reason(exc: BaseException) -> str:
    """One line saying why a checkpoint failed to load."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _check_workers_agree(name: str) -> None:
    """Inside a process group, raise unless every worker restored checkpoint ``name``.

    Each worker restores on its own; a load failure on one worker only (a transient storage error)
    would otherwise leave the workers at different epochs or steps, and DDP would hang or diverge.
    Raising fails the worker group, and Ray Train restarts it (``FailureConfig``).
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    names: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(names, name)
    if len(set(names)) > 1:
        raise CheckpointLoadError(f"the workers restored different checkpoints (by rank): {names}")


def restore_latest_loadable(
    checkpoint: Checkpoint | None,
    load: Callable[[Path], T],
    log: Callable[[str], Any] = logger.warning,
) -> Restored[T] | None:
    """``load`` the newest checkpoint of a run that loads, starting from ``checkpoint``.

    ``checkpoint`` is the run's latest registered checkpoint (``ray.train.get_checkpoint()`` in a
    worker, ``Result.checkpoint`` on the driver), or None for a run without one (then None is
    returned). ``load`` gets a private local copy of a checkpoint directory and returns what the
    caller needs from it; any exception it raises (or the copy raises) means the checkpoint does not
    load, and the next older checkpoint directory of the run (see :func:`_older_checkpoints`) is
    tried. One line per skipped checkpoint goes to ``log``: ``checkpoint X of RUN failed to load
    (reason); resuming from Y``. When none loads, :class:`CheckpointLoadError` names them all.

    Every caller that must agree on the checkpoint (the workers of a run, the driver planning their
    data) gets the same answer from the same ``load`` on the same files. Called by the workers of a
    process group, all of them must call it; they then check that they restored the same checkpoint.
    """
    if checkpoint is None:
        return None
    failures: list[tuple[str, str]] = []
    for candidate in _candidates(checkpoint):
        try:
            with checkpoint_files(candidate) as directory:
                value = load(directory)
        except Exception as exc:  # whatever a broken checkpoint raises: try the next older one
            failures.append((checkpoint_name(candidate), _reason(exc)))
            continue
        name, run_dir = checkpoint_name(candidate), _run_dir(checkpoint)
        for skipped, reason in failures:
            log(f"checkpoint {skipped} of {run_dir} failed to load ({reason}); resuming from {name}")
        _check_workers_agree(name)
        return Restored(value, candidate, name, tuple(skipped for skipped, _ in failures))
    raise CheckpointLoadError(
        f"no checkpoint of {_run_dir(checkpoint)} loads: "
        + "; ".join(f"{skipped} ({reason})" for skipped, reason in failures)
    )


def unused_checkpoint_name(name: str, taken: Iterable[str]) -> str:
    """``name``, or ``name_1``, ``name_2``, ... if it is in ``taken``: a checkpoint written again at
    a step whose checkpoint failed to load gets a directory of its own, sorting after the old one.

    Ray Train still holds the old checkpoint and deletes it when it falls out of ``num_to_keep``;
    writing the new one into the same directory would delete the new files with it.
    """
    taken = set(taken)
    candidate, n = name, 0
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def load_torch_state(path: str | Path) -> Any:
    """``torch.load`` of a training state file with ``weights_only=True`` (tensors and plain data only:
    a pickle that would build other objects or run code is refused with ``ValueError``), on the CPU."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if "WeightsUnpickler error" in line]
        detail = lines[0] if lines else _reason(exc)
        raise ValueError(
            f"{Path(path).name} holds more than tensors and plain data, refused ({detail})"
        ) from exc
