"""Entity-level scores against seqeval in strict IOB2 mode, on edge cases, random tags and NCBI-disease."""

from __future__ import annotations

import random

import pytest
from conftest import SAMPLES
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2, Tokens

from biobert_ray.tasks.conll import read_conll
from biobert_ray.tasks.iob2 import entity_scores, format_report, spans

AVERAGES = ("micro avg", "macro avg", "weighted avg")


def assert_same_as_seqeval(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """Per-type and micro scores equal seqeval's strict IOB2 report to 1e-12; returns ours."""
    ours = entity_scores(gold, pred)
    report = classification_report(gold, pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    theirs = {name: row for name, row in report.items() if name not in AVERAGES}
    assert sorted(theirs) == list(ours["per_type"])
    for name, row in [*theirs.items(), ("overall", report["micro avg"])]:
        mine = ours["overall"] if name == "overall" else ours["per_type"][name]
        for key, their_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert abs(mine[key] - row[their_key]) <= 1e-12, (name, key, mine, row)
        assert mine["support"] == row["support"]
    return ours


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ([], []),
        (["O", "O"], []),
        (["B-X"], [("X", 0, 1)]),
        (["B-X", "I-X", "O", "B-Y"], [("X", 0, 2), ("Y", 3, 4)]),
        (["O", "I-X", "I-X"], []),  # I without B starts nothing
        (["I-X", "I-X", "B-X"], [("X", 2, 3)]),
        (["B-X", "I-Y", "I-Y"], [("X", 0, 1)]),  # type change ends the entity, I-Y is dropped
        (["B-X", "B-X", "I-X"], [("X", 0, 1), ("X", 1, 3)]),
        (["B-X", "I-X", "I-Y", "I-X"], [("X", 0, 2)]),
        (["B-X", "O", "I-X"], [("X", 0, 1)]),
        (["B-X", "I-X", "B-Y", "I-Y", "I-Y"], [("X", 0, 2), ("Y", 2, 5)]),
        (["B", "I", "O", "B"], [("_", 0, 2), ("_", 3, 4)]),  # untyped tags get seqeval's type "_"
        (["B-Gene-or-protein", "I-Gene-or-protein"], [("Gene-or-protein", 0, 2)]),
    ],
)
def test_spans_follow_seqeval_strict_iob2(tags, expected):
    assert spans(tags) == expected
    assert spans(tuple(tags)) == expected
    assert [(e.tag, e.start, e.end) for e in Tokens(tags, IOB2).entities] == expected


@pytest.mark.parametrize("tag", ["E-X", "S-X", "b-X", "", "X"])
def test_spans_refuse_tags_outside_iob2(tag):
    with pytest.raises(ValueError, match="invalid IOB2 tag"):
        spans(["O", tag])


def test_handwritten_edge_cases_match_seqeval():
    gold = [
        ["B-X", "I-X", "O", "B-Y", "I-Y"],
        ["O", "O", "O"],
        ["B-X", "B-X", "I-X", "O"],
        ["B-Y", "I-Y", "I-Y", "O", "B-X"],
        ["O", "B-Z"],  # Z is never predicted: precision 0 by zero division
        [],
        ["B-X"],
    ]
    pred = [
        ["B-X", "I-X", "O", "B-Y", "O"],  # X exact, Y too short
        ["O", "I-X", "I-X"],  # invalid start: no entity
        ["B-X", "I-X", "I-X", "O"],  # two gold entities merged into one
        ["B-Y", "I-Y", "I-X", "O", "I-X"],  # Y cut short by a type change, I-X at the end ignored
        ["O", "O"],
        [],
        ["B-W"],  # W is never in gold: recall 0 by zero division
    ]
    ours = assert_same_as_seqeval(gold, pred)
    assert ours["overall"] == {
        "precision": 1 / 5,
        "recall": 1 / 8,
        "f1": 2 * (1 / 5) * (1 / 8) / (1 / 5 + 1 / 8),
        "support": 8,
        "predicted": 5,
        "correct": 1,
    }
    assert ours["per_type"]["Z"]["precision"] == 0.0 and ours["per_type"]["W"]["recall"] == 0.0
    assert (ours["per_type"]["W"]["support"], ours["per_type"]["W"]["predicted"]) == (0, 1)


def test_random_sequences_match_seqeval():
    rng = random.Random(1234)
    tags = ["O", "O", "B-X", "I-X", "B-Y", "I-Y"]
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 20))] for _ in range(3000)]
    pred = [[rng.choice(tags) if rng.random() < 0.25 else t for t in sentence] for sentence in gold]
    ours = assert_same_as_seqeval(gold, pred)
    assert 0.3 < ours["overall"]["f1"] < 0.95  # the perturbation leaves a mix of hits and misses


def test_ncbi_gold_against_perturbed_predictions():
    sentences = read_conll(str(SAMPLES / "ncbi_disease" / "test.tsv.gz"), entity_type="Disease")
    gold = [list(s.tags) for s in sentences]
    rng = random.Random(7)
    labels = ["O", "B-Disease", "I-Disease", "B-Other", "I-Other"]
    pred = [[rng.choice(labels) if rng.random() < 0.03 else t for t in tags] for tags in gold]
    ours = assert_same_as_seqeval(gold, pred)
    assert ours["per_type"]["Disease"]["support"] == 960
    assert assert_same_as_seqeval(gold, gold)["overall"]["f1"] == 1.0


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="2 gold sentences but 1 predicted"):
        entity_scores([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 1: 2 gold tags but 1 predicted"):
        entity_scores([["O"], ["O", "B-X"]], [["O"], ["O"]])


def test_format_report_lists_types_then_overall():
    scores = entity_scores(
        [["B-Chemical", "I-Chemical", "O", "B-Disease"]], [["B-Chemical", "O", "O", "B-Disease"]]
    )
    lines = format_report(scores).splitlines()
    assert lines[0].split() == ["type", "precision", "recall", "f1", "support"]
    assert [line.split() for line in lines[1:]] == [
        ["Chemical", "0.0000", "0.0000", "0.0000", "1"],
        ["Disease", "1.0000", "1.0000", "1.0000", "1"],
        ["overall", "0.5000", "0.5000", "0.5000", "2"],
    ]
    assert len({len(line) for line in lines}) == 1  # aligned columns
