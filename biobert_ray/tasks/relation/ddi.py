"""DDI-2013 corpus XML (DDIExtraction 2013), read strictly: one marked pair per ``<pair>`` element.

The input is any fsspec URI: a directory of XML files (read recursively), a ``.tar``, ``.tar.gz`` or
``.tgz`` archive of them (read as a stream), or one XML file. Each file is one document::

    <document id="DDI-MedLine.d79">
      <sentence id="...s1" text="Concurrent administration of indinavir and didanosine ...">
        <entity id="...s1.e0" charOffset="29-37" type="drug" text="indinavir"/>
        <pair id="...s1.p0" e1="...s1.e0" e2="...s1.e1" ddi="true" type="mechanism"/>

``charOffset`` is ``start-end`` into the sentence's text with ``end`` inclusive, or several such
fragments joined by ``;`` for a discontinuous entity (``"150-153;187-195"``, "loop ... diuretics"),
which is marked from its first start to its last end. An entity's fragments must spell its ``text``
(whitespace aside). A pair's two entities are marked in the sentence (:func:`.marking.mark`, the first
in the text as the first argument, their types as in the file: drug, brand, group, drug_n); its
relation is its ``type`` (effect, mechanism, advise, int) when ``ddi="true"``, none otherwise.

Two entities that overlap cannot both be marked (the corpus has such pairs, e.g. a discontinuous
"(R)- or (S)-warfarin" and "(S)-warfarin"): those pairs are left out, never silently: each read
warns once (:class:`OverlappingPairsWarning`) with their count and each file's pair ids. Anything
else in the documents read that cannot be read (XML that is not well formed, a missing attribute,
offsets that do not spell the entity's text, a pair naming an entity not in its sentence) stops the
reader with :class:`DDIFormatError` naming the file, the line and the element id. One known slip of
the training XML is corrected (:data:`ERRATA`).

**Document split.** DDI is only available here as its training set, so dev and test sets are carved
out of it by document: ``uri#train``, ``uri#dev`` and ``uri#test`` read the documents whose
bucket, the first 8 hex digits of ``sha256(document id)`` as an integer mod 10, is 2-9, 1 and 0
respectively (80/10/10 of the documents, near enough: 576, 70 and 68 of the 714 training documents);
a document is in the same split on every machine and in every run. Without a selector
every document is read. Every DDI score must say "document split by sha256(id) mod 10 from the
training XML".
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

from biobert_ray.storage import filesystem, join, open_input
from biobert_ray.tasks.relation import marking

SPLITS = ("train", "dev", "test")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
RELATIONS = ("effect", "mechanism", "advise", "int")
#: Entity offsets of the training XML that do not spell their text, with the offsets that do:
#: ``(entity id, charOffset in the file) -> charOffset``.
ERRATA = {
    # Eszopiclone_ddi.xml: the offsets of "(R)-warfarin" (in "of (R)- or (S)-warfarin") are one too low
    ("DDI-DrugBank.d216.s16.e2", "95-98;107-114"): "96-99;108-115",
}
_OFFSETS_RE = re.compile(r"^\d+-\d+(;\d+-\d+)*$")


class DDIFormatError(ValueError):
    """An element of a DDI file that cannot be read; the message reads ``file:line: reason``."""

    def __init__(self, file: str, line: int | None, reason: str) -> None:
        super().__init__(f"{file}:{line}: {reason}" if line else f"{file}: {reason}")


class OverlappingPairsWarning(UserWarning):
    """Pairs of a DDI file left out because their two entities overlap (the message names them)."""


@dataclass(frozen=True)
class DDIPair:
    """One ``<pair>``: the sentence's text with its two entities marked, its relation (None for
    ``ddi="false"``), the entity types in text order, the file it was read from (its path inside the
    directory or archive, or the URI of a lone file) and the pair element's line (lxml's: the line its
    start tag ends on)."""

    text: str
    relation: str | None
    types: tuple[str, str]
    source: str
    line: int


def split_selector(uri: str) -> tuple[str, str | None]:
    """``uri`` without a ``#train``/``#dev``/``#test`` suffix, and that split (None when there is none)."""
    path, hash_mark, split = uri.rpartition("#")
    return (path, split) if hash_mark and split in SPLITS else (uri, None)


def document_split(document_id: str) -> str:
    """The split of a document: ``test`` when the first 8 hex digits of ``sha256(document_id)``, as an
    integer, are 0 mod 10, ``dev`` when 1, else ``train``."""
    bucket = int(hashlib.sha256(document_id.encode()).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "dev" if bucket == 1 else "train"


def recognises(uri: str) -> bool:
    """Whether ``uri`` (no split selector) is DDI input: a directory, a tar archive, or an XML file whose
    first element is ``<document>``."""
    fs, inner = filesystem(uri)
    if fs.isdir(inner) or uri.endswith(TAR_SUFFIXES):
        return True
    try:
        with open_input(uri) as stream:
            _, first = next(iter(etree.iterparse(stream, events=("start",), resolve_entities=False)))
    except (etree.XMLSyntaxError, StopIteration):
        return False
    return first.tag == "document"


def read_ddi(uri: str, style: str) -> list[DDIPair]:
    """The pairs of the DDI files at ``uri`` (with an optional split selector), marked in ``style``, in
    file-name order and then as each file lists them; one :class:`OverlappingPairsWarning` names the
    pairs left out (module docstring)."""
    path, split = split_selector(uri)
    pairs: list[DDIPair] = []
    left_out: dict[str, list[tuple[str, str | None]]] = {}
    for name, content in _files(path):
        where = path if name == path else join(path, name)
        document = _parse(where, content)
        if split is None or document_split(document.get("id")) == split:
            found, overlapping = _document_pairs(where, name, document, style)
            pairs += found
            if overlapping:
                left_out[name] = overlapping
    if left_out:
        skipped = [relation for overlapping in left_out.values() for _, relation in overlapping]
        named = "; ".join(f"{name}: {', '.join(i for i, _ in found)}" for name, found in left_out.items())
        warnings.warn(
            f"{uri}: left out {len(skipped)} pair(s) ({sum(r is not None for r in skipped)} of them "
            f"relations) whose entities overlap and cannot be marked: {named}",
            OverlappingPairsWarning,
            stacklevel=3,
        )
    return pairs


def _files(path: str) -> Iterator[tuple[str, bytes]]:
    """``(name, content)`` of each XML file at ``path``, sorted by name: the name is the file's path inside
    the directory or archive, or ``path`` itself for a lone file. A directory or archive without one is
    a ``FileNotFoundError``."""
    fs, inner = filesystem(path)
    if fs.isdir(inner):
        root = inner.rstrip("/") + "/"
        found = sorted(p for p in fs.find(inner) if p.endswith(".xml"))
        if not found:
            raise FileNotFoundError(f"{path}: no .xml files in the directory")
        for file in found:
            with fs.open(file, "rb") as stream:
                yield file.removeprefix(root), stream.read()
    elif path.endswith(TAR_SUFFIXES):
        with open_input(path) as stream, tarfile.open(fileobj=stream, mode="r|*") as archive:
            members = [
                (member.name, archive.extractfile(member).read())
                for member in archive
                if member.isfile() and member.name.endswith(".xml")
            ]
        if not members:
            raise FileNotFoundError(f"{path}: no .xml files in the archive")
        yield from sorted(members)
    else:
        with open_input(path) as stream:
            yield path, stream.read()


def _parse(where: str, content: bytes) -> etree._Element:
    """The ``<document>`` element of one file, its id checked."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        document = etree.fromstring(content, parser)
    except etree.XMLSyntaxError as err:
        raise DDIFormatError(where, err.lineno, f"not well-formed XML ({err.msg})") from None
    if document.tag != "document" or not document.get("id"):
        raise DDIFormatError(where, document.sourceline, "expected a <document id=...> element")
    return document


def _attributes(where: str, element: etree._Element, *names: str) -> list[str]:
    """The values of the attributes ``names`` of ``element``; each must be present."""
    missing = [name for name in names if element.get(name) is None]
    if missing:
        label = element.get("id") or element.tag
        raise DDIFormatError(where, element.sourceline, f"{label}: no {', '.join(missing)} attribute")
    return [element.get(name) for name in names]


def _document_pairs(
    where: str, name: str, document: etree._Element, style: str
) -> tuple[list[DDIPair], list[tuple[str, str | None]]]:
    """The marked pairs of one document, and the ``(pair id, relation)`` of those left out because their
    entities overlap."""
    pairs, overlapping = [], []
    for sentence in document.iter("sentence"):
        _, text = _attributes(where, sentence, "id", "text")
        entities = {}
        for entity in sentence.iter("entity"):
            entity_id, offsets, kind, spelled = _attributes(where, entity, "id", "charOffset", "type", "text")
            start, end = _span(where, entity, text, ERRATA.get((entity_id, offsets), offsets), spelled)
            entities[entity_id] = (start, end, kind)
        for pair in sentence.iter("pair"):
            pair_id, first_id, second_id, ddi = _attributes(where, pair, "id", "e1", "e2", "ddi")
            if first_id not in entities or second_id not in entities:
                raise DDIFormatError(where, pair.sourceline, f"{pair_id}: an entity not in its sentence")
            relation = _relation(where, pair, ddi)
            first, second = sorted((entities[first_id], entities[second_id]))
            if first[1] > second[0]:
                overlapping.append((pair_id, relation))
                continue
            marked = marking.mark(text, first, second, style)
            pairs.append(DDIPair(marked, relation, (first[2], second[2]), name, pair.sourceline))
    return pairs, overlapping


def _span(where: str, entity: etree._Element, text: str, offsets: str, spelled: str) -> tuple[int, int]:
    """``[start, end)`` of an entity in its sentence's ``text``, from its first start to its last end,
    checked: its fragments must spell ``spelled`` (whitespace aside)."""
    label = f"{entity.get('id')}: charOffset {offsets!r}"
    if not _OFFSETS_RE.match(offsets):
        raise DDIFormatError(where, entity.sourceline, f"{label} is not start-end[;start-end...]")
    fragments = [tuple(int(n) for n in piece.split("-")) for piece in offsets.split(";")]
    if any(not 0 <= start <= end < len(text) for start, end in fragments):
        raise DDIFormatError(where, entity.sourceline, f"{label} lies outside its sentence")
    found = "".join(text[start : end + 1] for start, end in fragments)
    if "".join(found.split()) != "".join(spelled.split()):
        reason = f"{label} spells {found!r}, not its text {spelled!r}"
        raise DDIFormatError(where, entity.sourceline, reason)
    return fragments[0][0], fragments[-1][1] + 1


def _relation(where: str, pair: etree._Element, ddi: str) -> str | None:
    """The relation of a pair: its ``type`` when ``ddi="true"``, None when ``ddi="false"``."""
    if ddi == "false":
        return None
    relation = pair.get("type")
    if ddi != "true" or relation not in RELATIONS:
        reason = f'{pair.get("id")}: expected ddi="false", or ddi="true" with a type in {RELATIONS}'
        raise DDIFormatError(where, pair.sourceline, f"{reason}; found ddi={ddi!r} type={relation!r}")
    return relation
