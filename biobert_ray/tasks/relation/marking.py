"""Argument marking: how the two arguments of a relation candidate are shown to the model.

One step, shared by the readers of labelled files with offsets (PubTator, DDI XML) and by
annotation, so that a model sees candidates marked exactly as in training. A model's metadata
records its ``marking``:

- ``anonymized`` (BioBERT's, which GAD and EU-ADR require): each argument is *replaced* by its type,
  ``@GENE$``, ``@DISEASE$`` (``@<TYPE>$``, the type upper-cased);
- ``positional`` (SciBERT's ChemProt): the first argument in the text is wrapped in ``<< >>``, the
  second in ``[[ ]]``; no types;
- ``typed`` (typed entity markers, for sets with offsets): each argument is kept and wrapped in
  markers naming its position and type, ``<E1:Chemical> lithium </E1:Chemical> ... <E2:Disease>
  toxicity </E2:Disease>``. The markers are added to the tokenizer as tokens of their own
  (:func:`marker_tokens`), so each is one sub-token whose embedding is learnt in fine-tuning.

The first argument is always the one that starts first in the text.
"""

from __future__ import annotations

import re

MARKINGS = ("anonymized", "positional", "typed")
ANONYMIZED_RE = re.compile(r"@[A-Z][A-Z0-9_-]*\$")
POSITIONAL_MARKS = (("<<", ">>"), ("[[", "]]"))
# a positional argument as :func:`marks` writes it, ``<< text >>`` or ``[[ text ]]``; a bare ``>>`` in
# the sentence (ChemProt's "PGE2, PGE1>STA2>>17-phenyl-trinor-PGE2") is not a mark
POSITIONAL_RES = tuple(
    re.compile(f"{re.escape(before)} .+? {re.escape(after)}", re.DOTALL) for before, after in POSITIONAL_MARKS
)
TYPED_RE = re.compile(r"<(E[12]):([^<>\s]+)>.*?</\1:\2>", re.DOTALL)


def marks(position: int, entity_type: str, marking: str) -> tuple[str, str]:
    """The text put before and after argument ``position`` (1 or 2) of ``entity_type``.

    For ``anonymized`` the argument itself is replaced by the first of the two (the second is empty).
    """
    if marking == "anonymized":
        return f"@{entity_type.upper()}$", ""
    if marking == "positional":
        opening, closing = POSITIONAL_MARKS[position - 1]
        return f"{opening} ", f" {closing}"
    if marking == "typed":
        return f"<E{position}:{entity_type}> ", f" </E{position}:{entity_type}>"
    raise ValueError(f"unknown marking {marking!r}; known: {', '.join(MARKINGS)}")


def mark(text: str, first: tuple[int, int, str], second: tuple[int, int, str], marking: str) -> str:
    """``text`` with its two arguments marked; each is ``(start, end, entity type)``, offsets into ``text``.

    The arguments must not overlap; ``first`` is the one that starts first.
    """
    if not first[1] <= second[0]:
        raise ValueError(f"arguments overlap or are out of order: {first} and {second}")
    pieces = [text[: first[0]]]
    followers = (text[first[1] : second[0]], text[second[1] :])
    for position, (start, end, entity_type), after in zip((1, 2), (first, second), followers, strict=True):
        before, behind = marks(position, entity_type, marking)
        pieces += [before, "" if marking == "anonymized" else text[start:end], behind, after]
    return "".join(pieces)


def argument_spans(text: str, marking: str) -> list[tuple[int, int]]:
    """Character spans of the two marked arguments of ``text`` (marks included), in text order."""
    if marking == "anonymized":
        return [m.span() for m in ANONYMIZED_RE.finditer(text)]
    if marking == "typed":
        return [m.span() for m in TYPED_RE.finditer(text)]
    return sorted(found.span() for pattern in POSITIONAL_RES if (found := pattern.search(text)))


def argument_types(text: str, marking: str) -> list[str]:
    """The entity types the marks of ``text`` name, in text order (none for ``positional``)."""
    if marking == "anonymized":
        return [m[1:-1] for m in ANONYMIZED_RE.findall(text)]
    if marking == "typed":
        return [m.group(2) for m in TYPED_RE.finditer(text)]
    return []


def marker_tokens(entity_types: list[str], marking: str) -> list[str]:
    """The tokens a tokenizer gains for ``marking`` of arguments of ``entity_types`` (typed markers only)."""
    if marking != "typed":
        return []
    return [mark.strip() for t in sorted(entity_types) for p in (1, 2) for mark in marks(p, t, marking)]
