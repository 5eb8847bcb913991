"""The CoNLL/BioBERT NER reader on the bundled NCBI-disease files, typed fixtures and malformed input."""

from __future__ import annotations

import gzip

import fsspec
import pytest
from conftest import SAMPLES

from biobert_ray.tasks.conll import ConllFormatError, Sentence, entity_types, label_list, read_conll

NCBI = SAMPLES / "ncbi_disease"

TYPED = (
    "-DOCSTART-\tO\n"
    "\n"
    "Selegiline\tB-Chemical\n"
    "-\tO\n"
    "induced\tO\n"
    "postural\tB-Disease\n"
    "hypotension\tI-Disease\n"
    "\n"
    "\n"
    "\n"
    "Naloxone\tNN\tB-NP\tB-Chemical\n"
    "reverses\tVBZ\tB-VP\tO\n"
    "-DOCSTART-\tO\n"
    "Lidocaine\tB-Chemical\r\n"
    "toxicity\tO"
)


def write(path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("split", "sentences", "tokens", "entities"),
    [("train", 5424, 135701, 5134), ("devel", 923, 23969, 787), ("test", 940, 24497, 960)],
)
def test_ncbi_disease_counts(split, sentences, tokens, entities):
    read = read_conll(str(NCBI / f"{split}.tsv.gz"), entity_type="Disease")
    assert len(read) == sentences
    assert sum(len(s.words) for s in read) == tokens
    assert sum(tag == "B-Disease" for s in read for tag in s.tags) == entities
    assert {tag for s in read for tag in s.tags} == {"O", "B-Disease", "I-Disease"}
    assert all(len(s.words) == len(s.tags) > 0 for s in read)


def test_ncbi_disease_first_sentences():
    uri = str(NCBI / "train.tsv.gz")
    first, second = read_conll(uri, entity_type="Disease")[:2]
    assert first.words[:3] == ("Identification", "of", "APC2")
    assert first.tags[7:13] == ("O", "B-Disease", "I-Disease", "I-Disease", "I-Disease", "O")
    assert (first.source, first.line, len(first.words)) == (uri, 1, 14)
    assert (second.words[0], second.line) == ("The", 16)


def test_typed_file_with_docstart_columns_and_blank_runs(tmp_path):
    uri = write(tmp_path / "typed.tsv", TYPED)
    assert read_conll(uri) == [
        Sentence(
            ("Selegiline", "-", "induced", "postural", "hypotension"),
            ("B-Chemical", "O", "O", "B-Disease", "I-Disease"),
            uri,
            3,
        ),
        Sentence(("Naloxone", "reverses"), ("B-Chemical", "O"), uri, 11),
        Sentence(("Lidocaine", "toxicity"), ("B-Chemical", "O"), uri, 14),
    ]


def test_entity_types_and_label_list(tmp_path):
    sentences = read_conll(write(tmp_path / "typed.tsv", TYPED))
    assert entity_types(sentences) == ["Chemical", "Disease"]
    assert label_list(["Disease", "Chemical", "Disease"]) == [
        "O",
        "B-Chemical",
        "I-Chemical",
        "B-Disease",
        "I-Disease",
    ]
    assert label_list([]) == ["O"]


@pytest.mark.parametrize(
    ("text", "entity_type", "line", "reason"),
    [
        ("a\tO\n\nb\tB\nno-tab-here\n", "Disease", 4, "no tab"),
        ("a\tO\n\tO\n", "Disease", 2, "empty token"),
        ("a\tO\n \tB\n", "Disease", 2, "empty token"),
        ("a\tO\nb\tE-X\n", None, 2, "unknown tag 'E-X'"),
        ("a\tS-X\n", None, 1, "unknown tag 'S-X'"),
        ("a\tO\n\nb\tb\n", "Disease", 3, "unknown tag 'b'"),
        ("a\tB-\n", None, 1, "unknown tag 'B-'"),
        ("a\tB-X\nb\tI-X\n\nc\tB\n", None, 4, "mixed (typed tags since line 1)"),
        ("a\tO\nb\tI\nc\tI-X\n", "Disease", 3, "mixed (untyped tags since line 2)"),
        ("a\tO\nb\tB\n", None, 2, "pass --entity-type"),
        ("a\tO\nb\tB-X\n", "Disease", 2, "applies only to untyped"),
        (b"a\tO\n\xff\tB\n", "Disease", 2, "not UTF-8"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, entity_type, line, reason):
    path = tmp_path / "bad.tsv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConllFormatError) as info:
        read_conll(str(path), entity_type=entity_type)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert reason in str(info.value)
    assert isinstance(info.value, ValueError) and info.value.line == line


def test_invalid_entity_type_is_refused(tmp_path):
    with pytest.raises(ValueError, match="invalid entity type"):
        read_conll(write(tmp_path / "a.tsv", "a\tB\n"), entity_type="Two words")


def test_reads_gzip_from_memory_filesystem():
    uri = "memory://conll-test/typed.tsv.gz"
    with fsspec.open(uri, "wb") as f:
        f.write(gzip.compress(TYPED.encode()))
    sentences = read_conll(uri)
    assert [s.words[0] for s in sentences] == ["Selegiline", "Naloxone", "Lidocaine"]
    assert sentences[0].source == uri
    fsspec.filesystem("memory").rm("/conll-test", recursive=True)


def test_reads_from_s3(s3_bucket):
    uri = f"{s3_bucket}/ner/train.tsv"
    with fsspec.open(uri, "wb") as f:
        f.write(gzip.decompress((NCBI / "devel.tsv.gz").read_bytes()))
    sentences = read_conll(uri, entity_type="Disease")
    assert len(sentences) == 923 and sentences[0].source == uri
