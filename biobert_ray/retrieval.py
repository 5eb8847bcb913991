"""The BM25 retrieval index of an ``articles`` table (``biobert-ray index``), on tantivy.

**Library.** `tantivy <https://github.com/quickwit-oss/tantivy-py>`_ (the Rust search library behind
Quickwit): an on-disk, segment-based inverted index whose build streams documents through a bounded
writer heap and whose searches read memory-mapped segments, so an index of all of PubMed (tens of
millions of abstracts) is built and queried without holding it in memory. ``bm25s`` (the other kept
option) scores with sparse matrices that must fit in memory at build time. Scoring is Lucene's BM25
(``k1 = 1.2``, ``b = 0.75``) over the title and the abstract, with tantivy's English stemming
tokenizer (``en_stem``: lower-cased, stemmed words).

**Layout.** One index per articles table, by default inside it at ``<articles>/_index/bm25/`` (a
directory that readers of the table's shards ignore), or at ``--index``; local or ``s3://``. It is
written locally, uploaded file by file, and its manifest ``index.json`` is written last: an index
without one is incomplete. The manifest records the table's identity (every complete shard's name,
completion-marker digest and size), so :func:`open_index` refuses an index the table has outgrown, and
the counts, library version, settings and build time. A remote index is downloaded once per manifest
into a local cache (``$TMPDIR/biobert_ray_index/<digest>``).

**Queries.** A question's words (``\\w+`` runs, lower-cased, so that ``AND``/``OR`` and punctuation
are never query syntax) are OR-ed; a hit is ``(pmid, shard, score)``, the shard being the articles
shard that holds the article, which is how question answering groups its work per shard.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import tantivy

from biobert_ray import runs, storage

MANIFEST = "index.json"
#: Bytes of the tantivy writer's heap (split across its threads).
WRITER_HEAP = 256 * 1024**2
_WORDS = re.compile(r"\w+")


def default_location(articles: str) -> str:
    """Where the index of an articles table lives unless told: ``<articles>/_index/bm25``."""
    return storage.join(articles, "_index", "bm25")


def table_identity(articles: str) -> dict[str, Any]:
    """The identity of an articles table: each complete shard's marker digest and size, by name; the
    incomplete shards are left out (and named by :func:`build_index`)."""
    complete, _ = runs.complete_shards(articles)
    return {
        runs.shard_name(uri): {
            "marker": runs.digest(runs.read_marker(articles, uri)),
            "size": storage.size(uri),
        }
        for uri in complete
    }


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("pmid", stored=True, indexed=True)
    builder.add_text_field("shard", stored=True, tokenizer_name="raw")
    builder.add_text_field("title", tokenizer_name="en_stem")
    builder.add_text_field("abstract", tokenizer_name="en_stem")
    return builder.build()


def build_index(
    articles: str, out: str | None = None, threads: int = 1, log: Callable[[str], Any] = print
) -> dict[str, Any]:
    """Index the title and abstract of every article of the table's complete shards; returns the
    manifest (also written, last, as ``<out>/index.json``; ``out`` defaults to :func:`default_location`).

    Incomplete shards are named and left out, so the manifest's identity shows they are missing.
    """
    out = out or default_location(articles)
    started = time.perf_counter()
    complete, incomplete = runs.complete_shards(articles)
    if not complete:
        raise FileNotFoundError(f"no complete articles shards (*.parquet with markers) at {articles}")
    for item in incomplete:
        log(f"warning: not indexing {item['shard']}: {item['reason']}")
    identity = table_identity(articles)
    documents = 0
    with tempfile.TemporaryDirectory(prefix="bm25-") as local:
        index = tantivy.Index(_schema(), path=local)
        writer = index.writer(heap_size=WRITER_HEAP, num_threads=threads)
        for uri in complete:
            name = runs.shard_name(uri)
            with storage.open_parquet(uri) as parquet:
                for batch in parquet.iter_batches(columns=["pmid", "title", "abstract"], batch_size=4096):
                    for row in batch.to_pylist():
                        writer.add_document(
                            tantivy.Document(
                                pmid=row["pmid"],
                                shard=name,
                                title=row["title"] or "",
                                abstract=row["abstract"] or "",
                            )
                        )
                        documents += 1
            log(f"index: {name} ({documents} articles so far)")
        writer.commit()
        writer.wait_merging_threads()
        files = sorted(p for p in Path(local).iterdir() if p.is_file())
        size = sum(p.stat().st_size for p in files)
        fs, path = storage.filesystem(out)
        if storage.exists(storage.join(out, MANIFEST)):
            storage.remove(storage.join(out, MANIFEST))  # the old index is incomplete from here on
        if fs.exists(path):
            fs.rm(path, recursive=True)
        fs.makedirs(path, exist_ok=True)
        for file in files:
            fs.put_file(str(file), f"{path.rstrip('/')}/{file.name}")
    manifest = {
        "articles": articles,
        "identity": identity,
        "documents": documents,
        "bytes": size,
        "library": f"tantivy {metadata.version('tantivy')}",
        "fields": ["title", "abstract"],
        "tokenizer": "en_stem",
        "built_at": runs.utc_now(),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    storage.write_json(manifest, storage.join(out, MANIFEST))
    return manifest


@dataclass(frozen=True)
class Hit:
    """An article retrieved for a question: its PMID, the articles shard that holds it, its BM25 score."""

    pmid: int
    shard: str
    score: float


class Retriever:
    """An opened index (see :func:`open_index`): ``search(question, k)`` -> the top ``k`` hits."""

    def __init__(self, index: tantivy.Index, manifest: dict[str, Any]) -> None:
        self.index, self.manifest = index, manifest
        self.searcher = index.searcher()

    def search(self, question: str, k: int) -> list[Hit]:
        """The ``k`` best articles for ``question`` by BM25 (module docstring), best first."""
        words = _WORDS.findall(question.lower())
        if not words:
            return []
        query, _ = self.index.parse_query_lenient(" ".join(words), ["title", "abstract"])
        hits = []
        for score, address in self.searcher.search(query, k).hits:
            document = self.searcher.doc(address)
            hits.append(Hit(document["pmid"][0], document["shard"][0], float(score)))
        return hits

    def locate(self, pmids: Sequence[int]) -> dict[int, str]:
        """The articles shard of each of ``pmids`` that the index holds."""
        found = {}
        for pmid in pmids:
            query = tantivy.Query.term_query(self.index.schema, "pmid", int(pmid))
            for _, address in self.searcher.search(query, 1).hits:
                found[int(pmid)] = self.searcher.doc(address)["shard"][0]
        return found


def _local_copy(location: str, manifest: dict[str, Any]) -> str:
    """A local directory holding the index at ``location`` (itself when local; else a cached download)."""
    fs, path = storage.filesystem(location)
    if storage.is_local(fs):
        return path
    cache = Path(tempfile.gettempdir()) / "biobert_ray_index" / runs.digest(manifest)
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix="partial-", dir=cache.parent))
        for remote in fs.ls(path, detail=False):
            if storage.basename(remote) != MANIFEST:
                fs.get_file(remote, str(partial / storage.basename(remote)))
        try:
            os.replace(partial, cache)
        except OSError:  # another process cached it first
            shutil.rmtree(partial, ignore_errors=True)
    return str(cache)


def open_index(location: str, articles: str | None = None) -> Retriever:
    """The index at ``location``; with ``articles``, ValueError unless it was built from that table as
    it is now (same complete shards, same markers); FileNotFoundError when there is no complete index."""
    manifest_uri = storage.join(location, MANIFEST)
    if not storage.exists(manifest_uri):
        raise FileNotFoundError(
            f"no complete retrieval index at {location} (no {MANIFEST}): build it with "
            f"`biobert-ray index --articles {articles or 'ARTICLES'}`"
        )
    manifest = storage.read_json(manifest_uri)
    if articles is not None:
        current = table_identity(articles)
        if current != manifest["identity"]:
            added = sorted(current.keys() - manifest["identity"].keys())
            changed = sorted(k for k in current.keys() & manifest["identity"].keys()
                             if current[k] != manifest["identity"][k])  # fmt: skip
            removed = sorted(manifest["identity"].keys() - current.keys())
            raise ValueError(
                f"the retrieval index at {location} is out of date for {articles} (new shards {added}, "
                f"changed {changed}, gone {removed}): rebuild it with "
                f"`biobert-ray index --articles {articles}`"
            )
    return Retriever(tantivy.Index.open(_local_copy(location, manifest)), manifest)
