"""PubTator documents (BC5CDR-CID), read strictly: every line is accounted for or named in an error.

A document is ``PMID|t|title``, ``PMID|a|abstract``, then one line per mention
``PMID<TAB>start<TAB>end<TAB>text<TAB>type<TAB>ids`` (offsets into title + one space + abstract;
``ids`` MeSH identifiers joined by ``|``, ``-1`` when none; a seventh column, when present, holds the
texts of a composite mention), then one line per relation ``PMID<TAB>type<TAB>id<TAB>id``, and a
blank line. The ``bioc`` library's reader prints and skips a line it cannot parse and does not check
offsets; this one stops with :class:`PubTatorError` naming the file and line, so nothing is lost
silently. Mentions are returned per section with offsets into that section's text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from biobert_ray.lines import FormatError, numbered_lines


class PubTatorError(FormatError):
    """A line of a PubTator file that cannot be read; the message reads ``uri:line: reason: 'text'``."""


@dataclass(frozen=True)
class PubTatorMention:
    """A mention: its section (``title`` or ``abstract``), offsets into that section's text, text, type and
    concept ids (empty for ``-1``)."""

    section: str
    start: int
    end: int
    text: str
    entity_type: str
    concepts: tuple[str, ...]


@dataclass
class PubTatorDocument:
    """One document: PMID, title, abstract, mentions, relations ``(type, id, id)`` and its first line."""

    pmid: str
    line: int
    title: str = ""
    abstract: str = ""
    mentions: list[PubTatorMention] = field(default_factory=list)
    relations: list[tuple[str, str, str]] = field(default_factory=list)


def read_pubtator(uri: str) -> list[PubTatorDocument]:
    """The documents of the PubTator file at ``uri`` (any fsspec URI; ``.gz`` decompressed)."""
    documents: list[PubTatorDocument] = []
    current: PubTatorDocument | None = None
    for number, line in numbered_lines(uri, PubTatorError):
        if not line.strip():
            current = None
            continue
        current = _read_line(uri, number, line, current, documents)
    return documents


def _read_line(
    uri: str, number: int, line: str, current: PubTatorDocument | None, documents: list[PubTatorDocument]
) -> PubTatorDocument:
    """Add one non-empty line to the document it belongs to; returns the current document."""
    head, _, rest = line.partition("|")
    kind, _, body = rest.partition("|")
    if "\t" not in head and kind in ("t", "a") and rest[1:2] == "|":
        if current is None or current.pmid != head:
            current = PubTatorDocument(head, number)
            documents.append(current)
        if kind == "t":
            current.title = body
        else:
            current.abstract = body
        return current
    columns = line.split("\t")
    if current is None or columns[0] != current.pmid:
        raise PubTatorError(uri, number, "a mention or relation line outside its document", line)
    if len(columns) in (6, 7):
        current.mentions.append(_mention(uri, number, line, columns, current))
    elif len(columns) == 4:
        current.relations.append((columns[1], columns[2], columns[3]))
    else:
        reason = f"expected 4, 6 or 7 tab-separated columns, found {len(columns)}"
        raise PubTatorError(uri, number, reason, line)
    return current


def _mention(uri: str, number: int, line: str, columns: list[str], doc: PubTatorDocument) -> PubTatorMention:
    """The mention of a 6- or 7-column line, its offsets checked against the document's text."""
    try:
        start, end = int(columns[1]), int(columns[2])
    except ValueError:
        raise PubTatorError(uri, number, "offsets are not integers", line) from None
    boundary = len(doc.title) + 1
    text = f"{doc.title} {doc.abstract}"
    if not 0 <= start < end <= len(text) or text[start:end] != columns[3]:
        raise PubTatorError(uri, number, f"text does not match the document at {start}-{end}", line)
    if start < boundary <= end - 1:
        raise PubTatorError(uri, number, "mention spans the title and the abstract", line)
    section, shift = ("title", 0) if start < boundary else ("abstract", boundary)
    concepts = tuple(c for c in columns[5].split("|") if c and c != "-1")
    return PubTatorMention(section, start - shift, end - shift, columns[3], columns[4], concepts)
