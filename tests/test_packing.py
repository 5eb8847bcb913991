"""Packing: full sequences of exactly seq_len tokens, every input token once, separators in place."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from biobert_ray.pretrain import corpus, packing

CLS, SEP = 101, 102
NONE = np.empty(0, dtype=np.int64)


def stream(docs: list[list[int]], sep: int = SEP) -> list[int]:
    """What packing must lay out: each document followed by [SEP]."""
    return [token for doc in docs for token in [*doc, sep]]


def unpack(sequences: np.ndarray, cls: int = CLS) -> list[int]:
    """The token stream inside packed sequences, checking that each starts with [CLS]."""
    assert (sequences[:, 0] == cls).all()
    return sequences[:, 1:].reshape(-1).tolist()


def test_packer_emits_full_sequences_and_carries_the_tail_over():
    rng = np.random.default_rng(0)
    docs = [rng.integers(1000, 2000, size=n).tolist() for n in (3, 0, 17, 40, 1, 9, 33, 2)]
    packer = packing.Packer(seq_len=8, cls_id=CLS, sep_id=SEP)
    out = np.concatenate([packer.add(docs[:3]), packer.add(docs[3:5]), packer.add(docs[5:])])
    assert out.shape[1] == 8 and out.dtype == np.int32
    expected = stream(docs)
    body = len(out) * 7
    assert len(expected) - body == len(packer.carry) < 7  # only the final remainder is left over
    assert unpack(out) + packer.carry.tolist() == expected  # nothing lost, nothing repeated, same order
    # every document ends in a [SEP] exactly where its tokens end
    ends = np.cumsum([len(d) + 1 for d in docs]) - 1
    flat = unpack(out) + packer.carry.tolist()
    assert [i for i, t in enumerate(flat) if t == SEP] == ends.tolist()


def write_articles(path, rows: list[tuple[int, str | None, str | None]]) -> str:
    table = pa.table(
        {"pmid": [r[0] for r in rows], "title": [r[1] for r in rows], "abstract": [r[2] for r in rows]},
        schema=pa.schema([("pmid", pa.int64()), ("title", pa.string()), ("abstract", pa.string())]),
    )
    pq.write_table(table, path, row_group_size=3)
    return str(path)


@pytest.fixture
def shard(tmp_path, tiny_bert) -> str:
    from tiny_bert import corpus_lines

    lines = corpus_lines()
    rows = [(1000 + i, lines[2 * i], lines[2 * i + 1] if i % 4 else None) for i in range(200)]
    rows.append((5000, None, ""))  # no text: not a document
    return write_articles(tmp_path / "part.parquet", rows)


def reference(uri: str, tiny_bert: str, heldout: np.ndarray, select: str) -> list[int]:
    """The shard's documents tokenized one by one, each followed by [SEP]."""
    tokenizer, _, sep = packing.encoder(tiny_bert)
    docs = [
        tokenizer.encode(text, add_special_tokens=False).ids
        for texts in corpus.iter_documents(uri, ("title", "abstract"), heldout, select)
        for text in texts
    ]
    return stream(docs, sep)


def test_pack_shard_keeps_every_token_of_the_shard(shard, tiny_bert):
    kwargs = {"model_ref": tiny_bert, "text_columns": ("title", "abstract"), "seq_len": 16, "heldout": NONE}
    blocks = list(packing.pack_shard(7, shard, **kwargs))
    ids = np.concatenate([b["input_ids"] for b in blocks])
    index = np.concatenate([b["index"] for b in blocks])
    last = np.concatenate([b["last"] for b in blocks])
    assert ids.shape[1] == 16 and all((b["shard"] == 7).all() for b in blocks)
    assert index.tolist() == list(range(len(ids))) and last.tolist() == [False] * (len(ids) - 1) + [True]
    expected = reference(shard, tiny_bert, NONE, "train")
    assert len(expected) - ids.size + len(ids) < 15  # dropped: only the final remainder (< seq_len - 1)
    assert unpack(ids, packing.encoder(tiny_bert)[1]) == expected[: len(ids) * 15]
    assert len(ids) > 2 * packing.SEQUENCES_PER_BLOCK  # the shard spans several blocks of rows
    # skipping consumed intervals emits exactly the rest, with the same identities and content
    skip = [[0, 5], [9, 11]]
    rest = list(packing.pack_shard(7, shard, skip=skip, **kwargs))
    kept = np.concatenate([b["index"] for b in rest])
    assert kept.tolist() == [i for i in range(len(ids)) if not (i < 5 or 9 <= i < 11)]
    assert (np.concatenate([b["input_ids"] for b in rest]) == ids[kept]).all()


def test_held_out_documents_are_split_off_exactly(shard, tiny_bert):
    heldout = np.array([1003, 1010, 1017], dtype=np.int64)
    train = [t for texts in corpus.iter_documents(shard, ("title",), heldout, "train") for t in texts]
    held = [t for texts in corpus.iter_documents(shard, ("title",), heldout, "heldout") for t in texts]
    every = [t for texts in corpus.iter_documents(shard, ("title",), NONE, "train") for t in texts]
    assert len(held) == 3 and len(train) == len(every) - 3 and set(train) | set(held) == set(every)


def splitmix64(x: int) -> int:
    """SplitMix64's output function in plain Python integers (the reference for pmid_hash)."""
    mask = (1 << 64) - 1
    z = (x + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_pmid_hash_is_splitmix64():
    pmids = np.array([0, 1, 29768149, 39_999_999], dtype=np.int64)
    assert corpus.pmid_hash(pmids).tolist() == [splitmix64(int(p)) for p in pmids]
    assert splitmix64(0) == 0xE220A8397B1DCDAF  # SplitMix64's first output from seed 0


@pytest.mark.timeout(180)
def test_packed_dataset_over_the_sample_corpus(ray_local, sample_articles, tiny_bert):
    files = corpus.shard_files(sample_articles)
    heldout, heldout_files = corpus.heldout_set(files, 16)
    assert len(heldout) == 16 and set(heldout_files) <= set(files)
    kwargs = {
        "model_ref": tiny_bert,
        "text_columns": ("title", "abstract"),
        "seq_len": 64,
        "heldout": heldout,
    }
    rows = packing.packed_dataset(list(enumerate(files)), **kwargs).take_all()
    assert rows and all(len(r["input_ids"]) == 64 for r in rows)
    for shard, uri in enumerate(files):
        mine = sorted((r for r in rows if r["shard"] == shard), key=lambda r: r["index"])
        assert [r["index"] for r in mine] == list(range(len(mine)))  # no sequence lost or repeated
        expected = reference(uri, tiny_bert, heldout, "train")
        tokens = sum(len(r["input_ids"]) - 1 for r in mine)
        assert 0 <= len(expected) - tokens < 63  # every token in once, but the shard's final remainder
        if mine:
            assert (
                unpack(np.stack([r["input_ids"] for r in mine]), packing.encoder(tiny_bert)[1])
                == expected[:tokens]
            )
            assert [r["last"] for r in mine].count(True) == 1 and mine[-1]["last"]
    held = packing.packed_dataset(list(enumerate(files)), select="heldout", **kwargs).take_all()
    held_tokens = sum(len(reference(u, tiny_bert, heldout, "heldout")) for u in files)
    assert 0 <= held_tokens - 63 * len(held) < 63 * len(files)
