"""Candidate pairs: which two mentions of a section a relation model is asked about, and the marked text.

One step, shared by the readers of labelled files with offsets (PubTator) and by annotation:

- a candidate is two mentions of one section (title or abstract) that do not overlap, whose sentences
  are at most ``max_distance`` apart (0: the same sentence), and whose types the model relates
  (``related``); the first argument is the mention that starts first;
- a sentence holding very many mentions would give a quadratic number of pairs, so the pairs whose
  first argument lies in one sentence are capped at ``cap`` (the first in text order); the rest are
  counted as skipped, never silently dropped;
- the text shown to the model is the sentences from the first argument's to the second's, with the two
  arguments marked (:func:`biobert_ray.tasks.relation.marking.mark`).

Sentences are those of :func:`biobert_ray.text.split_sentences`, as NER annotation numbers them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from biobert_ray.tasks.relation import marking


@dataclass(frozen=True)
class Mention:
    """A mention of a section: its text, entity type and ``[start, end)`` offsets into the section, the
    index of its sentence, and its concept ids (PubTator's MeSH ids; empty when unknown)."""

    text: str
    entity_type: str
    start: int
    end: int
    sentence: int
    concepts: tuple[str, ...] = ()


def sentence_of(sentences: Sequence[tuple[int, int]], start: int) -> int:
    """The index of the sentence ``start`` lies in (a start between sentences: the next one)."""
    for index, (_, end) in enumerate(sentences):
        if start < end:
            return index
    return max(len(sentences) - 1, 0)


def pairs(
    mentions: Sequence[Mention],
    related: Callable[[Mention, Mention], bool],
    max_distance: int,
    cap: int,
) -> tuple[list[tuple[Mention, Mention]], int]:
    """``(pairs, skipped)``: the candidate pairs of one section's ``mentions`` in text order, and how
    many more the per-sentence ``cap`` left out (module docstring)."""
    ordered = sorted(mentions, key=lambda m: (m.start, m.end))
    found: list[tuple[Mention, Mention]] = []
    per_sentence: dict[int, int] = {}
    skipped = 0
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if b.start < a.end or abs(b.sentence - a.sentence) > max_distance or not related(a, b):
                continue
            if per_sentence.get(a.sentence, 0) >= cap:
                skipped += 1
                continue
            per_sentence[a.sentence] = per_sentence.get(a.sentence, 0) + 1
            found.append((a, b))
    return found, skipped


def marked_text(
    section: str,
    sentences: Sequence[tuple[int, int]],
    first: Mention,
    second: Mention,
    types: tuple[str, str],
    style: str,
) -> str:
    """The sentences of ``section`` from ``first``'s to ``second``'s (widened to hold both mentions) with
    the two marked in ``style`` as ``types`` (the model's names of their types)."""
    low, high = sorted((first.sentence, second.sentence))
    start = min(sentences[low][0], first.start) if sentences else first.start
    end = max(sentences[high][1], second.end, first.end) if sentences else second.end
    window = section[start:end]
    return marking.mark(
        window,
        (first.start - start, first.end - start, types[0]),
        (second.start - start, second.end - start, types[1]),
        style,
    )
