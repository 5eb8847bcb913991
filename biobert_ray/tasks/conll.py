"""BioBERT/CoNLL NER files: one ``token<TAB>tag`` per line, a blank line between sentences.

Two tag styles exist and a file must use one of them:

- untyped ``B``/``I``/``O`` (BioBERT's NER datasets, one entity type per file): the caller names the type
  (``--entity-type Disease``) and the tags become ``B-Disease``/``I-Disease``;
- typed IOB2 ``B-X``/``I-X``/``O`` (e.g. BC5CDR with chemicals and diseases), kept as they are.

A line with more than two tab-separated columns holds the token first and the tag last. ``-DOCSTART-``
lines are skipped. Anything else that does not fit raises :class:`ConllFormatError` naming file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from biobert_ray.storage import open_input

OUTSIDE = "O"
_DOCSTART = "-DOCSTART-"
_UNTYPED = frozenset({"B", "I"})
#: ``B-X``/``I-X`` with a type that has no whitespace and neither starts nor ends with ``-`` (as seqeval
#: strips those, a type like ``X-`` would be scored as ``X``).
_TYPED_RE = re.compile(r"([BI])-([^\s-](?:\S*[^\s-])?)")


@dataclass(frozen=True)
class Sentence:
    """One sentence: its words, one IOB2 tag per word, its file and the (1-based) line of its first word."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    source: str
    line: int


class ConllFormatError(ValueError):
    """A line of a CoNLL file that cannot be read; the message reads ``uri:line: reason: 'text'``."""

    def __init__(self, uri: str, line: int, reason: str, text: str) -> None:
        super().__init__(f"{uri}:{line}: {reason}: {text!r}")
        self.uri, self.line, self.reason, self.text = uri, line, reason, text


def read_conll(uri: str, entity_type: str | None = None) -> list[Sentence]:
    """Read every sentence of the CoNLL file at ``uri`` (any fsspec URI; ``.gz`` is decompressed).

    ``entity_type`` is required for untyped ``B``/``I`` tags, which become ``B-<entity_type>`` and
    ``I-<entity_type>``, and refused for typed files. Raises :class:`ConllFormatError` on a malformed line,
    ``ValueError`` on an ``entity_type`` that is not a valid type name.
    """
    if entity_type is not None and not _TYPED_RE.fullmatch(f"B-{entity_type}"):
        raise ValueError(f"invalid entity type {entity_type!r}: it must be non-empty, without whitespace")
    reader = _TagReader(uri, entity_type)
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    first_line = 0
    with open_input(uri) as stream:
        for number, raw in enumerate(stream, 1):
            line = _decode(raw, uri, number)
            if not line.strip() or line.startswith(_DOCSTART):
                if words:
                    sentences.append(Sentence(tuple(words), tuple(tags), uri, first_line))
                    words, tags = [], []
                continue
            columns = line.split("\t")
            if len(columns) < 2:
                raise ConllFormatError(uri, number, "no tab between token and tag", line)
            if not columns[0].strip():
                raise ConllFormatError(uri, number, "empty token", line)
            if not words:
                first_line = number
            words.append(columns[0])
            tags.append(reader.tag(columns[-1].strip(), number, line))
    if words:
        sentences.append(Sentence(tuple(words), tuple(tags), uri, first_line))
    return sentences


def entity_types(sentences: Iterable[Sentence]) -> list[str]:
    """The distinct entity types tagged in ``sentences``, sorted."""
    return sorted({tag[2:] for sentence in sentences for tag in sentence.tags if tag != OUTSIDE})


def label_list(types: Iterable[str]) -> list[str]:
    """The labels of a tagger over ``types``: ``["O", "B-T1", "I-T1", "B-T2", ...]`` with the types sorted."""
    return [OUTSIDE, *(f"{prefix}-{t}" for t in sorted(set(types)) for prefix in ("B", "I"))]


def _decode(raw: bytes, uri: str, number: int) -> str:
    """One line of the file as text, without its line ending (and without a UTF-8 byte order mark)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConllFormatError(
            uri, number, f"not UTF-8 ({err.reason})", raw.decode("utf-8", "replace")
        ) from None
    line = line.rstrip("\r\n")
    return line.removeprefix("\ufeff") if number == 1 else line


class _TagReader:
    """Checks the tags of one file line by line and turns them into typed IOB2 tags.

    Remembers which style (untyped or typed) the file uses from its first ``B``/``I`` tag, so that a file
    mixing both is refused at the first line that breaks the style.
    """

    def __init__(self, uri: str, entity_type: str | None) -> None:
        self.uri, self.entity_type = uri, entity_type
        self.typed: bool | None = None
        self.style_line = 0

    def tag(self, tag: str, number: int, line: str) -> str:
        """The typed IOB2 form of ``tag``, read on line ``number`` (whose text is ``line``)."""
        if tag == OUTSIDE:
            return tag
        typed = _TYPED_RE.fullmatch(tag) is not None
        if not typed and tag not in _UNTYPED:
            raise ConllFormatError(
                self.uri, number, f"unknown tag {tag!r} (expected O, B, I, B-<type> or I-<type>)", line
            )
        if self.typed is None:
            self.typed, self.style_line = typed, number
        elif typed != self.typed:
            first = "typed" if self.typed else "untyped"
            raise ConllFormatError(
                self.uri,
                number,
                f"untyped and typed tags mixed ({first} tags since line {self.style_line})",
                line,
            )
        if typed:
            if self.entity_type is not None:
                raise ConllFormatError(
                    self.uri,
                    number,
                    "--entity-type applies only to untyped B/I tags but this file is typed",
                    line,
                )
            return tag
        if self.entity_type is None:
            raise ConllFormatError(
                self.uri, number, "untyped B/I tags need an entity type: pass --entity-type", line
            )
        return f"{tag}-{self.entity_type}"
