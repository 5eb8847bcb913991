"""The pretraining corpus: an ``articles`` table read file by file, never whole, and its held-out set.

A corpus is a table directory written by ``biobert-ray ingest`` (local or ``s3://``): its shards are
the complete ``*.parquet`` files directly inside it, those whose ingest marker matches the file
(side tables in ``_``-prefixed folders are not shards; see :func:`biobert_ray.runs.complete_shards`). A
*document* is one row: its text columns (``title`` and ``abstract`` by default) joined by a newline;
rows whose text columns are all null or empty are not documents.

The held-out evaluation set is the ``k`` PMIDs with the smallest :func:`pmid_hash`: deterministic,
independent of file order, seed and worker count, so evaluation sets of different runs on one corpus
are the same documents. Every row of a held-out PMID (all its versions) is excluded from training.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow.parquet as pq
import ray

from biobert_ray import runs, storage

#: Rows read from a shard at a time: memory per reader is bounded by this, not by the file.
READ_ROWS = 1024


def shard_files(table: str, text_columns: Sequence[str] = ()) -> list[str]:
    """The complete Parquet shards of ``table``, sorted (:func:`shards` without the incomplete ones)."""
    return shards(table, text_columns)[0]


def shards(table: str, text_columns: Sequence[str] = ()) -> tuple[list[str], list[dict[str, str]]]:
    """The complete Parquet shards of ``table``, sorted, and the incomplete ones with the reason.

    ``FileNotFoundError`` if none is complete; ``ValueError`` if the first lacks ``pmid`` or a text column.
    """
    files, incomplete = runs.complete_shards(table)
    if not files:
        raise FileNotFoundError(
            f"{table}: no complete *.parquet shards (is it an articles table written by ingest?)"
        )
    with storage.open_parquet(files[0]) as parquet:
        _check_columns(parquet, files[0], ["pmid", *text_columns])
    return files, incomplete


def _check_columns(parquet: pq.ParquetFile, uri: str, columns: Sequence[str]) -> None:
    missing = set(columns) - set(parquet.schema_arrow.names)
    if missing:
        raise ValueError(f"{uri}: no column(s) {sorted(missing)}; it has {parquet.schema_arrow.names}")


def pmid_hash(pmids: np.ndarray) -> np.ndarray:
    """A stable 64-bit hash of each PMID (SplitMix64's finaliser), for deterministic held-out sets."""
    z = pmids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def iter_documents(
    uri: str, text_columns: Sequence[str], heldout: np.ndarray, select: str
) -> Iterator[list[str]]:
    """Stream the documents of one shard in file order, ``READ_ROWS`` rows at a time.

    ``select="train"`` yields the documents whose PMID is not in ``heldout``; ``select="heldout"``
    only those whose PMID is. Only ``pmid`` and ``text_columns`` are read. Yields lists of texts.
    """
    if select not in ("train", "heldout"):
        raise ValueError(f"select must be 'train' or 'heldout', not {select!r}")
    with storage.open_parquet(uri) as parquet:
        _check_columns(parquet, uri, ["pmid", *text_columns])
        for batch in parquet.iter_batches(batch_size=READ_ROWS, columns=["pmid", *text_columns]):
            in_heldout = np.isin(batch.column("pmid").to_numpy(), heldout)
            keep = in_heldout if select == "heldout" else ~in_heldout
            columns = [batch.column(name).to_pylist() for name in text_columns]
            texts = []
            for i in np.flatnonzero(keep):
                text = "\n".join(value for column in columns if (value := column[i]))
                if text.strip():
                    texts.append(text)
            if texts:
                yield texts


def _smallest_hashes(batch: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """For each shard in ``batch``: its ``k`` PMIDs with the smallest hash and its row count."""
    pmids, hashes, uris, rows = [], [], [], []
    for uri in batch["uri"]:
        with storage.open_parquet(uri) as parquet:
            table_pmids = np.unique(parquet.read(columns=["pmid"]).column("pmid").to_numpy())
            file_rows = parquet.metadata.num_rows
        table_hashes = pmid_hash(table_pmids)
        order = np.argsort(table_hashes)[:k]
        pmids.append(table_pmids[order])
        hashes.append(table_hashes[order])
        uris.extend([uri] * len(order))
        rows.extend([file_rows] * len(order))
    return {
        "pmid": np.concatenate(pmids),
        "hash": np.concatenate(hashes),
        "uri": np.array(uris, dtype=object),
        "file_rows": np.array(rows, dtype=np.int64),
    }


def heldout_set(files: Sequence[str], k: int) -> tuple[np.ndarray, list[str]]:
    """The ``k`` held-out PMIDs of the corpus (sorted) and the shards that hold them.

    One Ray task per shard reads only its ``pmid`` column and returns its ``k`` smallest hashes; the
    driver keeps the ``k`` smallest overall. Raises ``ValueError`` if nothing would be left to train on.
    """
    if k <= 0:
        return np.empty(0, dtype=np.int64), []
    rows = (
        ray.data.from_items([{"uri": uri} for uri in files], override_num_blocks=len(files))
        .map_batches(_smallest_hashes, fn_kwargs={"k": k}, batch_size=1, num_cpus=0.25)
        .take_all()
    )
    per_shard = {row["uri"]: row["file_rows"] for row in rows}
    if sum(per_shard.values()) <= k:
        raise ValueError(
            f"eval_documents={k} would hold out the whole corpus ({sum(per_shard.values())} rows)"
        )
    by_pmid: dict[int, tuple[int, set[str]]] = {}
    for row in rows:
        _, shards = by_pmid.setdefault(int(row["pmid"]), (int(row["hash"]), set()))
        shards.add(row["uri"])
    chosen = sorted(by_pmid.items(), key=lambda item: item[1][0])[:k]
    pmids = np.array(sorted(pmid for pmid, _ in chosen), dtype=np.int64)
    return pmids, sorted(set().union(*(shards for _, (_, shards) in chosen)))
