"""The questions ``annotate qa`` answers over a corpus: JSON lines or a BioASQ JSON file.

- **JSON lines**: one object per line, ``{"id": "q1", "question": "...", "type": "factoid",
  "pmids": [123, 456]}``; ``type`` (``factoid``, ``list``, ``yesno``; default ``factoid``) and
  ``pmids`` (the articles to read, which skips retrieval) are optional. Blank lines are skipped.
- **BioASQ JSON** (``{"questions": [{"id", "body", "type", "documents", ...}]}``): its ``documents``
  (PubMed URLs) become the question's PMIDs, as in BioASQ's phase B, where the relevant articles are
  given; its summary questions are kept (type ``summary``) and get an ``answers`` row with a note, as
  ``annotate qa`` does not write summaries.

A malformed line (not JSON, no ``id`` or ``question``, an unknown type, PMIDs that are not integers, an
id seen before) stops the reader with :class:`~biobert_ray.lines.FormatError` naming the file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from biobert_ray.lines import FormatError, numbered_lines
from biobert_ray.tasks.qa.formats import bioasq_questions, load_json, sniff, snippet_pmid

TYPES = ("factoid", "list", "yesno")
#: BioASQ JSON also has summary questions (answered with a note only).
BIOASQ_TYPES = (*TYPES, "summary")


@dataclass(frozen=True)
class Question:
    """A question to answer over a corpus: its id, text, type and, when given, the PMIDs to read."""

    id: str
    text: str
    kind: str = "factoid"
    pmids: tuple[int, ...] = ()


def _from_line(uri: str, number: int, line: str) -> Question:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise FormatError(uri, number, f"not JSON ({err.msg})", line) from None
    if not isinstance(record, dict) or not isinstance(record.get("id"), str | int):
        raise FormatError(uri, number, "no 'id'", line)
    if not isinstance(record.get("question"), str) or not record["question"].strip():
        raise FormatError(uri, number, "no 'question' text", line)
    kind = record.get("type", "factoid")
    if kind not in TYPES:
        raise FormatError(uri, number, f"type {kind!r} is not one of {', '.join(TYPES)}", line)
    pmids = record.get("pmids") or []
    if not isinstance(pmids, list) or not all(isinstance(p, int) or str(p).isdigit() for p in pmids):
        raise FormatError(uri, number, "'pmids' must be a list of PubMed ids", line)
    return Question(str(record["id"]), record["question"].strip(), kind, tuple(int(p) for p in pmids))


def _document_pmids(urls: list) -> tuple[int, ...]:
    """The PMIDs of a BioASQ question's document URLs (``.../pubmed/<pmid>``)."""
    found = (snippet_pmid({"document": url}) for url in urls if isinstance(url, str))
    return tuple(pmid for pmid in found if pmid is not None)


def read_questions(uri: str) -> list[Question]:
    """The questions of a JSON-lines or BioASQ JSON file (module docstring), in file order."""
    try:
        document = load_json(uri)
    except ValueError:
        document = None  # JSON lines (or a malformed file, which the line reader names)
    if sniff(document) == "bioasq":
        return [
            Question(q["id"], q["body"], q["type"], _document_pmids(q.get("documents") or ()))
            for q in bioasq_questions(document, uri, BIOASQ_TYPES)
        ]
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for number, line in numbered_lines(uri):
        if not line.strip():
            continue
        question = _from_line(uri, number, line)
        if question.id in seen:
            raise FormatError(uri, number, f"id {question.id!r} already on line {seen[question.id]}", line)
        seen[question.id] = number
        questions.append(question)
    return questions
