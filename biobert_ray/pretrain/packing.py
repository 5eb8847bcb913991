"""Packing: documents become full sequences of exactly ``seq_len`` token ids, with no padding.

Per shard (one Parquet file of the corpus), the documents are tokenized in file order without
special tokens and laid end to end as one token stream, each followed by ``[SEP]``::

    doc1 [SEP] doc2 [SEP] doc3 [SEP] ...

The stream is cut into pieces of ``seq_len - 1`` tokens and each piece is prefixed with ``[CLS]``, so
a sequence reads ``[CLS] ...end of doc1 [SEP] doc2 [SEP] start of doc3``. A document longer than a
sequence continues in the next one (the tail of one sequence carries over to the next); within a
shard no token is lost or repeated. The final remainder of a shard (fewer than ``seq_len - 1``
tokens) is dropped: at most ``seq_len - 2`` tokens per shard per epoch.

**Attention crosses document boundaries** inside a sequence, as in the original BERT and RoBERTa
(``[SEP]`` marks the boundary; position ids run 0..seq_len-1 over the whole sequence and token
types are all 0). There is no next-sentence objective.

Every packed sequence has a stable identity ``(shard, index)``: the shard's number in the run's
sorted shard list and the sequence's position in that shard's stream. Packing depends only on the
file's content and the tokenizer, not on how Ray splits work into blocks, which is what lets a
resumed run skip exactly the sequences it already trained on (:mod:`biobert_ray.position`).

One Ray Data task packs one shard, streaming it ``READ_ROWS`` rows at a time, and emits blocks of
``SEQUENCES_PER_BLOCK`` sequences with the columns ``input_ids`` (int32, ``seq_len``), ``shard``
(int32), ``index`` (int64) and ``last`` (bool: the shard's final sequence).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import ray
import tokenizers

from biobert_ray import models
from biobert_ray.pretrain import corpus

SEQUENCES_PER_BLOCK = 256
#: CPUs reserved by each packing task (fractional, so packing never starves 2-core machines).
PACK_TASK_CPUS = 0.5


class Packer:
    """Lays documents end to end and cuts full ``[CLS]``-prefixed sequences, carrying the tail over.

    ``add(docs)`` takes token-id lists (no special tokens) and returns the complete sequences they
    finish as an ``(n, seq_len)`` int32 array; tokens that do not fill a sequence stay in
    ``carry`` for the next call.
    """

    def __init__(self, seq_len: int, cls_id: int, sep_id: int) -> None:
        if seq_len < 2:
            raise ValueError(f"seq_len must be at least 2, not {seq_len}")
        self.seq_len, self.cls_id, self.sep_id = seq_len, cls_id, sep_id
        self.carry = np.empty(0, dtype=np.int32)

    def add(self, docs: Iterable[Sequence[int]]) -> np.ndarray:
        pieces = [self.carry]
        for doc in docs:
            pieces.append(np.asarray(doc, dtype=np.int32))
            pieces.append(np.array([self.sep_id], dtype=np.int32))
        stream = np.concatenate(pieces)
        body = self.seq_len - 1
        n = len(stream) // body
        out = np.empty((n, self.seq_len), dtype=np.int32)
        out[:, 0] = self.cls_id
        out[:, 1:] = stream[: n * body].reshape(n, body)
        self.carry = stream[n * body :]
        return out


@functools.lru_cache(maxsize=4)
def encoder(model_ref: str) -> tuple[tokenizers.Tokenizer, int, int]:
    """The model's fast tokenizer without padding or truncation, its ``[CLS]`` and ``[SEP]`` ids.

    Loaded once per process (Ray reuses worker processes, so once per worker).
    """
    tokenizer = models.load_tokenizer(model_ref)
    backend = tokenizers.Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    return backend, tokenizer.cls_token_id, tokenizer.sep_token_id


def pack_shard(
    shard: int,
    uri: str,
    *,
    model_ref: str,
    text_columns: Sequence[str],
    seq_len: int,
    heldout: np.ndarray,
    select: str = "train",
    skip: Sequence[Sequence[int]] = (),
) -> Iterator[dict[str, np.ndarray]]:
    """Pack one shard; yield blocks of rows (``input_ids``, ``shard``, ``index``, ``last``).

    ``select`` and ``heldout`` choose the documents (:func:`biobert_ray.corpus.iter_documents`).
    Sequences whose index falls in one of the half-open ``skip`` intervals ``[start, end)`` are
    packed (the stream must be rebuilt to know what follows them) but not emitted. The final
    sequence is held back until the shard ends, so that its ``last`` flag can be set.
    """
    tokenizer, cls_id, sep_id = encoder(model_ref)
    packer = Packer(seq_len, cls_id, sep_id)
    pending = np.empty((0, seq_len), dtype=np.int32)
    first = 0  # index of pending[0]
    for texts in corpus.iter_documents(uri, text_columns, heldout, select):
        encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
        pending = np.concatenate([pending, packer.add(e.ids for e in encodings)])
        while len(pending) > SEQUENCES_PER_BLOCK:
            block = _rows(shard, first, pending[:SEQUENCES_PER_BLOCK], skip, last=False)
            if block is not None:
                yield block
            pending, first = pending[SEQUENCES_PER_BLOCK:], first + SEQUENCES_PER_BLOCK
    block = _rows(shard, first, pending, skip, last=True)
    if block is not None:
        yield block


def _rows(
    shard: int, first: int, sequences: np.ndarray, skip: Sequence[Sequence[int]], last: bool
) -> dict[str, np.ndarray] | None:
    """The rows of ``sequences`` (indices from ``first``) outside ``skip``; None if none is left."""
    index = np.arange(first, first + len(sequences), dtype=np.int64)
    is_last = np.zeros(len(sequences), dtype=bool)
    if last and len(sequences):
        is_last[-1] = True
    keep = np.ones(len(sequences), dtype=bool)
    for start, end in skip:
        keep &= (index < start) | (index >= end)
    if not keep.any():
        return None
    return {
        "input_ids": sequences[keep],
        "shard": np.full(int(keep.sum()), shard, dtype=np.int32),
        "index": index[keep],
        "last": is_last[keep],
    }


def _pack_items(batch: dict[str, np.ndarray], skip: dict[int, list[list[int]]], **kwargs) -> Iterator[dict]:
    for shard, uri in zip(batch["shard"], batch["uri"], strict=True):
        yield from pack_shard(int(shard), str(uri), skip=skip.get(int(shard), ()), **kwargs)


def packed_dataset(
    shards: Sequence[tuple[int, str]],
    *,
    model_ref: str,
    text_columns: Sequence[str],
    seq_len: int,
    heldout: np.ndarray,
    select: str = "train",
    skip: dict[int, list[list[int]]] | None = None,
) -> ray.data.Dataset:
    """A lazy Ray Dataset of the packed sequences of ``shards`` (``(shard number, uri)`` pairs).

    One packing task per shard (``PACK_TASK_CPUS`` CPUs each), in the given order; ``skip`` maps a
    shard number to the index intervals not to emit (the sequences a resumed run already consumed).
    """
    items = [{"shard": shard, "uri": uri} for shard, uri in shards]
    return ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(
        _pack_items,
        batch_size=1,
        num_cpus=PACK_TASK_CPUS,
        fn_kwargs={
            "skip": skip or {},
            "model_ref": model_ref,
            "text_columns": tuple(text_columns),
            "seq_len": seq_len,
            "heldout": heldout,
            "select": select,
        },
    )
