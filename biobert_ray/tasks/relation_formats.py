"""Relation extraction data files: one reader per format, and the format recognised from the file.

Each example is one sentence whose two arguments are already marked in its text, and a label:

- ``biobert-tsv`` (GAD, EU-ADR as BioBERT ships them): ``sentence<TAB>label`` per line, or, in
  test files, a header ``index<TAB>sentence<TAB>label`` then ``index<TAB>sentence<TAB>label``. The
  arguments are *anonymised*: replaced by ``@GENE$`` and ``@DISEASE$`` (``@<TYPE>$``, BioBERT's
  marking); labels ``0`` and ``1``.
- ``chemprot-jsonl`` (ChemProt as SciBERT ships it): one JSON object per line with ``text`` and
  ``label``; the first argument in the sentence is wrapped in ``<< >>``, the second in ``[[ ]]``
  (*positional* markers, no types); 13 relation labels, positives only.

The format is recognised from the file's first line (``--format`` names it instead). A malformed line
stops the reader with :class:`RelationFormatError` naming the file and line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from biobert_ray.storage import open_input

FORMATS = ("biobert-tsv", "chemprot-jsonl")
#: How each format marks the two arguments in the text (saved in a model's metadata).
MARKING = {"biobert-tsv": "anonymized", "chemprot-jsonl": "positional"}
#: The marks of each marking: anonymised arguments, or the brackets around each argument.
ANONYMIZED_RE = re.compile(r"@[A-Z][A-Z0-9_-]*\$")
POSITIONAL_MARKS = (("<<", ">>"), ("[[", "]]"))


@dataclass(frozen=True)
class RelationExample:
    """A sentence with its two arguments marked, its label, and where it was read (file, 1-based line)."""

    text: str
    label: str
    source: str
    line: int


class RelationFormatError(ValueError):
    """A line of a relation file that cannot be read; the message reads ``uri:line: reason: 'text'``."""

    def __init__(self, uri: str, line: int, reason: str, text: str) -> None:
        super().__init__(f"{uri}:{line}: {reason}: {text[:200]!r}")


def sniff(uri: str) -> str:
    """The format of the file at ``uri`` from its first non-empty line (ValueError if none fits)."""
    with open_input(uri) as stream:
        for raw in stream:
            line = raw.decode("utf-8", "replace").lstrip("\ufeff").strip()
            if not line:
                continue
            if line.startswith("{"):
                return "chemprot-jsonl"
            if "\t" in line:
                return "biobert-tsv"
            break
    raise ValueError(f"{uri}: not a relation file of a known format ({', '.join(FORMATS)}); pass --format")


def read_relations(uri: str, file_format: str = "auto") -> tuple[str, list[RelationExample]]:
    """``(format, examples)`` of the relation file at ``uri`` (any fsspec URI; ``.gz`` decompressed)."""
    if file_format == "auto":
        file_format = sniff(uri)
    if file_format not in FORMATS:
        raise ValueError(f"unknown relation format {file_format!r}; known: {', '.join(FORMATS)}")
    reader = _read_tsv if file_format == "biobert-tsv" else _read_jsonl
    return file_format, reader(uri)


def _lines(uri: str):
    """``(line number, text)`` of every non-empty line, decoded as UTF-8."""
    with open_input(uri) as stream:
        for number, raw in enumerate(stream, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise RelationFormatError(uri, number, f"not UTF-8 ({err.reason})", repr(raw[:80])) from None
            line = line.removeprefix("\ufeff") if number == 1 else line
            if line.strip():
                yield number, line


def _read_tsv(uri: str) -> list[RelationExample]:
    examples = []
    for number, line in _lines(uri):
        columns = line.split("\t")
        if number == 1 and columns == ["index", "sentence", "label"]:
            continue
        if len(columns) not in (2, 3):
            raise RelationFormatError(
                uri, number, f"expected 2 or 3 tab-separated columns, found {len(columns)}", line
            )
        text, label = columns[-2], columns[-1].strip()
        if len(ANONYMIZED_RE.findall(text)) != 2:
            raise RelationFormatError(uri, number, "expected two anonymised arguments such as @GENE$", line)
        if not label:
            raise RelationFormatError(uri, number, "empty label", line)
        examples.append(RelationExample(text, label, uri, number))
    return examples


def _read_jsonl(uri: str) -> list[RelationExample]:
    examples = []
    for number, line in _lines(uri):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise RelationFormatError(uri, number, f"not JSON ({err.msg})", line) from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not record.get("label"):
            raise RelationFormatError(uri, number, "expected an object with text and label", line)
        text = record["text"]
        if any(text.count(mark) != 1 for pair in POSITIONAL_MARKS for mark in pair):
            raise RelationFormatError(uri, number, "expected one << >> and one [[ ]] argument", line)
        examples.append(RelationExample(text, str(record["label"]), uri, number))
    return examples


def argument_spans(text: str, marking: str) -> list[tuple[int, int]]:
    """Character spans of the two marked arguments of ``text`` (marks included), in text order."""
    if marking == "anonymized":
        return [m.span() for m in ANONYMIZED_RE.finditer(text)]
    spans = []
    for opening, closing in POSITIONAL_MARKS:
        start = text.find(opening)
        end = text.find(closing, start + len(opening))
        if start >= 0 and end >= 0:
            spans.append((start, end + len(closing)))
    return sorted(spans)
