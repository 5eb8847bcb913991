"""The ``biobert-ray`` command line: one subcommand per job, each a thin layer over the library.

Exit status: 0 on success, 1 when a run finished but reported bad input (the summary names the
files and the errors table holds the rows), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from biobert_ray import config as cfg
from biobert_ray import samples, storage


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
    return 1 if report["counts"]["errors"] else 0


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


def demo_command(args: argparse.Namespace) -> int:
    """``biobert-ray demo``: the laptop quickstart on bundled data, no network."""
    from biobert_ray import ingest, query

    articles_out = storage.join(args.out_dir, "articles")
    print(f"[1/1] ingest the bundled MEDLINE sample -> {articles_out}")
    report = ingest.run(cfg.IngestConfig(input=(samples.pubmed_sample(),), out=articles_out, overwrite=True))
    print_ingest_summary(report)
    current = query.current_articles(articles_out).collect()
    print(f"current articles: {current.height} ({current['abstract'].is_not_null().sum()} with an abstract)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="biobert-ray", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="MEDLINE/PubMed XML -> Parquet articles table")
    p.add_argument("patterns", nargs="*", help="input files, globs or directories (or use --input)")
    cfg.add_arguments(p, cfg.IngestConfig)
    p.set_defaults(func=ingest_command)

    p = sub.add_parser("query", help="query output tables with polars")
    qsub = p.add_subparsers(dest="table_kind", required=True)
    q = qsub.add_parser("articles", help="articles of an ingested table")
    q.add_argument("table", help="articles table directory (local or s3://)")
    q.add_argument("--current", action="store_true", help="current version of each article only")
    q.add_argument("--pmid", type=int, nargs="+", help="only these PMIDs")
    q.add_argument("--count", action="store_true", help="print the number of rows only")
    q.add_argument("--limit", type=int, default=10, help="rows to print")
    q.set_defaults(func=query_articles_command)

    p = sub.add_parser("demo", help="laptop quickstart on the bundled sample data")
    p.add_argument("--out-dir", default="out/demo", help="where the demo writes its tables")
    p.set_defaults(func=demo_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``biobert-ray`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"biobert-ray {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
