"""`annotate qa`: questions answered over an articles table into the `answers` table, batch by batch
(on s3:// and as a Ray job: tests/test_jobs.py)."""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import run_notebook, save_tiny_qa_model, save_tiny_yesno_model

from biobert_ray import cli, query, retrieval, schemas, storage

pytestmark = pytest.mark.timeout(400)


def articles_frame(articles: str) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(uri) for uri in storage.list_files(articles, ".parquet")])


def write_questions(path, questions: list[dict]) -> str:
    path.write_text("".join(json.dumps(q) + "\n" for q in questions))
    return str(path)


def test_annotate_qa_answers_each_question_with_evidence_and_skips_complete_batches(
    tiny_bert, medline_160, tmp_path, capsys
):
    index = str(tmp_path / "index")
    assert cli.main(["index", "--articles", medline_160, "--index", index]) == 0
    frame = articles_frame(medline_160)
    titled = frame.filter(pl.col("abstract").is_not_null()).row(0, named=True)
    named = frame.filter(pl.col("abstract").is_not_null()).row(-1, named=True)
    questions = [
        {"id": "q1", "question": f"What is reported on {titled['title'].rstrip('.')}?"},
        {"id": "q2", "question": "Which genes are mutated in cancer?", "type": "list"},
        {"id": "q3", "question": "Is aspirin effective?", "type": "yesno"},
        {"id": "q4", "question": "What did this study find?", "pmids": [named["pmid"], 999]},
        {"id": "q5", "question": "What is missing?", "pmids": [999]},
        {"id": "q6", "question": "Did this study succeed?", "type": "yesno", "pmids": [named["pmid"]]},
    ]
    path = tmp_path / "questions.jsonl"
    out, model = str(tmp_path / "answers"), save_tiny_qa_model(tiny_bert, tmp_path / "qa")
    yesno = save_tiny_yesno_model(tiny_bert, tmp_path / "yesno")
    argv = ["annotate", "qa", "--articles", medline_160, "--model", model, "--index", index, "--out", out,
            "--questions", write_questions(path, questions), "--top-docs", "3", "--questions-per-batch", "2",
            "--cpus-per-actor", "0.5", "--yesno-model", yesno]  # fmt: skip
    assert cli.main(argv) == 0
    assert "annotate qa: 3 question batches (3 processed, 0 skipped, 0 failed), 6 questions, 5 answered" in (
        capsys.readouterr().out
    )
    answers = pl.read_parquet(f"{out}/*.parquet")
    assert answers.schema == pl.from_arrow(schemas.ANSWERS.empty_table()).schema
    texts = {(r["pmid"], s): r[s] or "" for r in frame.iter_rows(named=True) for s in ("title", "abstract")}
    spans = answers.filter(pl.col("answer").is_not_null() & (pl.col("question_type") != "yesno"))
    for row in spans.iter_rows(named=True):  # every answer points at its text and its sentence
        body = texts[(row["pmid"], row["section"])]
        assert body[row["char_start"] : row["char_end"]] == row["answer"]
        assert row["answer"] in row["evidence_sentence"] and row["evidence_sentence"] in body
    by_question = {q: group for (q,), group in spans.group_by("question_id")}
    top3 = {h.pmid for h in retrieval.open_index(index).search(questions[0]["question"], 3)}
    assert titled["pmid"] in top3 and set(by_question["q1"]["pmid"]) <= top3
    assert by_question["q1"]["rank"].to_list() == [1, 2, 3, 4, 5]  # --top-answers
    assert by_question["q1"]["score"].to_list() == sorted(by_question["q1"]["score"].to_list(), reverse=True)
    assert set(by_question["q4"]["pmid"]) == {named["pmid"]}  # the named article only (999 is not there)
    assert len({a.lower() for a in by_question["q2"]["answer"]}) == by_question["q2"].height  # merged
    # yes/no: one row each, the answer of the highest mean probability over the question's articles
    yes_no = {
        r["question_id"]: r for r in answers.filter(pl.col("question_type") == "yesno").iter_rows(named=True)
    }
    top3 = {h.pmid for h in retrieval.open_index(index).search(questions[2]["question"], 3)}
    assert set(yes_no) == {"q3", "q6"} and {r["answer"] for r in yes_no.values()} <= {"yes", "no"}
    assert set(yes_no["q3"]["supporting_pmids"]) <= top3 and yes_no["q3"]["score"] >= 0.5
    assert yes_no["q6"]["supporting_pmids"] == [named["pmid"]] == [yes_no["q6"]["pmid"]]
    assert yes_no["q6"]["model"] == yesno and yes_no["q6"]["rank"] == 1
    notes = dict(answers.filter(pl.col("answer").is_null()).select("question_id", "note").iter_rows())
    assert notes == {"q5": "none of its PMIDs is in the articles table"}
    run = json.loads((tmp_path / "answers" / "_run.json").read_text())
    batch_q6 = next(b for b in run["shards"] if b["name"] == "questions-00002")
    assert batch_q6["row_groups"] == 1  # only the row group that holds the named article was read
    assert not (tmp_path / "answers" / "_parts").exists() or not any(
        (tmp_path / "answers" / "_parts").iterdir()
    )

    # query: one question's ranked answers with their evidence; the note of an unanswered one
    ranked = query.answers_of(out, question_id="q1").collect()
    assert ranked["rank"].to_list() == [1, 2, 3, 4, 5] and ranked["evidence_sentence"].null_count() == 0
    assert query.answers_of(out, question="WHAT IS MISSING").collect()["note"].to_list() == [notes["q5"]]
    assert cli.main(["query", "answers", out, "--question-id", "q1", "--top", "2"]) == 0
    printed = capsys.readouterr().out
    assert ranked["answer"][0][:20] in printed and "evidence_sentence" in printed

    # a rerun skips every complete batch; a changed question redoes its batch only
    assert cli.main(argv) == 0
    assert "(0 processed, 3 skipped, 0 failed)" in capsys.readouterr().out
    questions[4]["question"] = "What else is missing?"
    write_questions(path, questions)
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        "redo questions-00002: input changed" in printed and "(1 processed, 2 skipped, 0 failed)" in printed
    )

    # the notebook over <out>/articles and <out>/answers
    (tmp_path / "articles").symlink_to(medline_160)
    printed = run_notebook("answers.ipynb", tmp_path)
    assert f"6 questions, {spans.height + 2} answers" in printed and "What else is missing?" in printed
    assert (tmp_path / "answer_scores.png").exists()
