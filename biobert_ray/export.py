"""Export articles with their entities (and relations) as PubTator or BioC JSON, the field's exchange formats.

**Offsets.** Our tables count a mention's ``char_start``/``char_end`` within its section's own text
(the title's or the abstract's). Both formats count them over the document text
``title + " " + abstract``: title offsets stay as they are, abstract offsets move by ``len(title) + 1``,
so ``document_text[start:end] == text`` for every mention. In BioC JSON the ``title`` passage sits at
offset 0 and the ``abstract`` passage at ``len(title) + 1``, and an annotation's location is a
document offset (passage offset + section offset), as BioC defines it. Offsets count characters
(Unicode code points), as the tables do; a missing title or abstract counts as empty.

**Ids.** Our entities have no concept ids, so each mention gets an id unique within its document:
``T1``, ``T2``, ... in offset order. A relation names its arguments by these ids (PubTator
``PMID<TAB>relation<TAB>T1<TAB>T2``; BioC nodes with roles ``Arg1``/``Arg2``). An argument is the
mention of the relation's section with the argument's offsets and type; a relation without one is an
error naming it, never dropped.

**Reading.** Each article is written in its current version (:func:`biobert_ray.query.current_articles`:
the latest file wins, deleted PMIDs are left out), with the entities and relations of the shards named
like the articles shard that holds that version (annotation writes one per input shard), so mentions
of an earlier version never mix in. Only the current-version keys (PMID, file, record) are read for
the whole table; text, entities and relations are read one shard at a time, rendered, and spooled to
a local temporary file, from which the output is assembled in PMID order and written atomically.
"""

from __future__ import annotations

import array
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import bioc
import numpy as np
import polars as pl
import pyarrow.parquet as pq
from bioc import biocjson, pubtator

from biobert_ray import query, runs, storage

FORMATS = ("pubtator", "bioc")
SECTIONS = ("title", "abstract")
ENTITY_COLUMNS = ("pmid", "section", "char_start", "char_end", "text", "entity_type", "score", "model")


@dataclass(frozen=True)
class Mention:
    """A mention with its document id (``T1``...) and document offsets (``start``, ``end``)."""

    id: str
    section: str
    start: int
    end: int
    text: str
    entity_type: str
    score: float
    model: str


@dataclass(frozen=True)
class Relation:
    """A relation between two mentions of one section, named by their ids."""

    id: str
    section: str
    relation: str
    score: float
    model: str
    arg1: str
    arg2: str


@dataclass
class Document:
    """One article: its title, abstract, mentions in offset order and relations."""

    pmid: int
    title: str
    abstract: str
    mentions: list[Mention] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)

    def offset(self, section: str) -> int:
        """Where ``section`` starts in the document text ``title + " " + abstract``."""
        return 0 if section == "title" else len(self.title) + 1


def document(
    article: dict[str, Any], entities: list[dict[str, Any]], relations: list[dict[str, Any]]
) -> Document:
    """An ``articles`` row with its ``entities`` and ``relations`` rows (section offsets) -> a Document.

    Raises ``ValueError`` for an entity whose text is not the article's text at its offsets, and for a
    relation whose argument is no mention of its section.
    """
    doc = Document(article["pmid"], article["title"] or "", article["abstract"] or "")
    texts = {"title": doc.title, "abstract": doc.abstract}
    for row in entities:
        if texts.get(row["section"], "")[row["char_start"] : row["char_end"]] != row["text"]:
            raise ValueError(
                f"entity {row['text']!r} at PMID {doc.pmid} {row['section']}"
                f"[{row['char_start']}:{row['char_end']}] does not match the article's text"
            )
    ids: dict[tuple, str] = {}
    ordered = sorted(entities, key=lambda r: (_at(doc, r, "char_start"), r["char_end"], r["entity_type"]))
    for number, row in enumerate(ordered, 1):
        mention = Mention(
            f"T{number}", row["section"], _at(doc, row, "char_start"), _at(doc, row, "char_end"),
            row["text"], row["entity_type"], row["score"], row["model"],
        )  # fmt: skip
        doc.mentions.append(mention)
        ids.setdefault(_key(row), mention.id)
    ordered = sorted(
        relations, key=lambda r: (_at(doc, r, "arg1_char_start"), r["arg2_char_start"], r["relation"])
    )
    for number, row in enumerate(ordered, 1):
        args = [ids.get(_key(row, f"arg{n}_")) for n in (1, 2)]
        if None in args:
            n = args.index(None) + 1
            raise ValueError(
                f"relation {row['relation']!r} of PMID {doc.pmid} {row['section']}"
                f"[{row['arg1_char_start']}:{row['arg1_char_end']}]-[{row['arg2_char_start']}:"
                f"{row['arg2_char_end']}]: its argument {n} ({row[f'arg{n}_text']!r}, "
                f"{row[f'arg{n}_type']}) has no entities row"
            )
        doc.relations.append(
            Relation(f"R{number}", row["section"], row["relation"], row["score"], row["model"], *args)
        )
    return doc


def _at(doc: Document, row: dict[str, Any], column: str) -> int:
    """The document offset of a row's section offset ``column``."""
    return doc.offset(row["section"]) + row[column]


def _key(row: dict[str, Any], prefix: str = "") -> tuple:
    """What identifies a mention in its document: section, section offsets and type (``prefix``:
    ``arg1_``/``arg2_`` for a relation's argument, whose columns are named so)."""
    kind = row[f"{prefix}type"] if prefix else row["entity_type"]
    return (row["section"], row[f"{prefix}char_start"], row[f"{prefix}char_end"], kind)


class _Annotation(pubtator.PubTatorAnn):
    """A PubTator mention line of exactly six columns (bioc 2.1 adds an empty seventh)."""

    def __str__(self) -> str:
        return "\t".join(str(v) for v in (self.pmid, self.start, self.end, self.text, self.type, self.id))


class _Relation(pubtator.PubTatorRel):
    """A PubTator relation line of exactly four columns (bioc 2.1 adds ``None`` as a fifth)."""

    def __str__(self) -> str:
        return "\t".join((self.pmid, self.type, self.id1, self.id2))


def to_pubtator(doc: Document) -> pubtator.PubTator:
    """A Document as a ``bioc.pubtator.PubTator`` document."""
    pmid = str(doc.pmid)
    out = pubtator.PubTator(pmid, doc.title, doc.abstract)
    for m in doc.mentions:
        out.add_annotation(_Annotation(pmid, m.start, m.end, m.text, m.entity_type, m.id))
    for r in doc.relations:
        out.add_relation(_Relation(pmid, r.relation, r.arg1, r.arg2))
    return out


def _infons(kind: str, score: float, model: str) -> dict[str, str]:
    """BioC infons (strings, as BioC defines them) of an annotation or a relation."""
    return {"type": kind, "score": str(round(float(score), 4)), "model": model}


def to_bioc(doc: Document) -> bioc.BioCDocument:
    """A Document as a ``bioc.BioCDocument``: a passage per section holding its annotations and relations."""
    out = bioc.BioCDocument()
    out.id = str(doc.pmid)
    passages = {}
    for section, text in zip(SECTIONS, (doc.title, doc.abstract), strict=True):
        passage = passages[section] = bioc.BioCPassage()
        passage.offset, passage.text, passage.infons["type"] = doc.offset(section), text, section
        out.add_passage(passage)
    for m in doc.mentions:
        annotation = bioc.BioCAnnotation()
        annotation.id, annotation.text = m.id, m.text
        annotation.infons = _infons(m.entity_type, m.score, m.model)
        annotation.add_location(bioc.BioCLocation(m.start, m.end - m.start))
        passages[m.section].add_annotation(annotation)
    for r in doc.relations:
        relation = bioc.BioCRelation()
        relation.id, relation.infons = r.id, _infons(r.relation, r.score, r.model)
        relation.add_node(bioc.BioCNode(r.arg1, "Arg1"))
        relation.add_node(bioc.BioCNode(r.arg2, "Arg2"))
        passages[r.section].add_relation(relation)
    return out


def _render(kind: str, doc: Document) -> bytes:
    """One document in format ``kind``, as it appears in the output file."""
    if kind == "pubtator":
        return pubtator.dumps([to_pubtator(doc)]).encode()
    return biocjson.dumps(to_bioc(doc)).encode()


def _frame(kind: str) -> tuple[bytes, bytes, bytes]:
    """``(head, separator, tail)``: what goes before, between and after the documents of a file.

    PubTator separates documents by a blank line. A BioC JSON collection's head and tail are bioc's own
    encoding of an empty collection, split where its documents go, so the file is one collection.
    """
    if kind == "pubtator":
        return b"", b"\n", b""
    collection = bioc.BioCCollection()
    collection.source = "biobert-ray export"
    head, tail = biocjson.dumps(collection).rsplit("[]", 1)
    return (head + "[").encode(), b",", ("]" + tail).encode()


class Spool:
    """Rendered documents added in any order, read back in PMID order: kept in ``file`` (a local
    temporary file), with three numbers per document in memory."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.pmids, self.offsets, self.lengths = array.array("q"), array.array("q"), array.array("q")
        self.size = 0

    def add(self, pmid: int, data: bytes) -> None:
        self.file.write(data)
        self.pmids.append(pmid)
        self.offsets.append(self.size)
        self.lengths.append(len(data))
        self.size += len(data)

    def in_pmid_order(self) -> Iterator[bytes]:
        """The documents, lowest PMID first."""
        self.file.flush()
        for i in np.argsort(np.frombuffer(self.pmids, dtype=np.int64), kind="stable"):
            self.file.seek(self.offsets[i])
            yield self.file.read(self.lengths[i])


def _current_keys(articles: str) -> dict[str, pl.DataFrame]:
    """``pmid`` and ``record_index`` of the current version of each article, by the shard that holds it."""
    keys = query.current_articles(articles).select("pmid", "source_file", "record_index").collect()
    return {
        runs.shard_name(source): frame.drop("source_file")
        for (source,), frame in keys.partition_by("source_file", as_dict=True).items()
    }


def _shards(table: str | None) -> dict[str, str]:
    """The complete shards of ``table`` by shard name ({} without a table)."""
    return {runs.shard_name(uri): uri for uri in query.shard_files(table)} if table else {}


def _read(uri: str | None, pmids: list[int], columns: list[str] | None = None) -> dict[int, list[dict]]:
    """The rows of shard ``uri`` for the articles ``pmids``, as dicts grouped by PMID ({} without a shard).

    Parquet row-group statistics skip the groups that hold none of them.
    """
    if uri is None or not pmids:
        return {}
    fs, path = storage.filesystem(uri)
    with fs.open(path, "rb") as f:
        rows = pq.read_table(f, columns=columns, filters=[("pmid", "in", pmids)]).to_pylist()
    grouped = defaultdict(list)
    for row in rows:
        grouped[row["pmid"]].append(row)
    return grouped


def documents(
    articles: str, entities: str, relations: str | None = None, all_articles: bool = False
) -> Iterator[Document]:
    """The current articles with their mentions and relations, shard by shard (by PMID within a shard).

    Only articles with a mention unless ``all_articles``. Warns about a shard of ``articles`` without a
    complete shard of the same name in ``entities`` (or ``relations``).
    """
    current = _current_keys(articles)
    entity_shards, relation_shards = _shards(entities), _shards(relations)
    for uri in query.shard_files(articles):
        name = runs.shard_name(uri)
        if name not in current:
            continue
        for table, shards in ((entities, entity_shards), (relations, relation_shards)):
            if table and name not in shards:
                warnings.warn(
                    f"{table}: no complete shard {name}: its articles are exported without these rows",
                    stacklevel=2,
                )
        with storage.open_parquet(uri) as parquet:
            rows = pl.from_arrow(parquet.read(columns=["pmid", "record_index", "title", "abstract"]))
        rows = rows.join(current[name], on=["pmid", "record_index"], how="semi").sort("pmid")
        pmids = rows["pmid"].to_list()
        found = _read(entity_shards.get(name), pmids, list(ENTITY_COLUMNS))
        related = _read(relation_shards.get(name), pmids)
        for article in rows.iter_rows(named=True):
            pmid = article["pmid"]
            if all_articles or found.get(pmid) or related.get(pmid):  # relations without mentions fail
                yield document(article, found.get(pmid, []), related.get(pmid, []))


def export(
    kind: str,
    articles: str,
    entities: str,
    out: str,
    relations: str | None = None,
    all_articles: bool = False,
) -> dict[str, Any]:
    """Write the articles with their entities (and relations) as ``kind`` (``pubtator``/``bioc``) to ``out``.

    ``articles``, ``entities``, ``relations``: table directories (any fsspec URI); ``out``: the file,
    written atomically. Only articles with at least one mention are written unless ``all_articles``.
    Returns ``{format, out, articles, mentions, relations}`` (the counts written). Raises ``ValueError``
    naming a relation whose argument has no entities row, or a mention not at its offsets; nothing is
    written then.
    """
    if kind not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, not {kind!r}")
    counts = {"articles": 0, "mentions": 0, "relations": 0}
    with tempfile.TemporaryFile() as scratch:
        spool = Spool(scratch)
        for doc in documents(articles, entities, relations, all_articles):
            spool.add(doc.pmid, _render(kind, doc))
            counts["articles"] += 1
            counts["mentions"] += len(doc.mentions)
            counts["relations"] += len(doc.relations)
        head, separator, tail = _frame(kind)
        with storage.atomic_open(out) as f:
            f.write(head)
            for i, data in enumerate(spool.in_pmid_order()):
                f.write(separator + data if i else data)
            f.write(tail)
    return {"format": kind, "out": out, **counts}
