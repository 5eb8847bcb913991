"""Run bookkeeping: run ids, per-shard completion markers that say what produced a shard, ``_run.json``.

An output directory holds one file per input shard (named after the shard) plus ``_done/<shard>.json``
markers. A marker is written last, after every file of its shard, and records:

- ``identity``: what produced the shard, as three parts compared separately: ``input`` (the input
  file's or input shard's identity), ``models`` (each model's reference and content fingerprint) and
  ``options`` (every option that changes the rows);
- ``outputs``: every file the shard wrote, with its size;
- ``capped``: true when a ``--max-articles``-style cap left part of the input out.

A rerun compares (:func:`check_shard`): a shard is skipped only when its marker exists, is not capped,
every output file has the recorded size and the identity is the rerun's; otherwise the rerun redoes it
and says why (``input changed``, ``model changed``, ``options changed``, ``was capped``, ``output
changed``). Redone files overwrite the old ones under the same deterministic names, so no row is ever
written twice. Readers of a table take only shards whose marker matches their file
(:func:`complete_shards`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import platform
import re
import uuid
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from biobert_ray import storage

_SHARD_SUFFIXES = (".xml.gz", ".xml", ".nxml", ".parquet", ".gz")
_VERSIONED_PACKAGES = ("biobert-ray", "ray", "torch", "transformers", "pyarrow", "polars", "lxml", "fsspec")


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a random suffix."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def shard_name(uri: str) -> str:
    """The shard's name: the input file's base name without its data suffix."""
    name = storage.basename(uri)
    for suffix in _SHARD_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def nlm_order(name: str) -> tuple:
    """Sort key that orders files the way NLM numbers them (natural order of the digit runs).

    ``pubmed25n0001`` < ``pubmed25n0002`` < ... < ``pubmed25n1274`` < ``pubmed25n1275`` (the first
    update file); a later year's baseline sorts after an earlier year's files.
    """
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", storage.basename(name)))


def check_unique_names(uris: Sequence[str]) -> None:
    """Refuse inputs whose shard names collide: their outputs would overwrite each other."""
    seen: dict[str, str] = {}
    for uri in uris:
        name = shard_name(uri)
        if name in seen:
            raise ValueError(f"two inputs map to the same output shard {name!r}: {seen[name]} and {uri}")
        seen[name] = uri


def marker_uri(out: str, name: str) -> str:
    """Where the completion marker of shard ``name`` lives."""
    return storage.join(out, "_done", f"{name}.json")


def canonical(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists), so identities compare equal."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def digest(obj: Any) -> str:
    """A short, stable hash of a JSON-like value (a marker, an identity)."""
    text = json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _relative(out: str, uri: str) -> str:
    """``uri`` as a path inside directory ``out`` (markers survive moving or re-mounting a table)."""
    _, root = storage.filesystem(out)
    _, path = storage.filesystem(uri)
    return path[len(root.rstrip("/")) + 1 :] if path.startswith(root.rstrip("/") + "/") else path


def _changed_outputs(out: str, marker: dict[str, Any]) -> list[str]:
    """Output files (paths inside ``out``) of a marker that are missing or no longer have their size."""
    outputs = marker.get("outputs", {})
    return [rel for rel, size in outputs.items() if storage.size(storage.join(out, rel)) != size]


def _difference(old: Any, new: Any) -> str:
    """Which keys of two option dicts differ, for a human (``stride 32 -> 64``)."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return ""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k} {old.get(k)} -> {new.get(k)}" for k in keys)


def check_shard(out: str, name: str, identity: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """``(marker, "")`` if shard ``name`` is complete with ``identity``, else ``(None, why it must be done)``.

    ``why`` is ``new`` (no marker), ``was capped``, ``output changed (...)``, ``input changed``,
    ``model changed (...)`` or ``options changed (...)``.
    """
    uri = marker_uri(out, name)
    if not storage.exists(uri):
        return None, "new"
    marker = storage.read_json(uri)
    if marker.get("capped"):
        return None, "was capped"
    if changed := _changed_outputs(out, marker):
        return None, f"output changed ({', '.join(changed)})"
    old, new = marker.get("identity", {}), canonical(identity)
    if old.get("input") != new.get("input"):
        return None, "input changed"
    if old.get("models") != new.get("models"):
        before = {m["ref"]: m["fingerprint"] for m in old.get("models", [])}
        now = {m["ref"]: m["fingerprint"] for m in new.get("models", [])}
        names = sorted(ref for ref in set(before) | set(now) if before.get(ref) != now.get(ref))
        return None, f"model changed ({', '.join(names)})"
    if old.get("options") != new.get("options"):
        return None, f"options changed ({_difference(old.get('options'), new.get('options'))})"
    return marker, ""


def mark_complete(
    out: str,
    name: str,
    identity: dict[str, Any],
    outputs: Sequence[str],
    /,
    capped: bool = False,
    **summary: Any,
) -> dict[str, Any]:
    """Write shard ``name``'s marker after every file in ``outputs`` is written; returns the marker."""
    marker = {
        **summary,
        "name": name,
        "identity": canonical(identity),
        "outputs": {_relative(out, uri): storage.size(uri) for uri in outputs},
        "capped": capped,
        "completed_at": utc_now(),
    }
    storage.write_json(marker, marker_uri(out, name))
    return marker


def clear_marker(out: str, name: str) -> None:
    """Forget that shard ``name`` was complete (before it is redone)."""
    storage.remove(marker_uri(out, name))


def complete_shards(table: str) -> tuple[list[str], list[dict[str, str]]]:
    """The ``*.parquet`` shards of ``table`` that are complete, and the others with the reason.

    Complete means the shard's marker exists and every file it lists has the recorded size, so a file
    left by a failed or interrupted run, or replaced after its marker was written, is not read.
    Returns ``(complete URIs, [{"shard": URI, "reason": ...}])``, both sorted.
    """
    complete, incomplete = [], []
    for uri in storage.list_files(table, ".parquet"):
        marker_file = marker_uri(table, shard_name(uri))
        if not storage.exists(marker_file):
            incomplete.append({"shard": uri, "reason": "no completion marker (unfinished or failed run)"})
            continue
        marker = storage.read_json(marker_file)
        if storage.basename(uri) not in marker.get("outputs", {}):
            incomplete.append({"shard": uri, "reason": "its marker does not list it"})
        elif changed := _changed_outputs(table, marker):
            names = ", ".join(changed)
            incomplete.append({"shard": uri, "reason": f"changed since its marker was written ({names})"})
        else:
            complete.append(uri)
    return complete, incomplete


def remove_temporaries(out: str) -> int:
    """Delete temporary files killed writers left in ``out`` and its folders (two levels deep).

    Call only while holding the output's lease (:mod:`biobert_ray.lease`).
    """
    fs, root = storage.filesystem(out)
    if not storage.is_local(fs) or not fs.isdir(root):
        return 0
    folders = [root, *(p for p in fs.ls(root, detail=False) if fs.isdir(p))]
    folders += [p for folder in folders[1:] for p in fs.ls(folder, detail=False) if fs.isdir(p)]
    return sum(storage.remove_temporaries(folder) for folder in folders)


def read_marker(table: str, uri: str) -> dict[str, Any]:
    """The completion marker of the shard whose file is ``uri`` in ``table``."""
    return storage.read_json(marker_uri(table, shard_name(uri)))


def versions() -> dict[str, str]:
    """Versions of Python and of the packages that shape the output."""
    found = {"python": platform.python_version()}
    for package in _VERSIONED_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def utc_now() -> str:
    """The current UTC time in ISO 8601."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_summary(
    out: str,
    command: str,
    config: Any,
    started_at: str,
    wall_seconds: float,
    counts: dict[str, int],
    rate: tuple[str, float],
    shards: list[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    """Build a run's summary and save it as ``<out>/_run.json``; returns it.

    ``rate`` is ``(name, amount)``: e.g. ``("records_per_second", records)`` gives
    ``records / wall_seconds``. Shards are listed in NLM order, without their output file lists.
    """
    name, amount = rate
    summary = {
        "command": command,
        "run_id": extra.pop("run_id", None) or new_run_id(),
        "started_at": started_at,
        "config": dataclasses.asdict(config),
        "versions": versions(),
        "counts": counts,
        **extra,
        "wall_seconds": round(wall_seconds, 3),
        name: round(amount / wall_seconds, 2) if wall_seconds > 0 else None,
        "shards": sorted(
            ({k: v for k, v in s.items() if k != "outputs"} for s in shards),
            key=lambda s: nlm_order(s["name"]),
        ),
    }
    storage.write_json(summary, storage.join(out, "_run.json"))
    return summary
