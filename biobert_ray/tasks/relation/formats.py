"""Relation extraction data files: one reader per format, and the format recognised from the file.

Each example is one sentence whose two arguments are already marked in its text, and a label:

- ``biobert-tsv`` (GAD, EU-ADR as BioBERT ships them): ``sentence<TAB>label`` per line, or, in
  test files, a header ``index<TAB>sentence<TAB>label`` then ``index<TAB>sentence<TAB>label``. The
  arguments are *anonymised*: replaced by ``@GENE$`` and ``@DISEASE$`` (``@<TYPE>$``, BioBERT's
  marking); labels ``0`` and ``1``.
- ``chemprot-jsonl`` (ChemProt as SciBERT ships it): one JSON object per line with ``text`` and
  ``label``; the first argument in the sentence is wrapped in ``<< >>``, the second in ``[[ ]]``
  (*positional* markers, no types); 13 relation labels, positives only.
- ``pubtator`` (BC5CDR-CID): documents with mentions, concept ids and document-level relations between
  concepts (:mod:`.pubtator`). Its examples are the candidate pairs of :mod:`.candidates`, made and
  marked as annotation makes them (typed entity markers unless ``--marking`` says otherwise): two
  mentions within ``--max-sentence-distance`` sentences whose types are those of a relation type of
  the file (Chemical and Disease for CID), labelled with the relation when their concept pair is a
  relation of the document and ``false`` otherwise. Each example carries its document's concept pairs
  (:class:`DocumentPairs`) for document-level scoring.
- ``ddi-xml`` (DDI-2013): a directory, tar archive or file of DDI XML (:mod:`.ddi`); one example per
  listed pair, marked as annotation marks (typed entity markers unless ``--marking`` says otherwise),
  labelled with the pair's type or ``false``. ``uri#train``, ``uri#dev``, ``uri#test`` select a
  deterministic document split of it.

The format is recognised from the file's first line, or for DDI from the path or first element
(``--format`` names it instead). A malformed line stops the reader with :class:`RelationFormatError`
(or :class:`.pubtator.PubTatorError`, :class:`.ddi.DDIFormatError`) naming the file and line.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace

from biobert_ray import text as text_spans
from biobert_ray.lines import FormatError, numbered_lines
from biobert_ray.storage import open_input
from biobert_ray.tasks.relation import candidates, ddi, pubtator
from biobert_ray.tasks.relation.marking import ANONYMIZED_RE, POSITIONAL_RES

FORMATS = ("biobert-tsv", "chemprot-jsonl", "pubtator", "ddi-xml")
#: How each format marks the two arguments when the reader is not told (saved in a model's metadata).
MARKING = {
    "biobert-tsv": "anonymized",
    "chemprot-jsonl": "positional",
    "pubtator": "typed",
    "ddi-xml": "typed",
}
#: The label of a candidate pair of a file with offsets that is no relation of its document.
NO_RELATION = "false"


@dataclass(frozen=True)
class DocumentPairs:
    """Document-level truth of a candidate: its document, the concept pairs the candidate stands for,
    the document's relations ``(type, concept, concept)``, and the relations of earlier documents of
    the file that have no candidate at all (so that scoring counts them as missed)."""

    document: str
    concepts: frozenset[tuple[str, str, str]]
    gold: frozenset[tuple[str, str, str]]
    unreachable: tuple[tuple[str, str, str, str], ...] = ()


@dataclass(frozen=True)
class RelationExample:
    """A text with its two arguments marked, its label, where it was read (file, 1-based line), its
    ``marking``, the entity types of its arguments (when the file names them), and, for files with
    document-level relations, its :class:`DocumentPairs`."""

    text: str
    label: str
    source: str
    line: int
    marking: str = "anonymized"
    types: tuple[str, ...] = ()
    document: DocumentPairs | None = None


@dataclass(frozen=True)
class ReadOptions:
    """How a file with offsets becomes examples: the marking, sentence distance and per-sentence cap."""

    marking: str = "typed"
    max_sentence_distance: int = 0
    max_pairs_per_sentence: int = 200


class RelationFormatError(FormatError):
    """A line of a relation file that cannot be read; the message reads ``uri:line: reason: 'text'``."""


def sniff(uri: str) -> str:
    """The format of the file at ``uri`` from its first non-empty line, or DDI XML from its path or first
    element; a ``#train``/``#dev``/``#test`` selector is left aside (ValueError if none fits)."""
    path, _ = ddi.split_selector(uri)
    if ddi.recognises(path):
        return "ddi-xml"
    with open_input(path) as stream:
        for raw in stream:
            line = raw.decode("utf-8", "replace").lstrip("\ufeff").strip()
            if not line:
                continue
            if line.startswith("{"):
                return "chemprot-jsonl"
            if re.match(r"^[^\t|]+\|[ta]\|", line):
                return "pubtator"
            if "\t" in line:
                return "biobert-tsv"
            break
    raise ValueError(f"{uri}: not a relation file of a known format ({', '.join(FORMATS)}); pass --format")


def read_relations(
    uri: str, file_format: str = "auto", options: ReadOptions | None = None
) -> tuple[str, list[RelationExample]]:
    """``(format, examples)`` of the relation file at ``uri`` (any fsspec URI; ``.gz`` decompressed);
    ``options`` apply to files with offsets."""
    if file_format == "auto":
        file_format = sniff(uri)
    if file_format not in FORMATS:
        raise ValueError(f"unknown relation format {file_format!r}; known: {', '.join(FORMATS)}")
    if file_format == "ddi-xml":
        return file_format, _read_ddi(uri, options or ReadOptions())
    if ddi.split_selector(uri)[1]:
        raise ValueError(f"{uri}: a #train/#dev/#test split selects documents of DDI XML only")
    if file_format == "pubtator":
        return file_format, _read_pubtator(uri, options or ReadOptions())
    reader = _read_tsv if file_format == "biobert-tsv" else _read_jsonl
    return file_format, reader(uri)


def _lines(uri: str) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every non-empty line, decoded as UTF-8."""
    return ((number, line) for number, line in numbered_lines(uri, RelationFormatError) if line.strip())


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
        types = tuple(m[1:-1] for m in ANONYMIZED_RE.findall(text))
        examples.append(RelationExample(text, label, uri, number, "anonymized", types))
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
        if any(len(pattern.findall(text)) != 1 for pattern in POSITIONAL_RES):
            raise RelationFormatError(uri, number, "expected one << >> and one [[ ]] argument", line)
        examples.append(RelationExample(text, str(record["label"]), uri, number, "positional"))
    return examples


def _read_ddi(uri: str, options: ReadOptions) -> list[RelationExample]:
    """One example per pair of DDI XML (:mod:`.ddi`), labelled with its type or :data:`NO_RELATION`."""
    return [
        RelationExample(p.text, p.relation or NO_RELATION, p.source, p.line, options.marking, p.types)
        for p in ddi.read_ddi(uri, options.marking)
    ]


def _read_pubtator(uri: str, options: ReadOptions) -> list[RelationExample]:
    """The candidate pairs of every document of a PubTator file, labelled from its relations."""
    documents = pubtator.read_pubtator(uri)
    roles = _relation_roles(uri, documents)
    examples: list[RelationExample] = []
    unreachable: list[tuple[str, str, str, str]] = []
    for doc in documents:
        found = _document_examples(uri, doc, roles, options, tuple(unreachable))
        if found:
            unreachable = []
        else:
            unreachable += [(doc.pmid, *relation) for relation in doc.relations]
        examples += found
    if unreachable and examples:  # documents after the last one with candidates
        last = examples[-1]
        document = replace(last.document, unreachable=last.document.unreachable + tuple(unreachable))
        examples[-1] = replace(last, document=document)
    return examples


def _relation_roles(uri: str, documents: list[pubtator.PubTatorDocument]) -> dict[str, tuple[str, str]]:
    """The entity types of the two arguments of each relation type of the file (``CID``: Chemical,
    Disease), from the mentions holding the related concepts."""
    roles: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for doc in documents:
        types = defaultdict(set)
        for mention in doc.mentions:
            for concept in mention.concepts:
                types[concept].add(mention.entity_type)
        for kind, first, second in doc.relations:
            roles[kind] |= {(a, b) for a in types.get(first, ()) for b in types.get(second, ())}
    if not roles:
        raise ValueError(f"{uri}: no relation between annotated concepts; not a relation corpus")
    ambiguous = {kind: sorted(found) for kind, found in roles.items() if len(found) != 1}
    if ambiguous:
        raise ValueError(f"{uri}: relation types whose argument types vary: {ambiguous}")
    return {kind: next(iter(found)) for kind, found in roles.items()}


def _document_examples(
    uri: str,
    doc: pubtator.PubTatorDocument,
    roles: dict[str, tuple[str, str]],
    options: ReadOptions,
    unreachable: tuple[tuple[str, str, str, str], ...],
) -> list[RelationExample]:
    """The labelled candidate pairs of one document (module docstring)."""
    gold = frozenset(doc.relations)
    argument_types = {frozenset(pair) for pair in roles.values()}
    examples = []
    for section, body in (("title", doc.title), ("abstract", doc.abstract)):
        sentences = text_spans.split_sentences(body)
        mentions = [
            candidates.Mention(
                m.text, m.entity_type, m.start, m.end, candidates.sentence_of(sentences, m.start), m.concepts
            )
            for m in doc.mentions
            if m.section == section
        ]
        found, _ = candidates.pairs(
            mentions,
            lambda a, b: frozenset((a.entity_type, b.entity_type)) in argument_types,
            options.max_sentence_distance,
            options.max_pairs_per_sentence,
        )
        for a, b in found:
            label, concepts = _label(a, b, roles, gold)
            types = (a.entity_type, b.entity_type)
            text = candidates.marked_text(body, sentences, a, b, types, options.marking)
            pairs = DocumentPairs(doc.pmid, concepts, gold, unreachable if not examples else ())
            examples.append(RelationExample(text, label, uri, doc.line, options.marking, types, pairs))
    return examples


def _label(
    a: candidates.Mention, b: candidates.Mention, roles: dict[str, tuple[str, str]], gold: frozenset
) -> tuple[str, frozenset[tuple[str, str, str]]]:
    """The label of the pair ``a``, ``b`` (a relation of the document between their concepts, else
    :data:`NO_RELATION`) and the ``(type, concept, concept)`` triples it could stand for."""
    stands_for = set()
    for kind, (first, second) in roles.items():
        for x, y in ((a, b), (b, a)):
            if (x.entity_type, y.entity_type) == (first, second):
                stands_for |= {(kind, c, d) for c in x.concepts for d in y.concepts}
    hits = sorted({kind for kind, *_ in stands_for & gold})
    return (hits[0] if hits else NO_RELATION), frozenset(stands_for)
