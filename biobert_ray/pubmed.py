"""Streaming parser for MEDLINE/PubMed citation XML (``.xml`` or ``.xml.gz``).

Reads both the current ``PubmedArticleSet/PubmedArticle`` files and the pre-2017
``MedlineCitationSet/MedlineCitation`` files. The byte stream is cut into one chunk per top-level
record (a ``PubmedArticle``, ``PubmedBookArticle``, ``MedlineCitation`` or ``DeleteCitation``) and each
chunk is parsed on its own with lxml, so:

- memory is bounded by one record, not the file (a 150 MB baseline file is never one tree);
- a malformed record becomes one :class:`RecordError` and the records after it still parse (a bad PMID
  in a ``DeleteCitation`` becomes one, and its other PMIDs are still deleted);
- anything between records that is not whitespace is reported, never skipped silently.

The file is UTF-8 (a byte order mark is allowed) unless its XML declaration names another encoding; the
declared encoding must be ASCII-compatible (the splitter finds tags by their bytes), so UTF-16 and UTF-32
files are refused. A PMID must be ASCII digits that fit in int64 and its ``Version`` ASCII digits that fit
in int32, or the record becomes a :class:`RecordError`.

:func:`parse_records` yields :class:`Article`, :class:`Deletion` and :class:`RecordError` values in file
order; a file that cannot be read at all (not XML, unsupported encoding, truncated gzip, empty) raises
:class:`FileError` after yielding the records read before the failure.
"""

from __future__ import annotations

import codecs
import functools
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
_PMID_RE = re.compile(rb"<PMID[^>]*>\s*(\d+)\s*</PMID>")  # bytes: \d is ASCII digits only
_DECLARATION_RE = re.compile(rb"\s*<\?xml\s[^>]*?\bencoding\s*=\s*([\"'])(.*?)\1")
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_YEAR_RE = re.compile(r"(1[89]\d\d|2\d\d\d)")
_CHUNK = 1 << 16  # small reads: a truncated gzip loses at most this much before the cut
_EXCERPT = 300

_PARSER_OPTIONS = {"resolve_entities": False, "no_network": True, "huge_tree": True, "remove_comments": True}
#: Byte order marks of the encodings the byte-level splitter cannot read (UTF-32 first: FF FE 00 00).
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
#: The start of a UTF-16 or UTF-32 file without a byte order mark: ``<`` or whitespace beside NUL bytes.
_WIDE_START_RE = re.compile(rb"\x00{1,3}[<\s]|[<\s]\x00")


class FileError(Exception):
    """A whole file could not be read (not XML, unknown root, unsupported encoding, truncated or corrupt
    compression)."""


@dataclass(frozen=True, slots=True)
class _Encoding:
    """One file's encoding: the lxml parser of its record chunks and the Python codec of its excerpts."""

    codec: str
    parser: etree.XMLParser

    def excerpt(self, data: bytes) -> str:
        """The first bytes of ``data`` as text, for an errors-table row (undecodable bytes replaced)."""
        return data[:_EXCERPT].decode(self.codec, "replace")


_UTF8 = _Encoding("utf-8", etree.XMLParser(**_PARSER_OPTIONS))


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


def _pub_year(date: etree._Element | None) -> int | None:
    """The year of a ``PubDate`` (a journal issue's or a book's): its ``Year``, else the first year of its
    free-text ``MedlineDate``; None when there is neither."""
    if date is None:
        return None
    year = date.findtext("Year") or date.findtext("MedlineDate") or ""
    match = _YEAR_RE.search(year)
    return int(match.group(1)) if match else None


def _article_ids(*id_lists: etree._Element | None) -> dict[str, str]:
    """``IdType -> value`` of the given ``ArticleIdList`` elements (the first value of a type wins)."""
    ids: dict[str, str] = {}
    for id_list in id_lists:
        for node in id_list.iterfind("ArticleId") if id_list is not None else ():
            id_type = node.get("IdType")
            if id_type and node.text and id_type not in ids:
                ids[id_type] = node.text.strip()
    return ids


def _ascii_int(text: str | None, what: str, maximum: int) -> int:
    """``text`` (surrounding whitespace ignored) as an int; ValueError naming ``what`` and the value
    unless it is ASCII digits (not Arabic-Indic, fullwidth...) of a number no larger than ``maximum``."""
    value = (text or "").strip()
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"{what} is not an integer: {value!r}")
    number = int(value)
    if number > maximum:
        raise ValueError(f"{what} {value} is out of range (more than {maximum})")
    return number


def _pmid(citation: etree._Element) -> tuple[int, int | None]:
    """The PMID (int64) and its ``Version`` (int32, None when absent) of a record; ValueError if bad."""
    node = citation.find("PMID")
    if node is None or not (node.text or "").strip():
        raise ValueError("record has no PMID")
    version = node.get("Version")
    return (
        _ascii_int(node.text, "PMID", _INT64_MAX),
        None if version is None else _ascii_int(version, "PMID Version", _INT32_MAX),
    )


def _pmid_hint(chunk: bytes) -> int | None:
    """The PMID of a record that did not parse, found by a regex; None when absent or out of int64 range."""
    match = _PMID_RE.search(chunk)
    return int(match.group(1)) if match and int(match.group(1)) <= _INT64_MAX else None


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
    ids = _article_ids(record.find("PubmedData/ArticleIdList"))
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
        pub_year=_pub_year(article.find("Journal/JournalIssue/PubDate")),
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
    ids = _article_ids(doc.find("ArticleIdList"), record.find("PubmedBookData/ArticleIdList"))
    return Article(
        pmid=pmid,
        version=version,
        title=element_text(doc.find("ArticleTitle")) or element_text(doc.find("Book/BookTitle")),
        abstract=abstract,
        abstract_sections=sections,
        journal=element_text(book.find("BookTitle")) if book is not None else None,
        pub_year=_pub_year(doc.find("Book/PubDate")),
        language=normalize(doc.findtext("Language")),
        doi=ids.get("doi"),
        pmcid=ids.get("pmc"),
        keywords=_texts(doc.findall("KeywordList/Keyword")),
        publication_types=_texts(doc.findall("PublicationType")),
        record_index=record_index,
    )


def parse_deletions(record: etree._Element, record_index: int) -> list[Deletion | RecordError]:
    """One :class:`Deletion` per PMID of a ``DeleteCitation`` element, in order; a PMID that is not ASCII
    digits fitting in int64 becomes a :class:`RecordError` (excerpt: its ``<PMID>``) and the others stay."""
    items: list[Deletion | RecordError] = []
    for node in record.iterfind("PMID"):
        try:
            items.append(Deletion(pmid=_ascii_int(node.text, "PMID", _INT64_MAX), record_index=record_index))
        except ValueError as exc:
            excerpt = etree.tostring(node, encoding="unicode", with_tail=False)[:_EXCERPT]
            items.append(
                RecordError(
                    record_index=record_index, pmid=None, reason=f"ValueError: {exc}", excerpt=excerpt
                )
            )
    if not items:
        raise ValueError("DeleteCitation lists no PMID")
    return items


def parse_record(
    chunk: bytes, tag: bytes, record_index: int, encoding: _Encoding = _UTF8
) -> list[Article | Deletion | RecordError]:
    """Parse one top-level record's bytes, written in the file's ``encoding`` (UTF-8 by default).

    Returns one :class:`Article`, or the :class:`Deletion` values of a ``DeleteCitation``; a failure
    becomes a :class:`RecordError`, never an exception.
    """
    try:
        elem = etree.fromstring(chunk, encoding.parser)
        if tag == b"DeleteCitation":
            return parse_deletions(elem, record_index)
        if tag == b"PubmedBookArticle":
            return [parse_book(elem, record_index)]
        return [parse_citation(elem, record_index)]
    except (etree.XMLSyntaxError, ValueError, AttributeError) as exc:
        return [
            RecordError(
                record_index=record_index,
                pmid=_pmid_hint(chunk),
                reason=f"{type(exc).__name__}: {exc}",
                excerpt=encoding.excerpt(chunk),
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


@functools.lru_cache
def _ascii_compatible(codec: str) -> bool:
    """True when the text of ``codec`` can be split at the byte level: printable ASCII keeps its bytes
    and no other character (of the BMP) is written with a ``<`` or ``>`` byte, as in UTF-8, Latin-1 or
    Shift_JIS but not UTF-16, UTF-7 or ISO-2022-JP."""
    info = codecs.lookup(codec)
    ascii_text = "".join(map(chr, range(0x20, 0x7F))) + "\t\n\r"
    others = "".join(chr(c) for c in range(0x80, 0x10000) if not 0xD800 <= c < 0xE000)
    encoded_others = info.encode(others, "ignore")[0]
    return info.encode(ascii_text)[0] == ascii_text.encode() and not any(b in encoded_others for b in b"<>")


def _check_byte_order_mark(head: bytes) -> int:
    """The length of the UTF-8 byte order mark that ``head`` (the file's first bytes) starts with, or 0.

    Raises :class:`FileError` for a UTF-16 or UTF-32 file (its byte order mark, or NUL bytes beside
    the ``<`` or whitespace that XML starts with).
    """
    for bom, name in _WIDE_BOMS:
        if head.startswith(bom):
            raise FileError(
                f"{name} files are not supported (byte order mark {bom.hex(' ')}): convert to UTF-8"
            )
    if _WIDE_START_RE.match(head):
        raise FileError("UTF-16 or UTF-32 files are not supported (NUL bytes at the start): convert to UTF-8")
    return len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0


def _declared_encoding(prolog: bytes, bom: bool) -> _Encoding:
    """The encoding named by the XML declaration at the start of ``prolog``, UTF-8 when there is none.

    ``bom``: the file started with a UTF-8 byte order mark. Raises :class:`FileError` for an unknown
    encoding, one that is not ASCII-compatible, or one that contradicts the byte order mark.
    """
    declaration = _DECLARATION_RE.match(prolog)
    if declaration is None:
        return _UTF8
    name = declaration.group(2).decode("ascii", "replace")
    try:
        codec = codecs.lookup(name).name
        parser = etree.XMLParser(encoding=name, **_PARSER_OPTIONS)
    except (LookupError, ValueError):  # ValueError: a NUL byte in the name
        raise FileError(f"unknown encoding {name!r} in the XML declaration") from None
    if not _ascii_compatible(codec):
        raise FileError(
            f"encoding {name!r} is not supported: records are split at the byte level, which needs an "
            "ASCII-compatible encoding such as UTF-8"
        )
    if bom and codec != "utf-8":
        raise FileError(f"the file starts with a UTF-8 byte order mark but declares encoding {name!r}")
    return _Encoding(codec, parser)


def _find_root(reader: _Reader) -> tuple[bytes, bytes, int, _Encoding]:
    """Read up to the root element: returns (buffer, root tag, offset just after the root start tag, the
    file's encoding); the buffer starts after a UTF-8 byte order mark."""
    buf = b""
    while len(buf) < 4 and (data := reader.read()):
        buf += data
    bom = _check_byte_order_mark(buf)
    buf = buf[bom:]
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
                return buf, tag, end + 1, _declared_encoding(buf, bom > 0)
        if reader.eof:
            raise FileError("empty file" if not buf.strip() else "no root element before the end of the file")
        buf += reader.read()


def _check_gap(gap: bytes, record_index: int, encoding: _Encoding) -> RecordError | None:
    """Content between records must be whitespace; anything else is reported, not skipped."""
    if not gap.strip():
        return None
    return RecordError(
        record_index=record_index,
        pmid=None,
        reason="unexpected content between records (ignored)",
        excerpt=encoding.excerpt(gap.strip()),
    )


def parse_records(stream: BinaryIO) -> Iterator[Article | Deletion | RecordError]:
    """Parse a (decompressed) MEDLINE/PubMed XML stream record by record.

    ``record_index`` counts top-level records from 0 in file order. Raises :class:`FileError` when the
    file as a whole is unreadable; records yielded before that stay valid.
    """
    reader = _Reader(stream)
    buf, root, pos, encoding = _find_root(reader)
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
            if error := _check_gap(tail[:end_at], record_index, encoding):
                yield error
            return
        if error := _check_gap(buf[pos : start.start()], record_index, encoding):
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
                pmid=_pmid_hint(buf[start.start() : stop]),
                reason=f"<{tag.decode()}> is not closed before the next record starts",
                excerpt=encoding.excerpt(buf[start.start() : stop]),
            )
        else:
            stop = end + len(end_tag)
            yield from parse_record(buf[start.start() : stop], tag, record_index, encoding)
        record_index += 1
        pos = stop
        if pos > _CHUNK:
            buf, pos = buf[pos:], 0
