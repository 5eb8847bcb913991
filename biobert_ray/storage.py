"""Every path is a URI through fsspec: local paths, ``s3://``, ``gs://``, ``memory://``.

S3 uses the usual AWS environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``) and, for S3-compatible stores such as MinIO, ``AWS_ENDPOINT_URL``.

Writes are atomic per file: a local file is written under a temporary name and renamed; an object
store upload only becomes visible when it completes, and is discarded if the writer fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

#: Environment variables a Ray worker needs to reach the same storage as the driver.
STORAGE_ENV_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
)


def storage_options(uri: str) -> dict[str, Any]:
    """fsspec options for ``uri``: for ``s3://``, no listing cache (other processes write there)."""
    if uri.startswith(("s3://", "s3a://")):
        return {"use_listings_cache": False}
    return {}


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem that holds ``uri`` and the path of ``uri`` inside it."""
    return url_to_fs(uri, **storage_options(uri))


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for the local disk, where atomic writes need a rename."""
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def to_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A path inside ``fs`` back as a URI (a plain absolute path for local files)."""
    return path if is_local(fs) else fs.unstrip_protocol(path)


def join(base: str, *parts: str) -> str:
    """Join URI parts with ``/`` (works for local paths and object-store URIs alike)."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def basename(uri: str) -> str:
    """The last component of a URI."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def expand(patterns: Sequence[str], suffixes: Sequence[str] = ()) -> list[str]:
    """Expand globs and directories into a sorted list of file URIs.

    A directory expands to the files directly inside it whose names end with one of ``suffixes``
    (all files when ``suffixes`` is empty). A pattern that matches nothing raises
    ``FileNotFoundError`` naming it, so a typo never turns into an empty run.
    """
    found: set[str] = set()
    for pattern in patterns:
        fs, path = filesystem(pattern)
        if fs.isdir(path):
            candidates = [p for p in fs.ls(path, detail=False) if fs.isfile(p)]
        elif any(ch in path for ch in "*?["):
            candidates = [p for p in fs.glob(path) if fs.isfile(p)]
        elif fs.isfile(path):
            candidates = [path]
        else:
            raise FileNotFoundError(f"no such file or directory: {pattern}")
        if suffixes:
            candidates = [p for p in candidates if p.endswith(tuple(suffixes))]
        if not candidates:
            raise FileNotFoundError(f"{pattern} matches no input files")
        found.update(to_uri(fs, p) for p in candidates)
    return sorted(found)


def exists(uri: str) -> bool:
    """Whether a file or directory exists at ``uri``."""
    fs, path = filesystem(uri)
    return fs.exists(path)


def list_files(uri: str, suffix: str = "") -> list[str]:
    """Files directly inside directory ``uri`` whose names end with ``suffix``; [] if it is absent."""
    fs, path = filesystem(uri)
    if not fs.isdir(path):
        return []
    return sorted(to_uri(fs, p) for p in fs.ls(path, detail=False) if p.endswith(suffix) and fs.isfile(p))


def remove(uri: str) -> None:
    """Delete the file at ``uri`` if it exists."""
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path)


def open_input(uri: str) -> BinaryIO:
    """Open ``uri`` for binary reading, transparently decompressing ``.gz``/``.bz2``/``.xz``."""
    return fsspec.open(uri, "rb", compression="infer", **storage_options(uri)).open()


@contextlib.contextmanager
def atomic_open(uri: str) -> Iterator[BinaryIO]:
    """Open ``uri`` for binary writing so that readers see the whole file or nothing.

    Local files are written under a temporary name beside the target and renamed on success; on an
    object store the upload is committed on success and discarded on failure.
    """
    fs, path = filesystem(uri)
    parent = path.rsplit("/", 1)[0]
    if is_local(fs):
        fs.makedirs(parent, exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as f:
                yield f
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    f = fs.open(path, "wb")
    try:
        yield f
    except BaseException:
        if hasattr(f, "discard"):
            f.discard()
        raise
    f.close()


def write_parquet(table: pa.Table, uri: str, schema: pa.Schema) -> None:
    """Write ``table`` cast to ``schema`` as one Parquet file at ``uri``, atomically."""
    with atomic_open(uri) as f:
        pq.write_table(table.cast(schema), f, compression="zstd")


class ParquetSink:
    """Streams rows into one Parquet file with a fixed schema, in row groups, atomically.

    ``add(row)`` buffers a dict; every ``rows_per_group`` rows become a row group, so memory stays
    bounded however many rows a shard holds. The file appears at ``uri`` when the ``with`` block ends
    without an exception, and never otherwise.
    """

    def __init__(self, uri: str, schema: pa.Schema, rows_per_group: int = 2000) -> None:
        self.uri, self.schema, self.rows_per_group = uri, schema, rows_per_group
        self.rows: list[dict[str, Any]] = []
        self.count = 0

    def __enter__(self) -> ParquetSink:
        self._file_cm = atomic_open(self.uri)
        self._writer = pq.ParquetWriter(self._file_cm.__enter__(), self.schema, compression="zstd")
        return self

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.count += 1
        if len(self.rows) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            self._writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._flush()
            self._writer.close()
        finally:
            self._file_cm.__exit__(exc_type, exc, tb)


def write_json(obj: Any, uri: str) -> None:
    """Write ``obj`` as indented JSON at ``uri``, atomically."""
    with atomic_open(uri) as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def read_json(uri: str) -> Any:
    """Read the JSON document at ``uri``."""
    fs, path = filesystem(uri)
    with fs.open(path, "rb") as f:
        return json.loads(f.read())
