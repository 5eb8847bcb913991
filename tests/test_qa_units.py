"""Question answering without training: windows and spans (oracle logits), BioASQ and PubMedQA scores
computed by hand, the files, the BioASQ training set, and yes/no evaluation with a tiny classifier."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest
from conftest import save_tiny_yesno_model

from biobert_ray import cli
from biobert_ray.answers import merge, plan
from biobert_ray.lines import FormatError
from biobert_ray.models import load_tokenizer
from biobert_ray.tasks.base import ModelInfo
from biobert_ray.tasks.qa import QaTask, metrics, spans
from biobert_ray.tasks.qa.bioasq_train import build_training_set, find_answer
from biobert_ray.tasks.qa.formats import QaExample, QaFormatError, read_examples
from biobert_ray.tasks.qa.questions import Question, read_questions
from biobert_ray.tasks.qa.task import ContextAnswers, QaOptions, rank_answers
from biobert_ray.tasks.qa.yesno_files import read_yesno

CONTEXT = (
    "Mutations in the BRCA1 gene increase the risk of breast cancer . The protein encoded by BRCA1 "
    "repairs damaged DNA , and carriers of pathogenic variants develop ovarian cancer more often . "
    "Tamoxifen reduces the incidence of contralateral breast cancer in carriers of such mutations ."
)


def oracle_logits(window: dict, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end logits of one window's context that point at the context sub-tokens
    ``first..last`` (context-wide indices) where the window holds them."""
    n = len(window["offsets"])
    offset = window["_first"]
    start, end = np.full(n, -10.0), np.full(n, -10.0)
    if offset <= first < offset + n:
        start[first - offset] = 10.0
    if offset <= last < offset + n:
        end[last - offset] = 10.0
    return start, end


def context_offsets(tokenizer, context: str) -> list[tuple[int, int]]:
    """The character span of each sub-token of ``context``."""
    encoded = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
    return [tuple(o) for o in encoded["offset_mapping"]]


def context_windows(tokenizer, question: str, context: str, max_length: int, stride: int, answer=None):
    windows = spans.encode_pair(question, context, tokenizer, max_length, stride, 64, answer, labelled=True)
    # where each window's context starts among the context's sub-tokens (from its first offset)
    all_offsets = context_offsets(tokenizer, context)
    for window in windows:
        window["_first"] = all_offsets.index(window["offsets"][0])
    return windows, all_offsets


@pytest.mark.parametrize(
    ("answer_text", "crosses_an_edge"),
    [("pathogenic variants", False), ("BRCA1 gene", False), ("contralateral breast cancer", True)],
)
def test_oracle_logits_decode_to_the_gold_answer_and_offsets_across_window_boundaries(
    tiny_bert, answer_text, crosses_an_edge
):
    tokenizer = load_tokenizer(tiny_bert)
    question = "Which gene ?"
    start = CONTEXT.index(answer_text)
    windows, offsets = context_windows(tokenizer, question, CONTEXT, 24, 6, (answer_text, start))
    assert len(windows) >= 4  # the context spans several windows
    first = next(i for i, (a, b) in enumerate(offsets) if b > start)
    last = max(i for i, (a, b) in enumerate(offsets) if a < start + len(answer_text))
    # the windows cover the context, and the answer crosses the edge of one of them
    assert {i for w in windows for i in range(w["_first"], w["_first"] + len(w["offsets"]))} == set(
        range(len(offsets))
    )
    # training labels: the windows holding the whole answer point at it, the others at [CLS]
    holding = [w for w in windows if w["_first"] <= first and last < w["_first"] + len(w["offsets"])]
    assert holding and len(holding) < len(windows)
    crossing = [w for w in windows if w["_first"] <= first < w["_first"] + len(w["offsets"]) <= last]
    assert bool(crossing) == crosses_an_edge
    for w in windows:
        if w in holding:
            s, e = w["start_positions"] - w["context_start"], w["end_positions"] - w["context_start"]
            assert CONTEXT[w["offsets"][s][0] : w["offsets"][e][1]] == answer_text
        else:
            assert w["start_positions"] == w["end_positions"] == 0
    logits = [oracle_logits(w, first, last) for w in windows]
    best = spans.best_spans(CONTEXT, windows, logits, n_best=5, max_answer_length=30)
    assert (best[0].text, best[0].char_start, best[0].char_end) == (
        answer_text,
        start,
        start + len(answer_text),
    )
    assert best[0].probability > 0.99 and len({(s.char_start, s.char_end) for s in best}) == len(best)


def test_a_span_two_windows_propose_is_read_where_its_start_has_the_most_context(tiny_bert):
    """BERT's token_is_max_context: the copy from the window centring the start sub-token counts, even
    when another window scores the span higher."""
    tokenizer = load_tokenizer(tiny_bert)
    windows, offsets = context_windows(tokenizer, "Which gene ?", CONTEXT, 24, 6)
    # the windows from sub-tokens 20 and 30 both hold it; its start is the 12th of the first, the 2nd
    # of the second: the first reads it (the old whole-span rule saw a tie, one sub-token on each side)
    start = CONTEXT.index("pathogenic variants")
    first = next(i for i, (a, b) in enumerate(offsets) if b > start)
    last = max(i for i, (a, b) in enumerate(offsets) if a < start + len("pathogenic variants"))
    holding = [w for w in windows if w["_first"] <= first and last < w["_first"] + len(w["offsets"])]
    assert len(holding) == 2

    def context_of(window):  # BERT's measure for the start sub-token in this window
        j, n = first - window["_first"], len(window["offsets"])
        return min(j, n - 1 - j) + 0.01 * n

    other = min(holding, key=context_of)
    logits = []
    for window in windows:
        start_logits, end_logits = oracle_logits(window, first, last)
        if window is other:
            start_logits, end_logits = start_logits * 1.5, end_logits * 1.5  # 30 against 20
        logits.append((start_logits, end_logits))
    best = spans.best_spans(CONTEXT, windows, logits, n_best=5, max_answer_length=30)
    assert (best[0].text, best[0].score) == ("pathogenic variants", 20.0)


def test_task_decodes_and_ranks_answers_over_a_questions_contexts(tiny_bert):
    tokenizer = load_tokenizer(tiny_bert)
    task = QaTask(QaOptions(n_best=5))
    second = "BRCA1 and BRCA2 are tumour suppressor genes ."
    examples = [
        QaExample("q_000", "q", "Which gene ?", CONTEXT, gold=(("BRCA1",),)),
        QaExample("q_001", "q", "Which gene ?", second, gold=(("BRCA1",),)),
    ]
    windows = task.encode(examples, tokenizer, 32, 8)
    selected = []
    for example, unit_windows in zip(examples, windows, strict=True):
        answer_start = example.context.index("BRCA1")
        offsets = context_offsets(tokenizer, example.context)
        target = next(i for i, (a, b) in enumerate(offsets) if b > answer_start)
        unit = []
        for w in unit_windows:
            w["_first"] = offsets.index(w["offsets"][0])
            outputs = np.full((2, len(w["input_ids"])), -10.0, dtype=np.float32)
            if w["_first"] <= target < w["_first"] + len(w["offsets"]):
                outputs[:, w["context_start"] + target - w["_first"]] = 10.0
            unit.append(task.select(w, {"start_logits": outputs[0], "end_logits": outputs[1]}))
        selected.append(unit)
    predictions = task.decode(examples, windows, selected, ModelInfo("m", {0: "start", 1: "end"}, {}))
    ranked = rank_answers(examples, predictions)
    top = ranked["q"][0]
    assert top.text == "BRCA1" and top.example in (0, 1)
    assert examples[top.example].context[top.char_start : top.char_end] == "BRCA1"
    assert len({metrics.normalize(a.text) for a in ranked["q"]}) == len(ranked["q"])  # merged
    scores = task.score(examples, predictions)
    assert scores["factoid"]["strict_accuracy"] == 1.0 and scores["primary"]["value"] == 1.0


def test_normalisation_and_factoid_scores_computed_by_hand():
    assert metrics.normalize("  IL-6. ") == "il-6" and metrics.normalize("Il\u00a0 6") == "il 6"
    gold = {"a": [["Intravenous", "IV"]], "b": [["BRCA1"]], "c": [["tamoxifen"]], "d": [["x"]]}
    predicted = {
        "a": ["iv.", "oral"],  # rank 1 (a synonym, case and punctuation)
        "b": ["BRCA2", "TP53", "BRCA1"],  # rank 3
        "c": ["a", "b", "c", "d", "e", "Tamoxifen"],  # rank 6: outside the top 5
    }  # "d": no prediction
    scores = metrics.factoid_scores(predicted, gold)
    assert scores["strict_accuracy"] == pytest.approx(1 / 4)
    assert scores["lenient_accuracy"] == pytest.approx(2 / 4)
    assert scores["mrr"] == pytest.approx((1 + 1 / 3) / 4)


def test_list_scores_computed_by_hand():
    gold = {"a": [["H3K4me1"], ["H3K27ac", "H3 K27 acetylation"]], "b": [["x"], ["y"], ["z"]], "c": [["q"]]}
    predicted = {
        "a": ["h3k4me1", "H3K27ac", "H3 K27 acetylation", "H3K9me3"],  # 2 right, a repeated entity, 1 wrong
        "b": ["y"],
    }  # "c": nothing
    one = metrics.list_question_scores(predicted["a"], gold["a"])
    assert (one["precision"], one["recall"]) == (0.5, 1.0) and one["f1"] == pytest.approx(2 / 3)
    scores = metrics.list_scores(predicted, gold)
    assert scores["precision"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert scores["recall"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert scores["f1"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)


def test_yes_no_accuracy_and_macro_f1_computed_by_hand():
    gold = ["yes", "yes", "yes", "no", "no", "maybe"]
    pred = ["yes", "yes", "no", "no", "yes", "no"]
    scores = metrics.classification_scores(gold, pred, ["yes", "no", "maybe"])
    assert scores["accuracy"] == pytest.approx(3 / 6)
    # yes: P 2/3 R 2/3 F1 2/3; no: P 1/3 R 1/2 F1 0.4; maybe: 0
    assert scores["per_class"]["no"]["f1"] == pytest.approx(0.4)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.4 + 0) / 3)


def golden(tmp_path, questions) -> str:
    path = tmp_path / "golden.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump({"questions": questions}, f)
    return str(path)


QUESTIONS = [
    {"id": "a" * 24, "type": "factoid", "body": "Which enzyme?", "exact_answer": [["ACE", "kininase II"]],
     "snippets": [{"text": "The surface protein binds.", "document": "http://www.ncbi.nlm.nih.gov/pubmed/1"},
                  {"text": "Inhibitors of ace lower blood pressure.", "document": "http://x/pubmed/2"}]},
    {"id": "b" * 24, "type": "list", "body": "Which marks?", "exact_answer": [["H3K4me1"], ["H3K27ac"]],
     "snippets": [{"text": "Both H3K27ac and H3K4me1 mark enhancers.", "document": "http://x/pubmed/3"}]},
    {"id": "c" * 24, "type": "factoid", "body": "Never answered?", "exact_answer": [["nothing"]],
     "snippets": [{"text": "No answer here.", "document": "http://x/pubmed/4"}]},
    {"id": "d" * 24, "type": "yesno", "body": "Is it?", "exact_answer": "yes", "snippets": []},
]  # fmt: skip


def test_bioasq_training_set_keeps_snippets_holding_an_answer_and_says_why_others_were_dropped(
    tmp_path, capsys
):
    assert find_answer("The surface protein", ["ACE"]) is None  # not inside a word
    assert find_answer("inhibitors of ace", ["kininase", "ACE"]) == ("ace", 14)
    _, report = build_training_set([golden(tmp_path, QUESTIONS)])
    assert report["questions_kept"] == {"factoid": 1, "list": 1} and report["entries"] == 3
    assert report["questions_dropped"] == {
        "factoid: no exact answer occurs in a snippet": 1,
        "yesno: not answered by a span": 1,
    }
    out = tmp_path / "train.json"
    assert cli.main(["data", "bioasq-train", "--golden", golden(tmp_path, QUESTIONS), "--out", str(out)]) == 0
    assert "dropped 1: factoid: no exact answer occurs in a snippet" in capsys.readouterr().out
    examples = read_examples(str(out))
    assert [(e.question_id, e.kind, e.answers) for e in examples] == [
        ("a" * 24, "factoid", (("ace", 14),)),
        ("b" * 24, "list", (("H3K4me1", 17),)),
        ("b" * 24, "list", (("H3K27ac", 5),)),
    ]


def test_files_read_with_gold_and_malformed_records_named(tmp_path):
    examples = read_examples(golden(tmp_path, QUESTIONS))
    assert len(examples) == 4 and examples[0].pmid == 1 and examples[0].gold == (("ACE", "kininase II"),)
    squad = {"data": [{"paragraphs": [{"context": "Inhibitors of ace.", "qas": [
        {"id": "a" * 24 + "_000", "question": "Which enzyme?"},
        {"id": "d" * 24 + "_000", "question": "Is it?"}]}]}]}  # fmt: skip
    path = tmp_path / "test.json"
    path.write_text(json.dumps(squad))
    with_gold = read_examples(str(path), gold=golden(tmp_path, QUESTIONS))
    assert [(e.question_id, e.gold) for e in with_gold] == [
        ("a" * 24, (("ACE", "kininase II"),))
    ]  # yes/no dropped
    squad["data"][0]["paragraphs"][0]["qas"][0]["answers"] = [{"text": "ace", "answer_start": 3}]
    path.write_text(json.dumps(squad))
    with pytest.raises(QaFormatError, match=rf"test.json: question {'a' * 24}_000: answer 'ace' is 'ibi'"):
        read_examples(str(path))
    path.write_text("{not json")
    with pytest.raises(QaFormatError, match=r"test\.json: document: not JSON"):
        read_examples(str(path))


def test_list_answers_use_the_threshold_chosen_on_dev(tiny_bert):
    task = QaTask()
    examples = [QaExample(f"q_{i}", "q", "?", "x", kind="list", gold=(("a",), ("b",))) for i in range(2)]
    found = [
        ContextAnswers((spans.Span("a", 0, 1, 5.0, 0.6), spans.Span("c", 0, 1, 1.0, 0.3)), 0.5),
        ContextAnswers((spans.Span("b", 0, 1, 4.0, 0.4),), 0.5),
    ]
    scores = task.score(examples, found)["list"]
    assert scores["f1"] == pytest.approx(2 / 3)  # only "a" kept at 0.5
    # F1 1.0 from 0.35 to 0.4 (b kept, c not); the tie goes to the threshold nearest 0.5
    assert scores["best_threshold"] == 0.4 and scores["f1_by_threshold"][0.35] == pytest.approx(1.0)
    model = ModelInfo("m", {}, {"dev_scores": {"list": {"best_threshold": 0.4}}})
    assert task._list_threshold(model) == 0.4
    assert QaTask(QaOptions(list_threshold=0.2))._list_threshold(model) == 0.2


def pubmedqa_dir(tmp_path, n: int = 40) -> str:
    """A PubMedQA-format directory of ``n`` questions, the odd PMIDs in the official test list."""
    labels = ("yes", "no", "maybe")
    records = {
        str(1000 + i): {
            "QUESTION": f"Does drug {i} reduce mortality?",
            "CONTEXTS": [f"Background {i} on the drug.", "Patients given the drug died less often."],
            "final_decision": labels[i % 3],
        }
        for i in range(n)
    }
    directory = tmp_path / "pubmedqa"
    directory.mkdir()
    (directory / "ori_pqal.json").write_text(json.dumps(records))
    test = {pmid: r["final_decision"] for pmid, r in records.items() if int(pmid) % 2}
    (directory / "test_ground_truth.json").write_text(json.dumps(test))
    return str(directory)


def test_yes_no_files_split_pubmedqa_by_document_and_read_bioasq_yes_no_questions(tmp_path):
    directory = pubmedqa_dir(tmp_path)
    splits = {s: read_yesno(f"{directory}#{s}") for s in ("train", "dev", "test")}
    assert len(splits["test"]) == 20 and all(int(e.id) % 2 for e in splits["test"])
    assert len(splits["train"]) + len(splits["dev"]) == 20 and splits["dev"]
    assert not {e.id for e in splits["train"]} & {e.id for e in splits["dev"]}
    assert read_yesno(f"{directory}/ori_pqal.json#dev") == splits["dev"]  # the file or its directory
    first = read_yesno(directory)[0]
    assert first.context == "Background 0 on the drug. Patients given the drug died less often."
    assert first.label == "yes"
    bioasq = read_yesno(golden(tmp_path, QUESTIONS))
    assert [(e.id, e.label, e.context) for e in bioasq] == [("d" * 24, "yes", "")]
    with pytest.raises(ValueError, match="unknown split 'val'"):
        read_yesno(f"{directory}#val")
    broken = json.loads((tmp_path / "pubmedqa" / "ori_pqal.json").read_text())
    del broken["1003"]["final_decision"]
    (tmp_path / "pubmedqa" / "ori_pqal.json").write_text(json.dumps(broken))
    with pytest.raises(QaFormatError, match=r"ori_pqal\.json: PMID 1003: missing"):
        read_yesno(directory)


def test_evaluate_yesno_scores_every_question_with_a_tiny_classifier(tiny_bert, tmp_path, capsys):
    out = save_tiny_yesno_model(tiny_bert, tmp_path / "yesno", ("maybe", "no", "yes"))
    data = f"{pubmedqa_dir(tmp_path)}#test"
    args = ["evaluate", "yesno", "--model", out, "--data", data, "--max-seq-length", "24", "--stride", "8"]
    assert cli.main([*args, "--out", str(tmp_path / "scores.json")]) == 0
    printed = capsys.readouterr().out
    assert "(20 examples)" in printed and "yes/no (20 questions): accuracy" in printed
    scores = json.loads((tmp_path / "scores.json").read_text())
    counted = sum(row["support"] for row in scores["per_class"].values())
    assert counted == 20 and scores["primary"]["name"] == "macro f1"


def test_questions_come_as_json_lines_or_bioasq_json_and_a_bad_line_is_named(tmp_path):
    good = tmp_path / "questions.jsonl"
    good.write_text(
        '{"id": "q1", "question": "Which gene causes ataxia?"}\n\n'
        '{"id": 2, "question": "Is BRCA1 a tumour suppressor?", "type": "yesno", "pmids": [123, "456"]}\n'
    )
    assert read_questions(str(good)) == [
        Question("q1", "Which gene causes ataxia?"),
        Question("2", "Is BRCA1 a tumour suppressor?", "yesno", (123, 456)),
    ]
    summary = {"id": "e" * 24, "type": "summary", "body": "What is ACE?"}
    bioasq = read_questions(
        golden(tmp_path, [{**QUESTIONS[0], "documents": ["http://x/pubmed/77"]}, summary])
    )
    assert bioasq == [
        Question("a" * 24, "Which enzyme?", "factoid", (77,)),
        Question("e" * 24, "What is ACE?", "summary"),
    ]
    cases = {
        '{"id": "q1", "question": "x"}\n{"id": "q1", "question": "y"}\n': ":2: id 'q1' already on line 1",
        '{"id": "q1", "question": "x", "type": "summary"}\n': ":1: type 'summary' is not one of",
        '{"id": "q1"}\n': ":1: no 'question' text",
        '{"id": "q1", "question": "x", "pmids": ["PMC1"]}\n': ":1: 'pmids' must be a list of PubMed ids",
        '{"id": "q1", "question": "x"}\n{"id": \n': ":2: not JSON",
    }
    for content, message in cases.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text(content)
        with pytest.raises(FormatError, match=re.escape(f"bad.jsonl{message}")):
            read_questions(str(bad))


def test_spans_are_widened_to_whole_words():
    context = "Mutations in BRCA1-associated genes (IL-6)."
    assert context[14:20] == "RCA1-a" and spans.whole_words(context, 14, 20) == (13, 29)  # BRCA1-associated
    assert spans.whole_words(context, 13, 30) == (13, 30)  # already on word edges
    assert spans.whole_words(context, 38, 40) == (37, 40)  # "L-" -> "IL-": a word ends at punctuation
    assert spans.whole_words(context, 0, 3) == (0, 9)


def test_a_word_keeps_its_best_start_within_a_window(tiny_bert):
    """Two starts inside one word widen to the same span: the span keeps the better score."""
    tokenizer = load_tokenizer(tiny_bert)
    context = "Patients took naltrexone daily ."
    windows, offsets = context_windows(tokenizer, "Which drug ?", context, 64, 8)
    pieces = [i for i, (a, b) in enumerate(offsets) if 14 <= a < 24]  # the sub-tokens of "naltrexone"
    assert len(pieces) >= 2 and len(windows) == 1
    start, end = np.full(len(offsets), -10.0), np.full(len(offsets), -10.0)
    start[pieces[0]], start[pieces[1]], end[pieces[-1]] = 5.0, 1.0, 5.0
    start[0], end[0] = 3.0, 3.0  # "Patients", scoring 6
    best = spans.best_spans(context, windows, [(start, end)], n_best=5, max_answer_length=10)
    assert (best[0].text, best[0].score) == ("naltrexone", 10.0)


def test_a_yes_no_answer_is_the_class_of_the_highest_mean_probability_over_the_articles():
    questions = [Question("y1", "Is it?", "yesno"), Question("y2", "Is so?", "yesno"), Question("f", "What?"),
                 Question("s", "Why?", "summary")]  # fmt: skip
    articles = {1: {"yes": 0.9, "no": 0.1}, 2: {"yes": 0.3, "no": 0.7}, 3: {"yes": 0.8, "no": 0.2}}
    votes = [
        {"question_id": "y1", "pmid": pmid, "answer": label, "probability": p, "model": "m"}
        for pmid, probabilities in articles.items()
        for label, p in probabilities.items()
    ]
    work, notes = plan.work_list(questions[1:2] + questions[3:], None, 3, ["span"])  # types no pass reads
    assert work == {"span": {}} and notes == {"y2": plan.UNREAD["yesno"], "s": plan.UNREAD["summary"]}
    rows = merge.answer_rows(questions, [], votes, notes, {"qa": 0.5}, 5, "run")
    yes = rows[0]
    assert (yes["answer"], yes["rank"], yes["model"]) == ("yes", 1, "m")
    assert yes["score"] == pytest.approx((0.9 + 0.3 + 0.8) / 3)
    assert yes["supporting_pmids"] == [1, 3] and yes["pmid"] == 1  # the articles that say yes, surest first
    assert [(r["question_id"], r.get("note")) for r in rows[1:]] == [
        ("y2", notes["y2"]),
        ("f", "its articles gave no answer span"),
        ("s", notes["s"]),
    ]


def test_token_type_ids_go_only_to_models_whose_tokenizer_makes_them(tiny_bert):
    from transformers import AutoTokenizer

    bert = load_tokenizer(tiny_bert)
    roberta_like = AutoTokenizer.from_pretrained(tiny_bert, model_input_names=["input_ids", "attention_mask"])
    for tokenizer, typed in ((bert, True), (roberta_like, False)):
        windows = spans.encode_pair("Which gene ?", CONTEXT, tokenizer, 24, 8, 64)
        batch = spans.pair_inputs(windows, tokenizer.pad_token_id)
        assert ("token_type_ids" in batch) is typed and batch["input_ids"].shape == batch[
            "attention_mask"
        ].shape
