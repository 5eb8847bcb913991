"""Relation extraction without Ray: argument marking, candidate pairs, the PubTator reader, document-level
scores, the decode oracle and the rejection of entities rows that do not match their article."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conftest import SAMPLES

from biobert_ray import models, schemas, text
from biobert_ray.tasks.base import ModelInfo
from biobert_ray.tasks.relation import RelationTask, candidates, marking, metrics
from biobert_ray.tasks.relation.formats import DocumentPairs, ReadOptions, read_relations
from biobert_ray.tasks.relation.pubtator import PubTatorError
from biobert_ray.tasks.relation.task import RelationOptions

CID_TEST = SAMPLES / "bc5cdr_cid" / "test.pubtator.gz"

SENTENCE = "lithium carbonate toxicity and lithium-induced renal failure."
MENTIONS = {  # adjacent ("lithium" + "-induced"), nested and overlapping spans
    "lithium carbonate": (0, 17, "Chemical"),
    "carbonate": (8, 17, "Chemical"),  # nested in the first
    "toxicity": (18, 26, "Disease"),
    "lithium": (31, 38, "Chemical"),
    "-induced renal failure": (38, 60, "Disease"),  # adjacent to "lithium"
    "renal failure": (47, 60, "Disease"),  # nested in the one before
}


def mention(name: str, sentence: int = 0) -> candidates.Mention:
    start, end, kind = MENTIONS[name]
    assert SENTENCE[start:end] == name
    return candidates.Mention(name, kind, start, end, sentence)


@pytest.mark.parametrize("style", ["typed", "anonymized", "positional"])
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("lithium carbonate", "toxicity"),
        ("lithium", "-induced renal failure"),
        ("carbonate", "renal failure"),
    ],
)
def test_marking_round_trips_on_adjacent_and_nested_mentions(style, first, second):
    a, b = mention(first), mention(second)
    marked = marking.mark(SENTENCE, (a.start, a.end, a.entity_type), (b.start, b.end, b.entity_type), style)
    spans = marking.argument_spans(marked, style)
    assert len(spans) == 2 and spans[0][1] <= spans[1][0]
    if style == "anonymized":
        assert [marked[s:e] for s, e in spans] == ["@CHEMICAL$", "@DISEASE$"]
        assert marked.replace("@CHEMICAL$", first).replace("@DISEASE$", second) == SENTENCE
    else:
        opened = [marking.marks(p, t, style) for p, t in ((1, a.entity_type), (2, b.entity_type))]
        inner = [
            marked[s:e].removeprefix(o).removesuffix(c) for (s, e), (o, c) in zip(spans, opened, strict=True)
        ]
        assert inner == [first, second]
        unmarked = marked
        for opening, closing in opened:
            unmarked = unmarked.replace(opening, "", 1).replace(closing, "", 1)
        assert unmarked == SENTENCE
    assert marking.argument_types(marked, style) == (
        []
        if style == "positional"
        else [t.upper() if style == "anonymized" else t for t in ("Chemical", "Disease")]
    )
    with pytest.raises(ValueError, match="overlap"):
        marking.mark(SENTENCE, (0, 17, "Chemical"), (8, 17, "Chemical"), style)


def test_marker_tokens_are_one_token_each_once_added(tiny_bert):
    tokens = marking.marker_tokens(["Disease", "Chemical"], "typed")
    assert tokens[:2] == ["<E1:Chemical>", "</E1:Chemical>"] and len(tokens) == 8
    tokenizer = models.cached_tokenizer(tiny_bert, tuple(tokens))
    marked = marking.mark(SENTENCE, (0, 17, "Chemical"), (18, 26, "Disease"), "typed")
    pieces = tokenizer.tokenize(marked)
    assert pieces[0] == "<E1:Chemical>" and "</E2:Disease>" in pieces
    assert marking.marker_tokens(["Disease"], "anonymized") == []


def test_candidate_pairs_follow_types_distance_and_the_cap():
    related = lambda a, b: a.entity_type != b.entity_type  # noqa: E731
    ms = [mention(name) for name in MENTIONS]
    found, skipped = candidates.pairs(ms, related, max_distance=0, cap=100)
    names = [(a.text, b.text) for a, b in found]
    # chemical-disease pairs, never overlapping spans, first argument first in the text
    assert names == [
        ("lithium carbonate", "toxicity"), ("lithium carbonate", "-induced renal failure"),
        ("lithium carbonate", "renal failure"), ("carbonate", "toxicity"),
        ("carbonate", "-induced renal failure"), ("carbonate", "renal failure"),
        ("toxicity", "lithium"), ("lithium", "-induced renal failure"), ("lithium", "renal failure"),
    ] and skipped == 0  # fmt: skip
    capped, skipped = candidates.pairs(ms, related, max_distance=0, cap=4)
    assert capped == found[:4] and skipped == 5
    # three sentences: a chemical in 0, diseases in 1 and 2
    far = [candidates.Mention("x", "Chemical", 0, 1, 0), candidates.Mention("y", "Disease", 10, 11, 1),
           candidates.Mention("z", "Disease", 20, 21, 2)]  # fmt: skip
    assert len(candidates.pairs(far, related, 0, 100)[0]) == 0
    assert len(candidates.pairs(far, related, 1, 100)[0]) == 1
    assert len(candidates.pairs(far, related, 2, 100)[0]) == 2
    assert len(candidates.pairs(far, lambda a, b: True, 2, 100)[0]) == 3


def test_pubtator_cid_examples_and_the_recall_ceiling():
    file_format, same = read_relations(str(CID_TEST))
    assert file_format == "pubtator" and {e.label for e in same} == {"CID", "false"}
    first = same[0]
    assert first.marking == "typed" and "<E1:" in first.text and set(first.types) == {"Chemical", "Disease"}
    _, near = read_relations(str(CID_TEST), options=ReadOptions(max_sentence_distance=1))
    assert len(near) > len(same)
    # the oracle (gold labels as predictions): precision near 1, recall the ceiling of the candidates
    for examples in (same, near):
        scores = metrics.document_scores([e.document for e in examples], [e.label == "CID" for e in examples])
        assert scores["support"] == 1066 and scores["recall"] == pytest.approx(scores["recall_ceiling"])
    ceiling0 = metrics.document_scores([e.document for e in same], [False] * len(same))["recall_ceiling"]
    ceiling1 = metrics.document_scores([e.document for e in near], [False] * len(near))["recall_ceiling"]
    assert 0.6 < ceiling0 < ceiling1 < 1.0  # about a quarter of CID relations share no sentence
    anonymized = read_relations(str(CID_TEST), options=ReadOptions(marking="anonymized"))[1]
    assert "@CHEMICAL$" in "".join(e.text for e in anonymized[:20])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1|t|Aspirin and pain\n1|a|Text.\n1\t0\t7\tAspirin\tChemical\tD1\n1\t12\t16\tPAIN\tDisease\tD2\n",
         r"x\.pubtator:4: text does not match the document at 12-16"),
        ("1|t|Aspirin and pain\n1|a|Text.\n1\t0\tseven\tAspirin\tChemical\tD1\n",
         r"x\.pubtator:3: offsets are not integers"),
        ("1|t|Aspirin and pain\n1|a|Text.\n1\tCID\tD1\n", r"x\.pubtator:3: expected 4, 6 or 7"),
        ("1|t|Aspirin\n1|a|Text.\n2\t0\t7\tAspirin\tChemical\tD1\n", r"x\.pubtator:3: a mention or relation"),
    ],
)  # fmt: skip
def test_a_malformed_pubtator_line_names_its_file_and_line(tmp_path, content, message):
    path = tmp_path / "x.pubtator"
    path.write_text(content)
    with pytest.raises(PubTatorError, match=message):
        read_relations(str(path), "pubtator")


def test_document_scores_match_hand_computed_values():
    gold_a = frozenset({("CID", "c1", "d1"), ("CID", "c2", "d1")})
    gold_b = frozenset({("CID", "c3", "d3")})
    docs = [
        DocumentPairs("a", frozenset({("CID", "c1", "d1")}), gold_a),  # predicted: correct
        DocumentPairs("a", frozenset({("CID", "c1", "d2")}), gold_a),  # predicted: wrong
        DocumentPairs("a", frozenset({("CID", "c1", "d1")}), gold_a),  # the same pair again: counted once
        DocumentPairs("b", frozenset({("CID", "c3", "d3")}), gold_b, (("z", "CID", "c9", "d9"),)),  # missed
    ]
    scores = metrics.document_scores(docs, [True, True, True, False])
    # gold: a/c1-d1, a/c2-d1, b/c3-d3, z/c9-d9 (4); predicted: a/c1-d1, a/c1-d2 (2); correct 1
    assert (scores["support"], scores["predicted"], scores["correct"]) == (4, 2, 1)
    assert scores["precision"] == 0.5 and scores["recall"] == 0.25
    assert scores["recall_ceiling"] == pytest.approx(2 / 4)  # c1-d1 and c3-d3 have candidates


def articles_and_entities() -> tuple[pa.Table, pa.Table]:
    title, abstract = "Lithium toxicity.", "Aspirin caused renal failure. Ibuprofen did not."
    articles = pa.table({"pmid": [7], "title": [title], "abstract": [abstract]})
    rows = []
    for section, body, found in (
        ("title", title, [("Lithium", "Chemical"), ("toxicity", "Disease")]),
        ("abstract", abstract, [("Aspirin", "Chemical"), ("renal failure", "Disease"),
                                ("Ibuprofen", "Chemical")]),
    ):  # fmt: skip
        sentences = text.split_sentences(body)
        for name, kind in found:
            start = body.index(name)
            index = candidates.sentence_of(sentences, start)
            rows.append({"pmid": 7, "section": section, "sentence_index": index, "char_start": start,
                         "char_end": start + len(name), "text": name, "entity_type": kind, "score": 0.9,
                         "model": "m", "run_id": "r"})  # fmt: skip
    return articles, pa.Table.from_pylist(rows, schema=schemas.ENTITIES)


def cid_task(distance: int) -> RelationTask:
    options = RelationOptions(entities="E", keep_negative=False, max_sentence_distance=distance)
    metadata = {"marking": "typed", "argument_types": ["Chemical", "Disease"], "max_sentence_distance": 0}
    return RelationTask(options).for_models([metadata])


def test_gold_labels_as_one_hot_logits_decode_to_the_gold_relations():
    articles, entities = articles_and_entities()
    task = cid_task(distance=1)
    units = task.units(articles, {"entities": entities})
    pairs = [(u.section, u.arg1[0], u.arg2[0], u.sentences) for u in units]
    assert pairs == [
        ("title", "Lithium", "toxicity", (0, 0)),
        ("abstract", "Aspirin", "renal failure", (0, 0)),
        ("abstract", "renal failure", "Ibuprofen", (0, 1)),  # one sentence apart
    ]
    marked = "Aspirin caused <E1:Disease> renal failure </E1:Disease>. <E2:Chemical> Ibuprofen </E2:Chemical>"
    assert units[2].text == f"{marked} did not."
    gold = ["CID", "CID", "false"]
    id2label = {0: "CID", 1: "false"}
    one_hot = [[np.array([10.0, 0.0]) if g == "CID" else np.array([0.0, 10.0])] for g in gold]
    info = ModelInfo("m", id2label, {"negative_label": "false"})
    predictions = task.decode(units, [[{}]] * 3, one_hot, info)
    rows = task.rows(units, predictions)
    assert [(r["arg1_text"], r["arg2_text"], r["relation"]) for r in rows] == [
        ("Lithium", "toxicity", "CID"), ("Aspirin", "renal failure", "CID"),
    ]  # fmt: skip
    body = {"title": articles["title"][0].as_py(), "abstract": articles["abstract"][0].as_py()}
    for row in rows:
        for n in (1, 2):
            assert (
                body[row["section"]][row[f"arg{n}_char_start"] : row[f"arg{n}_char_end"]]
                == row[f"arg{n}_text"]
            )
    assert len(cid_task(distance=0).units(articles, {"entities": entities})) == 2


def test_entities_rows_that_do_not_match_their_article_are_rejected_and_the_rest_kept():
    articles, entities = articles_and_entities()
    rows = entities.to_pylist()
    rows[1]["text"] = "toxicities"  # not the article's text at its offsets
    rows.append({**rows[0], "pmid": 8})  # no such article in the shard
    task = cid_task(distance=0)
    units = task.units(articles, {"entities": pa.Table.from_pylist(rows, schema=schemas.ENTITIES)})
    assert [(u.arg1[0], u.arg2[0]) for u in units] == [("Aspirin", "renal failure")]
    reasons = [(r["pmid"], r["reason"]) for r in units.rejected]
    assert reasons == [
        (7, "text 'toxicities' does not match the article's 'toxicity' at 8-16"),
        (8, "no article 8 (section 'title') in the articles shard"),
    ]
    assert units.counts == {"pairs_skipped_by_cap": 0}
