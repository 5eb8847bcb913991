"""The DDI-2013 XML reader without Ray: a hand-made corpus of two documents (exact examples, a
discontinuous entity, an overlapping pair left out with a warning, malformed files named), its
deterministic document split, and the real training archive when ``../shared`` is beside the repo."""

from __future__ import annotations

import collections
import re
import tarfile
import warnings
from pathlib import Path

import pytest
from conftest import REPO
from lxml import etree

from biobert_ray.tasks.relation import RelationTask, ddi
from biobert_ray.tasks.relation.formats import ReadOptions, read_relations, sniff

ARCHIVE = REPO.parent / "shared" / "data" / "ddi2013" / "DDI2013_Train2.tar.gz"

# d3 falls in train and d17 in test (sha256 of the id, first 8 hex digits, mod 10: 3 and 0)
DRUGBANK = """<?xml version="1.0" encoding="UTF-8"?>
<document id="DDI-Test.d3">
    <sentence id="DDI-Test.d3.s0" text="Aspirin increases the effect of warfarin.">
        <entity id="DDI-Test.d3.s0.e0" charOffset="0-6" type="drug" text="Aspirin"/>
        <entity id="DDI-Test.d3.s0.e1" charOffset="32-39" type="drug" text="warfarin"/>
        <pair id="DDI-Test.d3.s0.p0" e1="DDI-Test.d3.s0.e0" e2="DDI-Test.d3.s0.e1"
            ddi="true" type="effect"/>
    </sentence>
    <sentence id="DDI-Test.d3.s1" text="Avoid loop and thiazide diuretics with Lithobid.">
        <entity id="DDI-Test.d3.s1.e0" charOffset="6-9;24-32" type="group" text="loop diuretics"/>
        <entity id="DDI-Test.d3.s1.e1" charOffset="15-32" type="group" text="thiazide diuretics"/>
        <entity id="DDI-Test.d3.s1.e2" charOffset="39-46" type="brand" text="Lithobid"/>
        <pair id="DDI-Test.d3.s1.p0" e1="DDI-Test.d3.s1.e0" e2="DDI-Test.d3.s1.e1" ddi="false"/>
        <pair id="DDI-Test.d3.s1.p1" e1="DDI-Test.d3.s1.e0" e2="DDI-Test.d3.s1.e2"
            ddi="true" type="advise"/>
        <pair id="DDI-Test.d3.s1.p2" e1="DDI-Test.d3.s1.e1" e2="DDI-Test.d3.s1.e2" ddi="false"/>
    </sentence>
</document>
"""
MEDLINE = """<?xml version="1.0" encoding="UTF-8"?>
<document id="DDI-Test.d17">
    <sentence id="DDI-Test.d17.s0" text="Cimetidine did not alter the kinetics of X-123.">
        <entity id="DDI-Test.d17.s0.e0" charOffset="0-9" type="drug" text="Cimetidine"/>
        <entity id="DDI-Test.d17.s0.e1" charOffset="41-45" type="drug_n" text="X-123"/>
        <pair id="DDI-Test.d17.s0.p0" e1="DDI-Test.d17.s0.e0" e2="DDI-Test.d17.s0.e1" ddi="false"/>
    </sentence>
    <sentence id="DDI-Test.d17.s1" text="Ketoconazole raises levels of midazolam.">
        <entity id="DDI-Test.d17.s1.e0" charOffset="0-11" type="drug" text="Ketoconazole"/>
        <entity id="DDI-Test.d17.s1.e1" charOffset="30-38" type="drug" text="midazolam"/>
        <pair id="DDI-Test.d17.s1.p0" e1="DDI-Test.d17.s1.e1" e2="DDI-Test.d17.s1.e0"
            ddi="true" type="mechanism"/>
    </sentence>
</document>
"""
#: (text, label, source, line, types) of every example of the fixture, in reading order; the line is
#: lxml's, where the ``<pair>`` start tag ends.
EXPECTED = [
    ("<E1:drug> Aspirin </E1:drug> increases the effect of <E2:drug> warfarin </E2:drug>.",
     "effect", "Train/Drugbank/aspirin.xml", 7, ("drug", "drug")),
    ("Avoid <E1:group> loop and thiazide diuretics </E1:group> with <E2:brand> Lithobid </E2:brand>.",
     "advise", "Train/Drugbank/aspirin.xml", 15, ("group", "brand")),
    ("Avoid loop and <E1:group> thiazide diuretics </E1:group> with <E2:brand> Lithobid </E2:brand>.",
     "false", "Train/Drugbank/aspirin.xml", 16, ("group", "brand")),
    ("<E1:drug> Cimetidine </E1:drug> did not alter the kinetics of <E2:drug_n> X-123 </E2:drug_n>.",
     "false", "Train/Medline/123.xml", 6, ("drug", "drug_n")),
    ("<E1:drug> Ketoconazole </E1:drug> raises levels of <E2:drug> midazolam </E2:drug>.",
     "mechanism", "Train/Medline/123.xml", 12, ("drug", "drug")),
]  # fmt: skip
#: The sentence of each example of :data:`EXPECTED`.
SENTENCES = [
    "Aspirin increases the effect of warfarin.",
    "Avoid loop and thiazide diuretics with Lithobid.",
    "Avoid loop and thiazide diuretics with Lithobid.",
    "Cimetidine did not alter the kinetics of X-123.",
    "Ketoconazole raises levels of midazolam.",
]
TYPED_MARK = re.compile(r"<(/?)E[12]:[a-z_]+>")


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, str]:
    """The two documents as a directory tree, a ``.tar.gz`` of that tree and a lone file."""
    root = tmp_path / "corpus"
    for name, content in (("Train/Drugbank/aspirin.xml", DRUGBANK), ("Train/Medline/123.xml", MEDLINE)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    (root / "Train" / "README.txt").write_text("not XML, not read")
    archive = tmp_path / "corpus.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / "Train", arcname="Train")
    return {"dir": str(root), "tar": str(archive), "file": str(root / "Train" / "Medline" / "123.xml")}


def unmarked(text: str) -> str:
    """``text`` without its typed entity markers (and the space each adds inside the argument)."""
    return re.sub(r"<E[12]:[a-z_]+> | </E[12]:[a-z_]+>", "", text)


def read(uri: str, **options) -> list:
    """The examples of ``uri`` (DDI XML), the overlapping-pairs warning silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ddi.OverlappingPairsWarning)
        file_format, examples = read_relations(uri, options=ReadOptions(**options))
    assert file_format == "ddi-xml"
    return examples


def test_fixture_examples_are_exact_and_the_overlapping_pair_is_named(corpus):
    for kind in ("dir", "tar"):
        assert sniff(corpus[kind]) == sniff(corpus[kind] + "#dev") == "ddi-xml"
        with pytest.warns(ddi.OverlappingPairsWarning, match=r"left out 1 pair\(s\) \(0 of them relations\)"):
            examples = read_relations(corpus[kind])[1]
        assert [(e.text, e.label, e.source, e.line, e.types) for e in examples] == EXPECTED
        assert {e.marking for e in examples} == {"typed"}
    with pytest.warns(ddi.OverlappingPairsWarning, match="Train/Drugbank/aspirin.xml: DDI-Test.d3.s1.p0"):
        read_relations(corpus["dir"])
    assert sniff(corpus["file"]) == "ddi-xml"
    lone = read(corpus["file"])
    assert [(e.text, e.source) for e in lone] == [(text, corpus["file"]) for text, *_ in EXPECTED[3:]]
    anonymized = read(corpus["dir"], marking="anonymized")
    assert anonymized[1].text == "Avoid @GROUP$ with @BRAND$." and anonymized[1].marking == "anonymized"


def test_the_task_reads_ddi_with_typed_markers_for_its_types(corpus):
    task = RelationTask()
    with pytest.warns(ddi.OverlappingPairsWarning):
        examples = task.read(corpus["dir"] + "#train")
    assert len(examples) == 3
    metadata = task.metadata(examples, task.labels(examples))
    assert metadata["marking"] == "typed" and metadata["negative_label"] == "false"
    assert metadata["argument_types"] == ["brand", "drug", "group"]
    assert "<E1:brand>" in metadata["added_tokens"]


def test_marking_round_trips_to_the_sentence(corpus):
    examples = read(corpus["dir"])
    assert [unmarked(e.text) for e in examples] == SENTENCES
    assert all(len(TYPED_MARK.findall(e.text)) == 4 for e in examples)


def test_the_document_split_is_disjoint_complete_and_stable(corpus):
    everything = read(corpus["tar"])
    splits = {split: read(f"{corpus['tar']}#{split}") for split in ddi.SPLITS}
    assert {split: len(found) for split, found in splits.items()} == {"train": 3, "dev": 0, "test": 2}
    assert {split: read(f"{corpus['dir']}#{split}") for split in ddi.SPLITS} == splits  # same twice
    documents = {split: {e.source for e in found} for split, found in splits.items()}
    assert documents == {
        "train": {"Train/Drugbank/aspirin.xml"},
        "dev": set(),
        "test": {"Train/Medline/123.xml"},
    }
    assert collections.Counter(e for found in splits.values() for e in found) == collections.Counter(
        everything
    )
    assert [ddi.document_split(f"DDI-Test.d{n}") for n in (1, 3, 17)] == ["dev", "train", "test"]
    empty = Path(corpus["dir"]) / "Train" / "Empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \.xml files"):
        read_relations(str(empty))
    with pytest.raises(ValueError, match="DDI XML only"):
        read_relations(str(REPO / "biobert_ray" / "sample_data" / "gad" / "test.tsv.gz") + "#dev")


@pytest.mark.parametrize(
    ("edit", "where", "reason"),
    [
        (('text="warfarin"', 'text="warfarin"/'), r"aspirin.xml:\d+:", "not well-formed XML"),
        (('"32-39"', '"31-38"'), r"aspirin.xml:5:", "DDI-Test.d3.s0.e1: .* spells ' warfari'"),
        (('"6-9;24-32"', '"6-9;24"'), r"aspirin.xml:10:", "DDI-Test.d3.s1.e0: .* not start-end"),
        (('"39-46"', '"39-60"'), r"aspirin.xml:12:", "outside its sentence"),
        ((' type="brand"', ""), r"aspirin.xml:12:", "DDI-Test.d3.s1.e2: no type attribute"),
        (('ddi="true" type="effect"', 'ddi="true"'), r"aspirin.xml:7:", "DDI-Test.d3.s0.p0: expected"),
        (('e2="DDI-Test.d3.s0.e1"', 'e2="DDI-Test.d3.s0.e9"'), r"aspirin.xml:7:", "not in its sentence"),
        (("<document id", "<doc id"), r"aspirin.xml:\d+:", "not well-formed XML|expected a <document"),
    ],
)  # fmt: skip
def test_a_malformed_file_stops_naming_file_line_and_element(corpus, edit, where, reason):
    path = Path(corpus["dir"]) / "Train" / "Drugbank" / "aspirin.xml"
    old, new = edit
    assert old in DRUGBANK
    path.write_text(DRUGBANK.replace(old, new, 1))
    with pytest.raises(ddi.DDIFormatError, match=f"Train/Drugbank/{where} .*({reason})"):
        read(corpus["dir"])


def test_the_real_training_archive_splits_80_10_10_by_document():
    if not ARCHIVE.exists():
        pytest.skip(f"{ARCHIVE} is absent (the shared data lies beside the repository in CI)")
    with pytest.warns(ddi.OverlappingPairsWarning, match=r"left out 47 pair\(s\) \(2 of them relations\)"):
        everything = read_relations(str(ARCHIVE))[1]
    assert len(everything) == 27792 - 47
    documents, sentence_of_pair = {}, {}
    with tarfile.open(ARCHIVE) as tar:
        for member in tar:
            if member.isfile():
                root = etree.fromstring(tar.extractfile(member).read())
                documents[member.name] = ddi.document_split(root.get("id"))
                for pair in root.iter("pair"):
                    sentence_of_pair[(member.name, pair.sourceline)] = pair.getparent().get("text")
    assert len(documents) == 714
    assert all(unmarked(e.text) == sentence_of_pair[(e.source, e.line)] for e in everything)
    share = collections.Counter(documents.values())
    assert share == {"train": 576, "dev": 70, "test": 68}  # 80.7%, 9.8%, 9.5%
    splits = {split: read(f"{ARCHIVE}#{split}") for split in ddi.SPLITS}
    for split, found in splits.items():
        labels = sorted(collections.Counter(e.label for e in found).items())
        print(f"DDI {split}: {share[split]} documents, {len(found)} examples, labels {labels}")
        assert {documents[e.source] for e in found} == {split}
    assert collections.Counter(e for found in splits.values() for e in found) == collections.Counter(
        everything
    )
    assert read(f"{ARCHIVE}#dev") == splits["dev"]
