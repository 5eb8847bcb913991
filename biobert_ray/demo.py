"""``biobert-ray demo``: the whole product on bundled data, on a laptop, with no network.

Entities, then relations, then answers, over the bundled MEDLINE sample:

1. ingest the sample into an ``articles`` table;
2. fine-tune a typed NER model (Chemical and Disease) on BC5CDR training sentences, from the
   pretrained all-MiniLM-L6-v2 BERT;
3. evaluate it on the BC5CDR test set;
4. annotate the sample into an ``entities`` table;
5. fine-tune a chemical-induced-disease relation model on candidate pairs of the BC5CDR-CID training
   abstracts (typed entity markers, same sentence);
6. evaluate it on the BC5CDR-CID test abstracts (document level, gold mentions);
7. annotate the sample's chemical-disease pairs into a ``relations`` table;
8. query both tables with polars;
9. fine-tune a question answering (span) model on the BioASQ training set built from the 4b and 5b
   golden files;
10. evaluate it on BioASQ 6b batch 1 (factoid questions of BioBERT's test file, with the batch's gold);
11. fine-tune a yes/no/maybe model on PubMedQA training questions;
12. evaluate it on the PubMedQA test set (accuracy, macro-F1);
13. index the sample (BM25) and answer the bundled questions over it into an ``answers`` table (the
    span model for factoid and list questions, the yes/no model for yes/no ones);
14. print each question's best answers with their evidence.

The training sets are slices (``train_sentences``, ``train_pairs``, ``train_questions``,
``train_yesno``) so that the demo stays within about 12 minutes on 2 cores; the scores are those of
small, quickly trained models.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from biobert_ray import (
    annotate,
    evaluation,
    finetune,
    ingest,
    query,
    retrieval,
    runs,
    samples,
    storage,
    tasks,
)
from biobert_ray import config as cfg
from biobert_ray.tasks.ner import NerOptions
from biobert_ray.tasks.qa.task import QaOptions
from biobert_ray.tasks.qa.yesno import YesNoOptions
from biobert_ray.tasks.relation.task import RelationOptions

STEPS = 14


def _step(number: int, text: str) -> None:
    print(f"[{number}/{STEPS}] {text}")


def run(
    out: str,
    train_sentences: int = 2000,
    train_pairs: int = 2250,
    train_questions: int = 800,
    train_yesno: int = 200,
) -> dict[str, Any]:
    """Run the demo into ``out``; returns the test scores of the three models and the table counts."""
    from biobert_ray.cli import print_annotate_summary, print_answers_summary, print_ingest_summary

    names = ("articles", "entities", "relations", "answers", "ner-chem-disease", "re-cid", "qa-bioasq",
             "yesno-pubmedqa")  # fmt: skip
    articles, entities, relations, answers, ner_model, re_model, qa_model, yesno_model = (
        storage.join(out, name) for name in names
    )

    _step(1, f"ingest the bundled MEDLINE sample -> {articles}")
    sample = cfg.IngestConfig(input=(samples.pubmed_sample(),), out=articles, overwrite=True)
    print_ingest_summary(ingest.run(sample))

    _step(2, f"fine-tune NER (Chemical, Disease) on {train_sentences} BC5CDR sentences -> {ner_model}")
    ner = tasks.make_task("ner", NerOptions())
    training = cfg.FinetuneConfig(
        train=samples.bc5cdr_typed("train"), out=ner_model, max_train_samples=train_sentences, epochs=2,
        batch_size=16, learning_rate=2e-4, warmup_ratio=0.0, max_seq_length=128, num_workers=1,
        run_name=f"demo-ner-{runs.new_run_id()}",
    )  # fmt: skip
    finetune.finetune("ner", training, ner.options, log=print)

    _step(3, "evaluate NER on the BC5CDR test set (entity-level strict F1)")
    test = cfg.EvaluateConfig(model=ner_model, data=samples.bc5cdr_typed("test"))
    ner_scores = evaluation.evaluate("ner", test)
    print(ner.report(ner_scores))

    _step(4, f"annotate the sample's entities -> {entities}")
    config = cfg.AnnotateConfig(articles=articles, model=(ner_model,), out=entities, overwrite=True)
    print_annotate_summary(annotate.run("ner", config))

    _step(5, f"fine-tune RE (chemical-induced disease) on {train_pairs} BC5CDR-CID pairs -> {re_model}")
    cid = tasks.make_task("re", RelationOptions(marking="anonymized", max_sentence_distance=0))
    training = cfg.FinetuneConfig(
        train=samples.bc5cdr_cid("train"), out=re_model, max_train_samples=train_pairs, epochs=1,
        batch_size=16, learning_rate=2e-4, max_seq_length=128, num_workers=1,
        run_name=f"demo-re-{runs.new_run_id()}",
    )  # fmt: skip
    finetune.finetune("re", training, cid.options, log=print)

    _step(6, "evaluate RE on the BC5CDR-CID test abstracts (document level, gold mentions)")
    test = cfg.EvaluateConfig(model=re_model, data=samples.bc5cdr_cid("test"))
    re_scores = evaluation.evaluate("re", test)
    print(cid.report(re_scores))

    _step(7, f"annotate the sample's chemical-disease pairs -> {relations}")
    config = cfg.AnnotateConfig(articles=articles, model=(re_model,), out=relations, overwrite=True)
    print_annotate_summary(annotate.run("re", config, RelationOptions(entities=entities)))

    _step(8, "query: the most mentioned entities and the relations found in the most articles")
    tables = {"tbl_rows": 10, "tbl_hide_dataframe_shape": True, "tbl_hide_column_data_types": True}
    with pl.Config(**tables, fmt_str_lengths=30):
        print(query.top_entities(entities, None, 10).collect())
        pairs = query.relations_of(relations, by="articles").head(10)
        print(pairs.select("arg1", "arg1_type", "arg2", "arg2_type", "articles", "best_score").collect())

    _step(9, f"fine-tune QA on {train_questions} BioASQ 4b+5b question-snippet entries -> {qa_model}")
    qa = tasks.make_task("qa", QaOptions())
    training = cfg.FinetuneConfig(
        train=samples.bioasq("train"), out=qa_model, max_train_samples=train_questions, epochs=1,
        batch_size=16, learning_rate=1e-4, max_seq_length=128, stride=32, num_workers=1,
        run_name=f"demo-qa-{runs.new_run_id()}",
    )  # fmt: skip
    finetune.finetune("qa", training, qa.options, log=print)

    _step(10, "evaluate QA on BioASQ 6b batch 1 (factoid: strict and lenient accuracy, MRR)")
    qa = tasks.make_task("qa", QaOptions(gold=samples.bioasq("golden-6b1")))
    test = cfg.EvaluateConfig(model=qa_model, data=samples.bioasq("test-6b1"))
    qa_scores = evaluation.evaluate("qa", test, qa.options)
    print(qa.report(qa_scores))

    _step(11, f"fine-tune yes/no on {train_yesno} PubMedQA training questions -> {yesno_model}")
    training = cfg.FinetuneConfig(
        train=samples.pubmedqa("train"), out=yesno_model, max_train_samples=train_yesno, epochs=1,
        batch_size=16, learning_rate=1e-4, max_seq_length=256, stride=64, num_workers=1,
        run_name=f"demo-yesno-{runs.new_run_id()}",
    )  # fmt: skip
    finetune.finetune("yesno", training, YesNoOptions(), log=print)

    _step(12, "evaluate yes/no on the PubMedQA test set (accuracy, macro-F1)")
    yesno = tasks.make_task("yesno", YesNoOptions())
    test = cfg.EvaluateConfig(model=yesno_model, data=samples.pubmedqa("test"))
    yesno_scores = evaluation.evaluate("yesno", test)
    print(yesno.report(yesno_scores))

    _step(13, f"index the sample (BM25) and answer the bundled questions over it -> {answers}")
    retrieval.build_index(articles, log=lambda *_: None)
    options = QaOptions(questions=samples.demo_questions(), top_docs=3, yesno_model=yesno_model)
    config = cfg.AnnotateConfig(articles=articles, model=(qa_model,), out=answers, overwrite=True)
    print_answers_summary(annotate.run("qa", config, options))

    _step(14, "query: each question's best answers, with their evidence")
    best = query.answers_of(answers).filter(pl.col("rank").fill_null(1) <= 2).collect()
    with pl.Config(**{**tables, "tbl_rows": 20}, fmt_str_lengths=90, tbl_width_chars=200):
        print(best.select(query.ANSWER_COLUMNS_SHOWN))
    summary = {
        "ner_test_f1": ner_scores["overall"]["f1"],
        "re_test_document_f1": re_scores["document"]["f1"],
        "qa_test_factoid": qa_scores["factoid"],
        "yesno_test": {k: yesno_scores[k] for k in ("accuracy", "macro_f1")},
        "entities": pl.scan_parquet(storage.join(entities, "*.parquet")).select(pl.len()).collect().item(),
        "relations": pl.scan_parquet(storage.join(relations, "*.parquet")).select(pl.len()).collect().item(),
        "answers": query.answers(answers).select(pl.col("answer").count()).collect().item(),
    }
    print(
        f"NER test F1 {summary['ner_test_f1']:.4f}, RE test document F1 "
        f"{summary['re_test_document_f1']:.4f}, QA 6b-1 factoid MRR {summary['qa_test_factoid']['mrr']:.4f}, "
        f"PubMedQA accuracy {yesno_scores['accuracy']:.4f}; "
        f"{summary['entities']} entities, {summary['relations']} relations, {summary['answers']} answers; "
        f"tables in {out}/"
    )
    return summary
