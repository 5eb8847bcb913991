"""Streaming parser for MEDLINE/PubMed citation XML (``.xml`` or ``.xml.gz``).

Reads both the current ``PubmedArticleSet/PubmedArticle`` files and the pre-2017
``MedlineCitationSet/MedlineCitation`` files. The byte stream is cut into one chunk per top-level
record (a ``PubmedArticle``, ``PubmedBookArticle``, ``MedlineCitation`` or ``DeleteCitation``) and each
chunk is parsed on its own with lxml, so:

- memory is bounded by one record, not the file (a 150 MB baseline file is never one tree);
- a malformed record becomes one :class:`RecordError` and the records after it still parse;
- anything between records that is not whitespace is reported, never skipped silently.

:func:`parse_records` yields :class:`Article`, :class:`Deletion` and :class:`RecordError` values in file
order; a file that cannot be read at all (not XML, truncated gzip, empty) raises :class:`FileError`
after yielding the records read before the failure.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from lxml import etree

#: Top-level record elements per root element.
RECORD_TAGS = {
    b"PubmedArticleSet": (b"PubmedArticle", b"PubmedBookArticle", b"DeleteCitation"),
    b"MedlineCitationSet": (b"MedlineCitation", b"DeleteCitation"),
}
_ROOT_RE = re.compile(rb"<([A-Za-z_][\w.-]*)[\s>/]")
_PROLOG_RE = re.compile(rb"\s*(<\?.*?\?>|<!DOCTYPE[^>\[]*(\[.*?\])?\s*>|<!--.*?-->)", re.S)
_PMID_RE = re.compile(rb"<PMID[^>]*>\s*(\d+)\s*</PMID>")
_YEAR_RE = re.compile(r"(1[89]\d\d|2\d\d\d)")
_CHUNK = 1 << 16  # small reads: a truncated gzip loses at most this much before the cut
_EXCERPT = 300

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, remove_comments=True)


class FileError(Exception):
    """A whole file could not be read (not XML, unknown root, truncated or corrupt compression)."""


@dataclass(slots=True)
class Article:
    """One citation: a row of the ``articles`` table (see :data:`biobert_ray.schemas.ARTICLES`)."""

    pmid: int
    version: int | None
    title: str | None
    abstract: str | None
    abstract_sections: list[dict]
    journal: str | None
    pub_year: int | None
    language: str | None
    doi: str | None
    pmcid: str | None
    mesh_terms: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    publication_types: list[str] = field(default_factory=list)
    record_index: int = 0


@dataclass(slots=True)
class Deletion:
    """A PMID that a ``DeleteCitation`` entry removes from PubMed."""

    pmid: int
    record_index: int


@dataclass(slots=True)
class RecordError:
    """A record that could not be turned into a row, and why."""

    record_index: int
    pmid: int | None
    reason: str
    excerpt: str


def normalize(text: str | None) -> str | None:
    """Collapse every run of whitespace (newlines, tabs, no-break spaces) to one space and strip."""
    if text is None:
        return None
    return " ".join(text.split()) or None


def element_text(elem: etree._Element | None) -> str | None:
    """All text inside ``elem``, inline markup (``<i>``, ``<sup>``, ``<sub>``...) kept as its text."""
    if elem is None:
        return None
    return normalize("".join(elem.itertext()))


def _texts(elems: list[etree._Element]) -> list[str]:
    return [t for t in (element_text(e) for e in elems) if t]


def build_abstract(abstract: etree._Element | None) -> tuple[str | None, list[dict]]:
    """The abstract text and its sections.

    Labelled sections are written ``LABEL: text`` and joined by one space; each section's
    ``char_start``/``char_end`` give its text (without the label) inside the returned string.
    """
    if abstract is None:
        return None, []
    parts: list[str] = []
    sections: list[dict] = []
    offset = 0
    for node in abstract.iterfind("AbstractText"):
        text = element_text(node)
        if not text:
            continue
        label = normalize(node.get("Label"))
        prefix = f"{label}: " if label else ""
        if parts:
            offset += 1  # the joining space
        start = offset + len(prefix)
        parts.append(prefix + text)
        offset = start + len(text)
        sections.append(
            {"label": label, "nlm_category": node.get("NlmCategory"), "char_start": start, "char_end": offset}
        )
    if not parts:
        return None, []
    return " ".join(parts), sections


def _pub_year(journal: etree._Element | None) -> int | None:
    if journal is None:
        return None
    date = journal.find("JournalIssue/PubDate")
    if date is None:
        return None
    year = date.findtext("Year") or date.findtext("MedlineDate") or ""
    match = _YEAR_RE.search(year)
    return int(match.group(1)) if match else None


def _article_ids(record: etree._Element) -> dict[str, str]:
    """``IdType -> value`` of the record's own ArticleIdList (not those of its references)."""
    ids: dict[str, str] = {}
    for node in record.iterfind("PubmedData/ArticleIdList/ArticleId"):
        id_type = node.get("IdType")
        if id_type and node.text and id_type not in ids:
            ids[id_type] = node.text.strip()
    return ids


def _pmid(citation: etree._Element) -> tuple[int, int | None]:
    node = citation.find("PMID")
    if node is None or not (node.text or "").strip():
        raise ValueError("record has no PMID")
    text = node.text.strip()
    if not text.isdigit():
        raise ValueError(f"PMID is not an integer: {text!r}")
    version = node.get("Version")
    return int(text), int(version) if version and version.isdigit() else None


def parse_citation(record: etree._Element, record_index: int) -> Article:
    """An :class:`Article` from a ``PubmedArticle`` or a bare ``MedlineCitation`` element."""
    citation = record if record.tag == "MedlineCitation" else record.find("MedlineCitation")
    if citation is None:
        raise ValueError("PubmedArticle has no MedlineCitation")
    pmid, version = _pmid(citation)
    article = citation.find("Article")
    if article is None:
        raise ValueError("MedlineCitation has no Article")
    journal = article.find("Journal")
    abstract, sections = build_abstract(article.find("Abstract"))
    ids = _article_ids(record)
    doi = None
    for loc in article.iterfind("ELocationID"):
        if loc.get("EIdType") == "doi" and loc.text:
            doi = loc.text.strip()
            break
    pmcid = ids.get("pmc")
    if pmcid is None:
        for other in citation.iterfind("OtherID"):
            if other.text and other.text.strip().startswith("PMC"):
                pmcid = other.text.strip().split()[0]
                break
    return Article(
        pmid=pmid,
        version=version,
        title=element_text(article.find("ArticleTitle")) or element_text(article.find("VernacularTitle")),
        abstract=abstract,
        abstract_sections=sections,
        journal=element_text(journal.find("Title")) if journal is not None else None,
        pub_year=_pub_year(journal),
        language=normalize(article.findtext("Language")),
        doi=doi or ids.get("doi"),
        pmcid=pmcid,
        mesh_terms=_texts(citation.findall("MeshHeadingList/MeshHeading/DescriptorName")),
        keywords=_texts(citation.findall("KeywordList/Keyword")),
        publication_types=_texts(article.findall("PublicationTypeList/PublicationType")),
        record_index=record_index,
    )


def parse_book(record: etree._Element, record_index: int) -> Article:
    """An :class:`Article` from a ``PubmedBookArticle`` (NCBI Bookshelf chapters and books)."""
    doc = record.find("BookDocument")
    if doc is None:
        raise ValueError("PubmedBookArticle has no BookDocument")
    pmid, version = _pmid(doc)
    abstract, sections = build_abstract(doc.find("Abstract"))
    book = doc.find("Book")
    ids = _article_ids(record.find("PubmedBookData") if record.find("PubmedBookData") is not None else record)
    return Article(
        pmid=pmid,
        version=version,
        title=element_text(doc.find("ArticleTitle")) or element_text(doc.find("Book/BookTitle")),
        abstract=abstract,
        abstract_sections=sections,
        journal=element_text(book.find("BookTitle")) if book is not None else None,
        pub_year=_pub_year(book.find("PubDate/..") if book is not None else None),
        language=normalize(doc.findtext("Language")),
        doi=ids.get("doi"),
        pmcid=ids.get("pmc"),
        keywords=_texts(doc.findall("KeywordList/Keyword")),
        publication_types=_texts(doc.findall("PublicationType")),
        record_index=record_index,
    )


def parse_record(chunk: bytes, tag: bytes, record_index: int) -> list[Article | Deletion | RecordError]:
    """Parse one top-level record's bytes; a failure becomes a :class:`RecordError`, never an exception."""
    try:
        elem = etree.fromstring(chunk, _PARSER)
        if tag == b"DeleteCitation":
            pmids = [int(p.text.strip()) for p in elem.iterfind("PMID")]
            if not pmids:
                raise ValueError("DeleteCitation lists no PMID")
            return [Deletion(pmid=p, record_index=record_index) for p in pmids]
        if tag == b"PubmedBookArticle":
            return [parse_book(elem, record_index)]
        return [parse_citation(elem, record_index)]
    except (etree.XMLSyntaxError, ValueError, AttributeError) as exc:
        match = _PMID_RE.search(chunk)
        return [
            RecordError(
                record_index=record_index,
                pmid=int(match.group(1)) if match else None,
                reason=f"{type(exc).__name__}: {exc}",
                excerpt=chunk[:_EXCERPT].decode("utf-8", "replace"),
            )
        ]


class _Reader:
    """Reads a binary stream in chunks, turning decompression failures into :class:`FileError`."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.eof = False

    def read(self) -> bytes:
        try:
            data = self.stream.read(_CHUNK)
        except (EOFError, OSError, zlib.error) as exc:
            raise FileError(f"cannot read the file: {type(exc).__name__}: {exc}") from exc
        if not data:
            self.eof = True
        return data


def _find_root(reader: _Reader) -> tuple[bytes, bytes, int]:
    """Read up to the root element: returns (buffer, root tag, offset just after the root start tag)."""
    buf = b""
    while True:
        pos = 0
        while match := _PROLOG_RE.match(buf, pos):
            pos = match.end()
        rest = buf[pos:].lstrip()
        if rest and not rest.startswith(b"<"):
            raise FileError("not an XML file: content before the root element is not markup")
        root = _ROOT_RE.match(rest)
        if root:
            tag = root.group(1)
            if tag not in RECORD_TAGS:
                raise FileError(
                    f"not MEDLINE/PubMed citation XML: root element is <{tag.decode(errors='replace')}>"
                )
            offset = len(buf) - len(rest)
            end = buf.find(b">", offset)
            if end >= 0:
                return buf, tag, end + 1
        if reader.eof:
            raise FileError("empty file" if not buf.strip() else "no root element before the end of the file")
        buf += reader.read()


def _check_gap(gap: bytes, record_index: int) -> RecordError | None:
    """Content between records must be whitespace; anything else is reported, not skipped."""
    if not gap.strip():
        return None
    return RecordError(
        record_index=record_index,
        pmid=None,
        reason="unexpected content between records (ignored)",
        excerpt=gap.strip()[:_EXCERPT].decode("utf-8", "replace"),
    )


def parse_records(stream: BinaryIO) -> Iterator[Article | Deletion | RecordError]:
    """Parse a (decompressed) MEDLINE/PubMed XML stream record by record.

    ``record_index`` counts top-level records from 0 in file order. Raises :class:`FileError` when the
    file as a whole is unreadable; records yielded before that stay valid.
    """
    reader = _Reader(stream)
    buf, root, pos = _find_root(reader)
    tags = RECORD_TAGS[root]
    start_re = re.compile(rb"<(" + b"|".join(tags) + rb")[\s>]")
    root_end = b"</" + root + b">"
    record_index = 0
    while True:
        start = start_re.search(buf, pos)
        if start is None:
            if not reader.eof:
                buf, pos = buf[pos:] + reader.read(), 0
                continue
            tail = buf[pos:]
            end_at = tail.find(root_end)
            if end_at < 0:
                raise FileError(f"file ends before </{root.decode()}> (truncated?)")
            if error := _check_gap(tail[:end_at], record_index):
                yield error
            return
        if error := _check_gap(buf[pos : start.start()], record_index):
            yield error
        tag = start.group(1)
        end_tag = b"</" + tag + b">"
        end = buf.find(end_tag, start.end())
        nested = start_re.search(buf, start.end(), end if end >= 0 else len(buf))
        if end < 0 and nested is None:
            if reader.eof:
                raise FileError(f"file ends inside record {record_index} (truncated?)")
            buf, pos = buf[start.start() :] + reader.read(), 0
            continue
        if nested is not None:  # this record never closed: report it, resume at the next one
            stop = nested.start()
            yield RecordError(
                record_index=record_index,
                pmid=int(m.group(1)) if (m := _PMID_RE.search(buf, start.start(), stop)) else None,
                reason=f"<{tag.decode()}> is not closed before the next record starts",
                excerpt=buf[start.start() : start.start() + _EXCERPT].decode("utf-8", "replace"),
            )
        else:
            stop = end + len(end_tag)
            yield from parse_record(buf[start.start() : stop], tag, record_index)
        record_index += 1
        pos = stop
        if pos > _CHUNK:
            buf, pos = buf[pos:], 0
