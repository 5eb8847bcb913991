"""Run bookkeeping: run ids, per-shard completion markers and the ``_run.json`` summary.

An output directory holds one file per input shard (named after the shard) plus ``_done/<shard>.json``
markers. A marker is written last, after every file of its shard, and lists those files; a shard is
complete when its marker and every file it lists exist. A rerun skips complete shards and redoes the
rest, overwriting their files under the same deterministic names, so no row is ever written twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
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


def read_complete(out: str, name: str) -> dict[str, Any] | None:
    """The marker of shard ``name`` if the shard is complete (marker and all its files exist), else None."""
    uri = marker_uri(out, name)
    if not storage.exists(uri):
        return None
    marker = storage.read_json(uri)
    if all(storage.exists(f) for f in marker.get("outputs", [])):
        return marker
    return None


def mark_complete(out: str, name: str, summary: dict[str, Any]) -> None:
    """Write shard ``name``'s marker; ``summary['outputs']`` must list every file the shard wrote."""
    storage.write_json(summary, marker_uri(out, name))


def clear_marker(out: str, name: str) -> None:
    """Forget that shard ``name`` was complete (before it is redone)."""
    storage.remove(marker_uri(out, name))


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
