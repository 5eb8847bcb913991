"""Every path is a URI through fsspec: local paths, ``s3://``, ``gs://``, ``memory://``.

S3 uses boto's usual credential chain: on a laptop the environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``) or ``~/.aws`` files (``AWS_PROFILE``); on cluster
nodes their EC2 instance profile. The region comes from ``AWS_DEFAULT_REGION``/``AWS_REGION``, and
S3-compatible stores such as MinIO are reached through ``AWS_ENDPOINT_URL``. Only those non-secret
settings (:data:`STORAGE_ENV_VARS`) are ever forwarded to a cluster's workers; credentials never are.

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

#: Non-secret storage settings a Ray worker needs to reach the same store as the driver (region and
#: endpoint); safe to forward to a cluster. Credentials (access keys, session tokens) and
#: ``AWS_PROFILE`` are deliberately absent: a runtime_env is kept by the cluster's GCS and shown by
#: its dashboard and state API, and keys would override the nodes' instance profile.
STORAGE_ENV_VARS = (
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
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


def absolute(uri: str) -> str:
    """``uri`` with a local path made absolute (Ray workers do not share the driver's working
    directory); ``scheme://`` URIs unchanged."""
    return uri if "://" in uri else os.path.abspath(uri)


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


def file_identity(uri: str) -> dict[str, Any]:
    """What identifies the file at ``uri`` without reading it: its name, size and version.

    The version is the object's ETag on an object store, else its modification time, so a file
    rewritten in place (even at the same size) gets a new identity.
    """
    fs, path = filesystem(uri)
    info = fs.info(path)
    version = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
    return {"file": basename(uri), "size": int(info["size"]), "version": str(version)}


def size(uri: str) -> int | None:
    """The size in bytes of the file at ``uri``, or None if there is none."""
    fs, path = filesystem(uri)
    try:
        return int(fs.info(path)["size"])
    except FileNotFoundError:
        return None


def remove_temporaries(directory: str) -> int:
    """Delete the temporary files that a killed writer left in ``directory`` (local only); returns how many.

    Call only while holding the directory's lease: another writer's temporary files look the same.
    """
    fs, path = filesystem(directory)
    if not is_local(fs) or not fs.isdir(path):
        return 0
    stale = [p for p in fs.ls(path, detail=False) if ".tmp-" in p.rsplit("/", 1)[-1] and fs.isfile(p)]
    for p in stale:
        fs.rm(p)
    return len(stale)


def remove(uri: str) -> None:
    """Delete the file at ``uri`` if there is one (a directory there is left alone)."""
    fs, path = filesystem(uri)
    if fs.isfile(path):
        fs.rm(path)


def remove_tree(uri: str) -> None:
    """Delete the directory ``uri`` and everything below it, if it exists."""
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


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
        f.close()  # completes the upload: a failure here publishes nothing either
    except BaseException:
        with contextlib.suppress(Exception):
            f.discard()  # aborts a multipart upload; nothing is published
            f.closed = True  # so that closing it later does not try to upload the discarded buffer
        raise


@contextlib.contextmanager
def open_parquet(uri: str) -> Iterator[pq.ParquetFile]:
    """A Parquet file at any fsspec URI, open for reading (metadata, row groups, batches) until exit."""
    fs, path = filesystem(uri)
    with fs.open(path, "rb") as f:
        yield pq.ParquetFile(f)


def write_parquet(table: pa.Table, uri: str, schema: pa.Schema) -> None:
    """Write ``table`` cast to ``schema`` as one Parquet file at ``uri``, atomically."""
    with atomic_open(uri) as f:
        pq.write_table(table.cast(schema), f, compression="zstd")


class ParquetSink:
    """Streams rows into one Parquet file with a fixed schema, in row groups, atomically.

    ``add(row)`` buffers a dict; every ``rows_per_group`` rows become a row group, so memory stays
    bounded however many rows a shard holds. The file appears at ``uri`` when the ``with`` block ends
    without an exception and its last row group and footer are written; if anything fails (the body,
    a flush, the close), the temporary file or upload is discarded and nothing appears.
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

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self._flush()
            self._writer.close()
        except BaseException as error:  # a row its schema cannot hold, a full disk, a failed upload
            with contextlib.suppress(Exception):
                self._writer.close()  # a writer left open would write to the discarded file later
            self._file_cm.__exit__(type(error), error, error.__traceback__)
            raise
        return bool(self._file_cm.__exit__(exc_type, exc, tb))


def write_json(obj: Any, uri: str) -> None:
    """Write ``obj`` as indented JSON at ``uri``, atomically."""
    with atomic_open(uri) as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def read_json(uri: str) -> Any:
    """Read the JSON document at ``uri``."""
    fs, path = filesystem(uri)
    with fs.open(path, "rb") as f:
        return json.loads(f.read())
