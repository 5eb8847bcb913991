"""Sentence and word spans: real abstract text with non-ASCII characters, every bundled MEDLINE abstract,
hostile characters, and agreement of the word rule with the NCBI-disease tokenisation."""

from __future__ import annotations

import gzip
import random

import pytest
from conftest import SAMPLES

from biobert_ray import pubmed
from biobert_ray.tasks.conll import read_conll
from biobert_ray.text import split_sentences, split_words

#: PMID 26347990 (first three sentences) and 25840296 (sections), as in the bundled MEDLINE sample.
SENTENCES = [
    "With the hope of discovering effective analgesics with fewer side effects, attention has recently "
    "shifted to allosteric modulators of the opioid receptors.",
    "In the past two years, the first chemotypes of positive or silent allosteric modulators (PAMs or SAMs, "
    "respectively) of μ- and δ-opioid receptor types have been reported in the literature.",
    "During a structure-guided lead optimization campaign with μ-PAMs BMS-986121 and BMS-986122 as starting "
    "compounds, we discovered a new chemotype that was confirmed to display μ-PAM or μ-SAM activity "
    "depending on the specific substitutions as assessed by endomorphin-1-stimulated β-arrestin2 "
    "recruitment assays in Chinese Hamster Ovary (CHO)-μ PathHunter cells.",
    "SETTING: Department of Ophthalmology, University of São Paulo, Ribeirão Preto, Brazil.",
    "DESIGN: Prospective randomized study.",
    "METHODS: Patients had phacoemulsification with a cold (4°C) solution (≤5 µM; 😀 Müller's) in 1 eye.",
]

#: Text that blingfire rewrites in its output: control characters, invisible characters, odd line breaks.
HOSTILE = [
    "",
    " \n\t ",
    "\x00x",
    "a",
    " a ",
    "Cells died.\x01 Then \u200bthey grew.",
    "a\u2028b. C.",
    "x\r\ny. Z.\r\n",
    "Dose was 5\u00a0mg. Then\u200b 10\u2009mg.\x0b\x1cEnd.",
    "😀. 😀! é\u0301? \ufeffDone.",
    "N\u0307F-κB. \u00adSoft\u00adhyphen.",
]


def assert_sentence_postconditions(text: str, spans: list[tuple[int, int]]) -> None:
    """Spans are non-empty, stripped, increasing, non-overlapping and hold every non-space character."""
    previous_end = 0
    outside = []
    for start, end in spans:
        assert previous_end <= start < end <= len(text), (text, spans)
        piece = text[start:end]
        assert piece == piece.strip(), (text, piece)
        outside.append(text[previous_end:start])
        previous_end = end
    outside.append(text[previous_end:])
    assert not "".join(outside).strip(), (text, spans)


def test_sentences_of_real_abstract_text_with_non_ascii():
    text = " ".join(SENTENCES)
    spans = split_sentences(text)
    assert [text[start:end] for start, end in spans] == SENTENCES
    assert_sentence_postconditions(text, spans)


def test_sentence_offsets_are_characters_not_utf8_bytes():
    text = "Über 😀😀 μ-receptors ≤5 µM déjà vu. Second sentence here. Third one, ß."
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "Über 😀😀 μ-receptors ≤5 µM déjà vu.",
        "Second sentence here.",
        "Third one, ß.",
    ]


@pytest.mark.parametrize("text", HOSTILE)
def test_sentences_keep_every_character_of_hostile_text(text):
    spans = split_sentences(text)
    assert_sentence_postconditions(text, spans)
    assert (spans == []) == (text.strip() == "")


def test_sentences_of_random_text_keep_every_character():
    rng = random.Random(5)
    alphabet = [
        *"ab Z.?!;()-'\"\t\n\r",
        "μ",
        "β",
        "≤",
        "é",
        "😀",
        "\u0301",
        "\u00ad",
        "\u200b",
        "\x00",
        "\x01",
    ]
    alphabet += ["\u00a0", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\u3000", "。", ". ", "e.g. ", "\n\n"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        assert_sentence_postconditions(text, split_sentences(text))


def test_sentences_of_every_bundled_medline_abstract():
    with gzip.open(SAMPLES / "pubmed" / "medline16n0902.xml.gz", "rb") as stream:
        abstracts = [r.abstract for r in pubmed.parse_records(stream) if isinstance(r, pubmed.Article)]
    abstracts = [a for a in abstracts if a]
    assert len(abstracts) == 526
    counts = []
    for abstract in abstracts:
        spans = split_sentences(abstract)
        assert_sentence_postconditions(abstract, spans)
        counts.append(len(spans))
    assert 6 < sum(counts) / len(counts) < 15  # PubMed abstracts have about ten sentences
    assert min(counts) >= 1


def test_words_split_letters_digits_and_symbols():
    text = "IL-2-induced β-cell death (≤5 µM; p<0.05) in 3'-UTR_x of Müller's 😀 N\u0307F-κB\u00a0cells."
    spans = split_words(text)
    assert [text[s:e] for s, e in spans] == [
        *["IL", "-", "2", "-", "induced", "β", "-", "cell", "death", "(", "≤", "5", "µM", ";", "p", "<"],
        *["0", ".", "05", ")", "in", "3", "'", "-", "UTR", "_", "x", "of", "Müller", "'", "s", "😀"],
        *["N\u0307F", "-", "κB", "cells", "."],
    ]
    assert spans[5] == (13, 14)  # "β": character offsets
    assert split_words("") == [] and split_words(" \t\n") == []


def test_words_agree_with_ncbi_disease_tokenisation():
    """Measured: 100% of the 7,287 NCBI-disease sentences (train, devel, test) split back exactly."""
    agree = total = 0
    for split in ("train", "devel", "test"):
        for sentence in read_conll(str(SAMPLES / "ncbi_disease" / f"{split}.tsv.gz"), entity_type="Disease"):
            text = " ".join(sentence.words)
            agree += tuple(text[s:e] for s, e in split_words(text)) == sentence.words
            total += 1
    assert total == 7287
    assert agree / total >= 0.999
