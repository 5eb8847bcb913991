"""Question answering files: SQuAD-format files and BioASQ JSON, read into question-context examples.

- ``squad`` (SQuAD v1.1, BioBERT's BioASQ files, ``biobert-ray data bioasq-train``'s output):
  ``{"data": [{"paragraphs": [{"context", "qas": [{"id", "question", "answers": [{"text",
  "answer_start"}]}]}]}]}``; one example per ``qas`` entry. A BioASQ id ``<24 hex>_<NNN>`` (one
  question, one of its snippets) belongs to the question ``<24 hex>``; other ids are questions of
  their own. An entry may name its ``type`` (``factoid``, ``list``); without one it is factoid. Test
  files carry no answers: their gold answers come from a BioASQ golden file (``--gold``).
- ``bioasq`` (BioASQ golden files, ``{"questions": [{"id", "type", "body", "exact_answer",
  "snippets": [{"text", "document", ...}]}]}``): one example per snippet of each factoid and list
  question, with the question's exact answer as gold. Yes/no and summary questions are not span
  questions and are left out (counted by :func:`read_examples`).

The format is recognised from the document's top-level key. An answer whose text is not the context's
text at its offset, or a record missing a field, stops the reader with :class:`QaFormatError` naming
the file and the record.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from biobert_ray.storage import open_input

FORMATS = ("squad", "bioasq")
#: Question types answered by spans of the context.
SPAN_TYPES = ("factoid", "list")
_BIOASQ_ID = re.compile(r"^([0-9a-f]{24})_\d+(?:_\d+)?$")
_PMID = re.compile(r"/pubmed/(\d+)")


class QaFormatError(ValueError):
    """A record of a question answering file that cannot be read; names the file and the record."""

    def __init__(self, uri: str, record: str, reason: str) -> None:
        super().__init__(f"{uri}: {record}: {reason}")


@dataclass(frozen=True)
class QaExample:
    """One question with one context (an abstract or a snippet).

    ``answers`` are the ``(text, char_start)`` spans of the context that answer it (training files);
    ``gold`` the question's exact answer as entities, each a tuple of synonyms (scoring; None when the
    file has none); ``kind`` the question type; ``pmid`` the context's article when known, and in
    corpus annotation ``section`` (``title`` or ``abstract``) and the article's ``retrieval_rank``.
    """

    id: str
    question_id: str
    question: str
    context: str
    kind: str = "factoid"
    answers: tuple[tuple[str, int], ...] = ()
    gold: tuple[tuple[str, ...], ...] | None = None
    pmid: int | None = None
    section: str = ""
    retrieval_rank: int | None = None


def question_id(entry_id: str) -> str:
    """The question an entry id belongs to (BioASQ ``<24 hex>_<NNN>`` -> ``<24 hex>``)."""
    match = _BIOASQ_ID.match(entry_id)
    return match.group(1) if match else entry_id


def load_json(uri: str) -> Any:
    """The JSON document at ``uri`` (any fsspec URI, ``.gz`` decompressed); QaFormatError if not JSON."""
    with open_input(uri) as stream:
        raw = stream.read()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise QaFormatError(uri, "document", f"not JSON ({err})") from None


def sniff(document: Any) -> str | None:
    """``squad`` or ``bioasq`` from a parsed document's top-level key, or None."""
    if isinstance(document, dict) and isinstance(document.get("data"), list):
        return "squad"
    if isinstance(document, dict) and isinstance(document.get("questions"), list):
        return "bioasq"
    return None


def _field(record: dict, key: str, kind: type, uri: str, name: str) -> Any:
    value = record.get(key) if isinstance(record, dict) else None
    if not isinstance(value, kind):
        raise QaFormatError(uri, name, f"missing or malformed {key!r}")
    return value


def squad_examples(document: dict, uri: str) -> list[QaExample]:
    """The examples of a parsed SQuAD-format document read from ``uri``."""
    examples = []
    for a, article in enumerate(_field(document, "data", list, uri, "document")):
        for p, paragraph in enumerate(_field(article, "paragraphs", list, uri, f"data[{a}]")):
            where = f"data[{a}].paragraphs[{p}]"
            context = _field(paragraph, "context", str, uri, where)
            for qa in _field(paragraph, "qas", list, uri, where):
                entry = _field(qa, "id", str, uri, f"{where}.qas")
                name = f"question {entry}"
                answers = []
                for answer in qa.get("answers") or ():
                    text, start = answer.get("text"), answer.get("answer_start")
                    if not isinstance(text, str) or not isinstance(start, int):
                        raise QaFormatError(uri, name, f"malformed answer {answer!r}")
                    if context[start : start + len(text)] != text:
                        found = context[start : start + len(text)]
                        raise QaFormatError(uri, name, f"answer {text!r} is {found!r} at offset {start}")
                    answers.append((text, start))
                kind = qa.get("type", "factoid")
                if kind not in SPAN_TYPES:
                    raise QaFormatError(uri, name, f"type {kind!r} is not a span question type {SPAN_TYPES}")
                examples.append(
                    QaExample(
                        id=entry,
                        question_id=question_id(entry),
                        question=_field(qa, "question", str, uri, name),
                        context=context,
                        kind=kind,
                        answers=tuple(answers),
                    )
                )
    return examples


def gold_answers(question: dict, uri: str) -> tuple[tuple[str, ...], ...]:
    """The exact answer of a BioASQ factoid or list question as entities of synonyms."""
    exact = question.get("exact_answer")
    if not isinstance(exact, list) or not all(isinstance(e, list | str) for e in exact):
        raise QaFormatError(uri, f"question {question.get('id')}", f"malformed exact_answer {exact!r}")
    return tuple((e,) if isinstance(e, str) else tuple(str(s) for s in e) for e in exact)


def bioasq_questions(document: dict, uri: str, types: Sequence[str]) -> list[dict]:
    """The questions of a parsed BioASQ document whose type is one of ``types``, checked."""
    questions = []
    for i, question in enumerate(_field(document, "questions", list, uri, "document")):
        qid = _field(question, "id", str, uri, f"questions[{i}]")
        kind = _field(question, "type", str, uri, f"question {qid}")
        _field(question, "body", str, uri, f"question {qid}")
        if kind in types:
            questions.append(question)
    return questions


def snippet_pmid(snippet: dict) -> int | None:
    """The PMID of a snippet's ``document`` URL (``.../pubmed/<pmid>``), or None."""
    match = _PMID.search(snippet.get("document") or "")
    return int(match.group(1)) if match else None


def bioasq_examples(document: dict, uri: str) -> list[QaExample]:
    """One example per snippet of the factoid and list questions of a parsed BioASQ golden document."""
    examples = []
    for question in bioasq_questions(document, uri, SPAN_TYPES):
        gold = gold_answers(question, uri)
        for s, snippet in enumerate(question.get("snippets") or ()):
            text = _field(snippet, "text", str, uri, f"question {question['id']} snippet {s}")
            examples.append(
                QaExample(
                    id=f"{question['id']}_{s:03d}",
                    question_id=question["id"],
                    question=question["body"],
                    context=text,
                    kind=question["type"],
                    gold=gold,
                    pmid=snippet_pmid(snippet),
                )
            )
    return examples


def read_examples(uri: str, file_format: str = "auto", gold: str | None = None) -> list[QaExample]:
    """The examples of a SQuAD-format or BioASQ file (``file_format``, or ``auto``: recognised).

    With ``gold`` (a BioASQ golden file), each example of a question found there takes its exact
    answer and type from it; examples of the questions of other types (yes/no, summary) are dropped.
    """
    document = load_json(uri)
    found = sniff(document) if file_format == "auto" else file_format
    if found is None:
        raise QaFormatError(
            uri, "document", "neither SQuAD ({'data': ...}) nor BioASQ ({'questions': ...}) JSON"
        )
    examples = squad_examples(document, uri) if found == "squad" else bioasq_examples(document, uri)
    if gold:
        examples = with_gold(examples, gold)
    return examples


def with_gold(examples: Sequence[QaExample], gold_uri: str) -> list[QaExample]:
    """``examples`` with the exact answers and types of the golden file's questions; an example whose
    question is not there raises QaFormatError, one of a yes/no or summary question is dropped."""
    document = load_json(gold_uri)
    all_questions = bioasq_questions(document, gold_uri, ("factoid", "list", "yesno", "summary"))
    by_id = {q["id"]: q for q in all_questions}
    result = []
    for example in examples:
        question = by_id.get(example.question_id)
        if question is None:
            raise QaFormatError(
                gold_uri, f"question {example.question_id}", f"not found (asked by {example.id})"
            )
        if question["type"] in SPAN_TYPES:
            gold = gold_answers(question, gold_uri)
            result.append(replace(example, kind=question["type"], gold=gold))
    return result


def type_counts(examples: Sequence[QaExample]) -> Counter:
    """Distinct questions per type among ``examples``."""
    return Counter(kind for _, kind in {(e.question_id, e.kind) for e in examples})
