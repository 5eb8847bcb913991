"""The ``biobert-ray`` command line: one subcommand per job, each a thin layer over the library.

Exit status: 0 on success, 1 when a run finished but reported bad input (the summary names the
files and the errors table holds the rows), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from biobert_ray import config as cfg
from biobert_ray import console, storage, tasks


def print_ingest_summary(report: dict[str, Any]) -> None:
    """Print the counts of an ingest run and name every file that failed."""
    c = report["counts"]
    print(
        f"ingest: {c['files']} files ({c['files_processed']} processed, {c['files_skipped']} skipped, "
        f"{c['files_failed']} failed), {c['records']} records -> {c['articles']} articles, "
        f"{c['deletions']} deletions, {c['errors']} errors; "
        f"{report['wall_seconds']:.1f}s, {report['records_per_second'] or 0:.0f} records/s"
    )
    out = report["config"]["out"]
    for failed in report["failed_files"]:
        print(f"  FAILED {failed['source']}: {failed['reason']}")
    if c["errors"]:
        print(f"  error rows: {storage.join(out, '_errors')} (source_file, record_index, pmid, reason)")
    print(f"  summary: {storage.join(out, '_run.json')}")


def ingest_command(args: argparse.Namespace) -> int:
    """``biobert-ray ingest``: run the ingest job and print its summary."""
    from biobert_ray import ingest

    config = cfg.from_args(
        cfg.IngestConfig, args, input=tuple(args.patterns) + tuple(args.input or ()) or None
    )
    report = ingest.run(config)
    print_ingest_summary(report)
    return 1 if report["counts"]["errors"] or report["status"] != "ok" else 0


def query_articles_command(args: argparse.Namespace) -> int:
    """``biobert-ray query articles``: print articles (or their count), optionally current versions only."""
    import polars as pl

    from biobert_ray import query

    frame = query.current_articles(args.table) if args.current else query.articles(args.table)
    if args.pmid:
        frame = frame.filter(pl.col("pmid").is_in(args.pmid))
    if args.count:
        print(frame.select(pl.len()).collect().item())
        return 0
    with pl.Config(tbl_rows=args.limit, fmt_str_lengths=60):
        print(frame.select("pmid", "pub_year", "journal", "title", "source_file").head(args.limit).collect())
    return 0


def task_configs(config_cls: type, args: argparse.Namespace) -> tuple[Any, Any]:
    """The job's config and the task's options (``args.task``) from the command line and ``--config``."""
    options_cls = tasks.task_class(args.task).Options
    config = cfg.from_args(config_cls, args, others=(options_cls,))
    return config, cfg.from_args(options_cls, args, others=(config_cls,))


def finetune_command(args: argparse.Namespace) -> int:
    """``biobert-ray finetune TASK``: fine-tune with Ray Train, export the best model, print its scores."""
    from biobert_ray import finetune

    config, options = task_configs(cfg.FinetuneConfig, args)
    summary = finetune.finetune(args.task, config, options)
    print(f"best epoch {summary['best_epoch'] + 1}; model saved to {config.out}")
    if summary["dev_scores"]:
        print(tasks.make_task(args.task, options).report(summary["dev_scores"]))
    return 0


def crossval_command(args: argparse.Namespace) -> int:
    """``biobert-ray crossval TASK``: every fold as a Ray Tune trial; print each fold, the mean and sd."""
    from biobert_ray import crossval

    config, options = task_configs(cfg.CrossvalConfig, args)
    summary = crossval.crossval(args.task, config, options)
    mean, sd = summary["mean"], summary["sd"]
    scores = ", ".join(f"{key} {mean[key]:.4f} (sd {sd[key]:.4f})" for key in mean)
    print(f"crossval {args.task}: {len(summary['folds'])} folds, mean {scores}")
    print(f"  per fold and config: {storage.join(config.out, 'crossval.json')}")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    """``biobert-ray evaluate TASK``: score a model on a labelled file, print (and save) the report.

    A model fine-tuned for another task is refused (exit status 2).
    """
    from biobert_ray import evaluation

    config, options = task_configs(cfg.EvaluateConfig, args)
    result = evaluation.evaluate(args.task, config, options)
    print(f"{result['model']} on {result['data']} ({result['examples']} examples)")
    print(tasks.make_task(args.task, options).report(result))
    return 0


def print_answers_summary(report: dict[str, Any]) -> None:
    """Print the counts of an ``annotate qa`` run and name every failed batch."""
    c = report["counts"]
    print(
        f"annotate qa: {c['batches']} question batches ({c['batches_processed']} processed, "
        f"{c['batches_skipped']} skipped, {c['batches_failed']} failed), {c['questions']} questions, "
        f"{c['answered']} answered, {c['units']} {report['unit_name']} -> {c['rows']} answers rows; "
        f"{report['wall_seconds']:.1f}s"
    )
    for batch in report["shards"]:
        if batch["status"] == "failed":
            print(f"  failed: {batch['name']}: see {storage.join(report['config']['out'], '_errors')}")


def print_annotate_summary(report: dict[str, Any]) -> None:
    """Print the counts of an annotate run and name every failed shard, row group and unread input."""
    c = report["counts"]
    print(
        f"annotate {report['task']}: {c['shards']} shards ({c['shards_processed']} processed, "
        f"{c['shards_skipped']} skipped, {c['shards_failed']} failed), {c['articles']} articles, "
        f"{c['units']} {report['unit_name']} -> {c['rows']} {report['table']} rows; "
        f"{report['wall_seconds']:.1f}s, {report['articles_per_second'] or 0:.1f} articles/s"
    )
    out = report["config"]["out"]
    if c.get("pairs_skipped_by_cap"):
        cap = report["task_options"]["max_pairs_per_sentence"]
        print(f"  {c['pairs_skipped_by_cap']} candidate pairs skipped: over {cap} pairs in one sentence")
    if c.get("rejected_records"):
        rejected = storage.join(out, "_rejected")
        print(f"  {c['rejected_records']} input records rejected, with the reasons in {rejected}")
    if report.get("error"):
        print(f"  FAILED: the run stopped: {report['error']}")
    for shard in report["shards"]:
        for failed in shard.get("failed_row_groups", []):
            print(f"  FAILED {shard['name']} row group {failed['row_group']}: {failed['reason']}")
    for item in report["incomplete_inputs"]:
        print(f"  NOT READ {item['shard']}: {item['reason']}")
    if c["shards_failed"]:
        print(f"  error rows: {storage.join(out, '_errors')}; rerun the same command to retry only these")
    print(f"  summary: {storage.join(out, '_run.json')}")


def annotate_command(args: argparse.Namespace) -> int:
    """``biobert-ray annotate TASK``: run models over an articles table, print the run summary.

    Exit status 1 when a row group failed or an input shard was incomplete; 2 when a model was
    fine-tuned for another task.
    """
    from biobert_ray import annotate

    config, options = task_configs(cfg.AnnotateConfig, args)
    report = annotate.run(args.task, config, options)
    if report["table"] == "answers":
        print_answers_summary(report)
    else:
        print_annotate_summary(report)
    return 0 if report["status"] == "ok" else 1


def query_entities_command(args: argparse.Namespace) -> int:
    """``biobert-ray query entities``: top entities, articles mentioning one, or co-occurring pairs."""
    import polars as pl

    from biobert_ray import query

    if args.pairs:
        frame = query.cooccurrences(args.table, within=args.pairs).head(args.top)
    elif args.mentioning:
        if not args.articles:
            raise ValueError("--mentioning needs --articles (the articles table, for titles)")
        frame = query.articles_mentioning(args.table, args.articles, args.mentioning, args.type).head(
            args.top
        )
    else:
        frame = query.top_entities(args.table, args.type, args.top)
    with pl.Config(tbl_rows=args.top, fmt_str_lengths=70):
        print(frame.collect())
    return 0


def query_relations_command(args: argparse.Namespace) -> int:
    """``biobert-ray query relations``: argument pairs found by ``annotate re``, optionally of one entity."""
    import polars as pl

    from biobert_ray import query

    layout = {"tbl_rows": args.top, "tbl_hide_dataframe_shape": True, "tbl_hide_column_data_types": True}
    if args.pair:
        if not args.articles:
            raise ValueError("--pair needs --articles, the articles table the relations were found in")
        evidence = query.relation_evidence(args.table, args.articles, *args.pair).head(args.top)
        with pl.Config(**layout, fmt_str_lengths=400, tbl_width_chars=160):
            print(evidence.select("pmid", "relation", "score", "evidence"))
        return 0
    frame = query.relations_of(args.table, entity=args.entity, relation=args.relation, by=args.by)
    with pl.Config(**layout, fmt_str_lengths=40, tbl_width_chars=160):
        print(frame.head(args.top).collect())
    return 0


def query_answers_command(args: argparse.Namespace) -> int:
    """``biobert-ray query answers``: the ranked answers of a question, with their evidence."""
    import polars as pl

    from biobert_ray import query

    frame = query.answers_of(args.table, args.question_id, args.question).head(args.top).collect()
    if frame.is_empty():
        print("no answers match")
        return 0
    layout = {"tbl_rows": args.top, "tbl_hide_dataframe_shape": True, "tbl_hide_column_data_types": True}
    with pl.Config(**layout, fmt_str_lengths=120, tbl_width_chars=200):
        print(frame.select(query.ANSWER_COLUMNS_SHOWN))
    return 0


def export_command(args: argparse.Namespace) -> int:
    """``biobert-ray export FORMAT``: write the articles with their entities (and relations) as one file."""
    from biobert_ray import export

    report = export.export(
        args.format, args.articles, args.entities, args.out, args.relations, args.all_articles
    )
    print(
        f"export {report['format']}: {report['articles']} articles, {report['mentions']} mentions, "
        f"{report['relations']} relations -> {report['out']}"
    )
    return 0


def bioasq_train_command(args: argparse.Namespace) -> int:
    """``biobert-ray data bioasq-train``: a SQuAD-format training set from BioASQ golden files."""
    from biobert_ray.tasks.qa import bioasq_train

    document, report = bioasq_train.build_training_set(storage.expand(args.golden))
    storage.write_json({**document, "report": report}, args.out)
    print(bioasq_train.format_report(report))
    print(f"written to {args.out}")
    return 0


def index_command(args: argparse.Namespace) -> int:
    """``biobert-ray index``: build the BM25 retrieval index of an articles table."""
    from biobert_ray import retrieval

    out = args.index or retrieval.default_location(args.articles)
    manifest = retrieval.build_index(args.articles, out, threads=args.threads)
    print(
        f"index: {manifest['documents']} articles of {len(manifest['identity'])} shards -> {out} "
        f"({manifest['bytes'] / 1024**2:.1f} MiB, {manifest['wall_seconds']:.1f}s)"
    )
    return 0


def pretrain_command(args: argparse.Namespace) -> int:
    """``biobert-ray pretrain``: masked-LM pretraining on an articles table; prints the run summary.

    Exit status 1 when training failed after its retries (rerun with ``--resume`` to continue), or
    when corpus shards were left out because their ingest is not complete.
    """
    from ray.train import TrainingFailedError

    from biobert_ray import pretrain

    config = cfg.from_args(cfg.PretrainConfig, args)
    try:
        summary = pretrain.run(config)
    except TrainingFailedError as exc:
        print(f"biobert-ray pretrain: training failed: {exc}\n  rerun it with --resume", file=sys.stderr)
        return 1
    held_out = summary["eval"]
    print(
        f"pretrain: step {summary['steps']} (this run from step {summary['start_step']}), epoch "
        f"{summary['epoch']}, {summary['tokens_seen']:,} tokens seen; {summary['wall_seconds']:.1f}s, "
        f"{summary['tokens_per_second_overall']:,.0f} tokens/s overall"
    )
    if held_out:
        print(f"  held-out: MLM loss {held_out['loss']:.4f}, accuracy {held_out['mlm_accuracy']:.4f}")
    print(f"  model: {summary['out']}\n  checkpoints and metrics.jsonl: {summary['run_dir']}")
    for item in summary["incomplete_inputs"]:
        print(f"  NOT READ {item['shard']}: {item['reason']}")
    return 1 if summary["incomplete_inputs"] else 0


def demo_command(args: argparse.Namespace) -> int:
    """``biobert-ray demo``: entities, relations, then answers, on the bundled data (:mod:`.demo`)."""
    from biobert_ray import demo

    demo.run(args.out_dir, args.train_sentences, args.train_pairs, args.train_questions, args.train_yesno)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="biobert-ray", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--verbose",
        action="store_true",
        help="show Ray's own log lines and the workers' output on the console",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", parents=[common], help="MEDLINE/PubMed XML -> Parquet articles table")
    p.add_argument("patterns", nargs="*", help="input files, globs or directories (or use --input)")
    cfg.add_arguments(p, cfg.IngestConfig)
    p.set_defaults(func=ingest_command)

    p = sub.add_parser("query", parents=[common], help="query output tables with polars")
    qsub = p.add_subparsers(dest="table_kind", required=True)
    q = qsub.add_parser("articles", parents=[common], help="articles of an ingested table")
    q.add_argument("table", help="articles table directory (local or s3://)")
    q.add_argument("--current", action="store_true", help="current version of each article only")
    q.add_argument("--pmid", type=int, nargs="+", help="only these PMIDs")
    q.add_argument("--count", action="store_true", help="print the number of rows only")
    q.add_argument("--limit", type=int, default=10, help="rows to print")
    q.set_defaults(func=query_articles_command)
    q = qsub.add_parser("entities", parents=[common], help="entities of an annotated table")
    q.add_argument("table", help="entities table directory (local or s3://)")
    q.add_argument("--type", help="only this entity type")
    q.add_argument("--top", type=int, default=20, help="rows to print")
    q.add_argument("--mentioning", metavar="ENTITY", help="articles mentioning ENTITY (needs --articles)")
    q.add_argument("--articles", help="articles table, to show titles with --mentioning")
    q.add_argument(
        "--pairs", choices=["sentence", "article"], help="entity pairs co-occurring in a sentence/article"
    )
    q.set_defaults(func=query_entities_command)
    q = qsub.add_parser("relations", parents=[common], help="relations of an annotated table")
    q.add_argument("table", help="relations table directory (local or s3://)")
    q.add_argument("--entity", help="only pairs with an argument of this text (case-insensitive)")
    q.add_argument("--relation", help="only this predicted label")
    q.add_argument("--by", choices=["sentences", "articles"], default="sentences", help="order the pairs by")
    q.add_argument("--pair", nargs=2, metavar=("A", "B"), help="the sentences behind A-B relations")
    q.add_argument("--articles", help="articles table, for the sentences of --pair")
    q.add_argument("--top", type=int, default=20, help="rows to print")
    q.set_defaults(func=query_relations_command)

    q = qsub.add_parser("answers", parents=[common], help="answers of an annotate qa table")
    q.add_argument("table", help="answers table directory (local or s3://)")
    q.add_argument("--question-id", help="only this question")
    q.add_argument("--question", help="only questions whose text contains this (case-insensitive)")
    q.add_argument("--top", type=int, default=20, help="rows to print")
    q.set_defaults(func=query_answers_command)

    p = sub.add_parser("export", parents=[common], help="articles + entities -> PubTator or BioC JSON")
    p.add_argument("format", choices=["pubtator", "bioc"], help="PubTator text or a BioC JSON collection")
    p.add_argument("--articles", required=True, help="articles table directory (local or s3://)")
    p.add_argument("--entities", required=True, help="entities table of the articles (annotate ner's output)")
    p.add_argument("--relations", help="relations table of the articles (annotate re's output)")
    p.add_argument("--out", required=True, help="the file to write (local or s3://), written atomically")
    p.add_argument("--all-articles", action="store_true", help="also write the articles without mentions")
    p.set_defaults(func=export_command)

    p = sub.add_parser("index", parents=[common], help="BM25 retrieval index of an articles table (tantivy)")
    p.add_argument("--articles", required=True, help="articles table directory (local or s3://)")
    p.add_argument("--index", help="where to write the index (default: <articles>/_index/bm25)")
    p.add_argument("--threads", type=int, default=1, help="indexing threads")
    p.set_defaults(func=index_command)

    p = sub.add_parser("data", parents=[common], help="build training sets from public corpora")
    dsub = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    d = dsub.add_parser(
        "bioasq-train", parents=[common], help="factoid and list questions of BioASQ golden files as SQuAD"
    )
    d.add_argument(
        "--golden", nargs="+", required=True, help="BioASQ golden JSON files or globs (local or s3://)"
    )
    d.add_argument("--out", required=True, help="the SQuAD-format JSON file to write (local or s3://)")
    d.set_defaults(func=bioasq_train_command)

    task_commands = (
        ("finetune", cfg.FinetuneConfig, finetune_command, "fine-tune a task head with Ray Train"),
        ("evaluate", cfg.EvaluateConfig, evaluate_command, "score a fine-tuned model with the task's metric"),
        ("crossval", cfg.CrossvalConfig, crossval_command, "cross-validate: each fold a Ray Tune trial"),
        ("annotate", cfg.AnnotateConfig, annotate_command, "run fine-tuned models over an articles table"),
    )
    for command, config_cls, func, help_text in task_commands:
        p = sub.add_parser(command, parents=[common], help=help_text)
        per_task = p.add_subparsers(dest="task", required=True, metavar="TASK")
        for name, task_cls in sorted(tasks.TASKS.items()):
            if command == "annotate" and not hasattr(task_cls, "units"):
                continue  # a task that cannot annotate a corpus (yet)
            t = per_task.add_parser(name, parents=[common], help=(task_cls.__doc__ or "").splitlines()[0])
            cfg.add_arguments(t, config_cls)
            # cross-validation fine-tunes and evaluates: it takes the task's fine-tuning options
            cfg.add_arguments(t, task_cls.Options, command="finetune" if command == "crossval" else command)
            t.set_defaults(func=func)

    p = sub.add_parser(
        "pretrain", parents=[common], help="masked-LM pretraining of a BERT on an articles table (Ray Train)"
    )
    cfg.add_arguments(p, cfg.PretrainConfig)
    p.set_defaults(func=pretrain_command)

    p = sub.add_parser("demo", parents=[common], help="laptop quickstart on the bundled sample data")
    p.add_argument("--out-dir", default="out/demo", help="where the demo writes its tables and model")
    p.add_argument("--train-sentences", type=int, default=2000, help="BC5CDR NER training sentences to use")
    p.add_argument("--train-pairs", type=int, default=2250, help="BC5CDR-CID training candidate pairs to use")
    p.add_argument(
        "--train-questions", type=int, default=800, help="BioASQ question-snippet training entries to use"
    )
    p.add_argument("--train-yesno", type=int, default=200, help="PubMedQA training questions to use")
    p.set_defaults(func=demo_command)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one readable line (``warning: ...``), not Python's file:line form."""
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``biobert-ray`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    console.VERBOSE = args.verbose
    warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"biobert-ray {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
