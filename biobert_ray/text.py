"""Sentences and words of a text as ``(start, end)`` character offsets into it (``end`` exclusive).

Offsets index the Python string, i.e. count Unicode code points, so ``text[start:end]`` is the unit and
the offsets written to the output tables point into the original title or abstract.

Sentences come from blingfire (C++, about 0.15 ms per PubMed abstract; chosen over syntok and pysbd for
quality and speed). Its C library works on UTF-8 bytes, and its Python wrapper
``text_to_sentences_and_offsets`` maps the byte offsets back to code point offsets, which is what this
module uses. blingfire's sentence *strings* are not copies of the input (it turns control characters and
line breaks into spaces and drops some invisible characters such as U+200B), so they are never used: the
text is cut at blingfire's sentence starts and each piece is stripped of surrounding whitespace. Every
non-whitespace character of the text therefore lies in exactly one sentence.

Words follow the tokenisation of the BioBERT NER datasets: a run of letters, digits and combining marks is
a word, and every other non-whitespace character (punctuation and symbols) is a word of its own. BERT's
BasicTokenizer splits much the same way, but keeps symbols such as ``±`` or ``≤`` inside words.
On NCBI-disease, ``split_words(" ".join(words))`` gives back the words of every sentence.
"""

from __future__ import annotations

import re

import blingfire

#: Combining diacritical marks (U+0300-036F and its extension/supplement blocks) stay with their letter.
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_WORD_RE = re.compile(rf"(?:[^\W_]|[{_MARKS}])+|\S")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans of ``text``: non-empty, stripped, increasing and non-overlapping.

    Together they hold every non-whitespace character of ``text``; a text of only whitespace has none.
    """
    if not text.strip():
        return []  # blingfire fails on an empty string
    _, offsets = blingfire.text_to_sentences_and_offsets(text)
    cuts = sorted({start for start, _ in offsets if 0 < start < len(text)})
    found = []
    for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True):
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            first = start + len(piece) - len(piece.lstrip())
            found.append((first, first + len(stripped)))
    return found


def split_words(text: str) -> list[tuple[int, int]]:
    """Word spans of ``text``: runs of letters, digits and marks, and each other non-space character alone."""
    return [match.span() for match in _WORD_RE.finditer(text)]
