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


@dataclass(frozen=True)
class IngestConfig:
    """``biobert-ray ingest``: MEDLINE/PubMed XML files to a Parquet ``articles`` table."""

    input: tuple[str, ...] = required("input files: paths, globs or directories, local or s3://")
    out: str = required("output directory of the articles table (local or s3://)")
    overwrite: bool = option(False, "redo shards whose output is already complete")
    address: str | None = option(None, "Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    cpus_per_task: float = option(1.0, "CPUs reserved by each file-parsing task")
    rows_per_group: int = option(2000, "Parquet row-group size of the output files")


def _base_type(tp: Any) -> Any:
    """``int`` for ``int | None``; the element type for ``tuple[str, ...]``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    return tp


def add_arguments(parser: argparse.ArgumentParser, config_cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--option`` per field of ``config_cls`` (except ``skip``) and a ``--config`` YAML option."""
    hints = typing.get_type_hints(config_cls)
    parser.add_argument("--config", help="YAML file of option values (command-line values win)")
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
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
        parser.add_argument(flag, **kwargs)


def from_args(config_cls: type[C], args: argparse.Namespace, **overrides: Any) -> C:
    """Build ``config_cls`` from parsed arguments, a ``--config`` YAML file and explicit overrides."""
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        with open(args.config) as f:
            values.update(yaml.safe_load(f) or {})
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"{args.config}: unknown options {sorted(unknown)}")
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


def to_dict(config: Any) -> dict[str, Any]:
    """A config as a JSON-ready dict (tuples become lists)."""
    return dataclasses.asdict(config)
