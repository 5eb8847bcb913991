"""Value of domain pretraining at small scale: NCBI-disease dev F1 before and after ``pretrain``.

1. Build a biomedical corpus as an ``articles``-shaped Parquet table (``pmid``, ``title``,
   ``abstract``) from the text in ``../shared/data``: the MEDLINE samples (ingested by
   ``biobert-ray ingest``), the PubMedQA contexts and long answers (question as title), the unique
   BioASQ snippet contexts, and the *training* sentences of NCBI-disease, BC5CDR-disease and
   BC5CDR-chem, 10 sentences per document. No dev or test sentence of any NER set is in it. Documents
   that are not PubMed articles get ids from 10**10 up (only used to pick held-out documents).
2. ``pretrain.run``: continue masked-LM training of all-MiniLM-L6-v2 (fresh MLM head) on it for
   ``--steps`` optimizer steps of 32 x 128 tokens (1 worker, 2 torch threads, 15% masking, lr 1e-4).
3. Fine-tune NER with the same recipe from the original base and from the pretrained model
   (``--train-samples`` NCBI-disease training sentences, 2 epochs, lr 2e-4, batch 16, best epoch on
   dev) and print both dev F1 (the test set is not used).

    python benchmarks/domain_pretraining.py --work /tmp/domain --steps 200
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pyarrow as pa
import pyarrow.parquet as pq

from biobert_ray import finetune, ingest, pretrain, runs
from biobert_ray.config import FinetuneConfig, IngestConfig, PretrainConfig
from biobert_ray.models import default_base_model
from biobert_ray.tasks.conll import read_conll
from biobert_ray.tasks.ner import NerOptions

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NCBI = Path(__file__).resolve().parents[1] / "biobert_ray" / "sample_data" / "ncbi_disease"
SENTENCES_PER_DOCUMENT = 10
FIRST_SYNTHETIC_ID = 10**10


def other_documents() -> list[tuple[str, str]]:
    """(title, text) of PubMedQA, BioASQ contexts and the NER training sentences."""
    docs: list[tuple[str, str]] = []
    for record in json.loads((SHARED / "pubmedqa" / "ori_pqal.json").read_text()).values():
        docs.append((record["QUESTION"], " ".join([*record["CONTEXTS"], record["LONG_ANSWER"]])))
    contexts: set[str] = set()
    for path in sorted((SHARED / "bioasq" / "squad_test").glob("*.json.gz")):
        for article in json.loads(gzip.decompress(path.read_bytes()))["data"]:
            contexts.update(p["context"] for p in article["paragraphs"])
    docs.extend(("", context) for context in sorted(contexts))
    ner_train = (NCBI / "train.tsv.gz", SHARED / "bc5cdr_disease/train.tsv", SHARED / "bc5cdr_chem/train.tsv")
    for train_file in ner_train:
        sentences = [" ".join(s.words) for s in read_conll(str(train_file), entity_type="X")]
        for i in range(0, len(sentences), SENTENCES_PER_DOCUMENT):
            docs.append(("", " ".join(sentences[i : i + SENTENCES_PER_DOCUMENT])))
    return docs


def build_corpus(work: Path) -> tuple[str, dict[str, int]]:
    """The corpus table directory and its document counts by source."""
    corpus = work / "corpus"
    ingest.run(IngestConfig(input=(str(SHARED / "pubmed_xml"),), out=str(corpus)), log=lambda *_: None)
    docs = other_documents()
    table = pa.table(
        {
            "pmid": pa.array(range(FIRST_SYNTHETIC_ID, FIRST_SYNTHETIC_ID + len(docs)), pa.int64()),
            "title": [title for title, _ in docs],
            "abstract": [text for _, text in docs],
        }
    )
    pq.write_table(table, corpus / "zz-other-text.parquet")
    # pretraining reads only complete shards: mark this one as ingest would, its input being this script
    identity = {"input": {"other_documents": len(docs)}}
    runs.mark_complete(str(corpus), "zz-other-text", identity, [str(corpus / "zz-other-text.parquet")])
    medline = sum(pq.read_metadata(p).num_rows for p in corpus.glob("*.parquet")) - len(docs)
    return str(corpus), {"medline_articles": medline, "other_documents": len(docs)}


def finetune_dev_f1(base_model: str, out: Path, train_samples: int) -> float:
    config = FinetuneConfig(
        train=str(NCBI / "train.tsv.gz"), dev=str(NCBI / "devel.tsv.gz"),
        base_model=base_model, out=str(out), num_workers=1, epochs=2, batch_size=16,
        max_train_samples=train_samples, max_seq_length=128, learning_rate=2e-4, warmup_ratio=0.0,
    )  # fmt: skip
    summary = finetune.finetune("ner", config, NerOptions(entity_type="Disease"), log=lambda *_: None)
    return summary["dev_scores"]["overall"]["f1"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True, help="empty working directory")
    parser.add_argument("--steps", type=int, default=200, help="pretraining optimizer steps")
    parser.add_argument("--train-samples", type=int, default=2000, help="NCBI training sentences")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    corpus, counts = build_corpus(args.work)
    print("corpus", counts, flush=True)
    started = time.perf_counter()
    config = PretrainConfig(
        corpus=corpus, out=str(args.work / "pretrained"), num_workers=1, cpus_per_worker=1.5,
        max_steps=args.steps, global_batch=32, micro_batch=16, learning_rate=1e-4, warmup_ratio=0.06,
        checkpoint_every=args.steps, eval_every=max(1, args.steps // 4),
        log_every=max(1, args.steps // 10), eval_documents=200,
    )  # fmt: skip
    summary = pretrain.run(config)
    pretrain_seconds = time.perf_counter() - started
    print("pretrain", summary["eval"], f"{pretrain_seconds:.0f} s", flush=True)
    before = finetune_dev_f1(default_base_model(), args.work / "ner-before", args.train_samples)
    print(f"dev F1 before {before:.4f}", flush=True)
    after = finetune_dev_f1(str(args.work / "pretrained"), args.work / "ner-after", args.train_samples)
    result = {
        "corpus": counts,
        "pretrain_steps": summary["steps"],
        "tokens_seen": summary["tokens_seen"],
        "heldout": summary["eval"],
        "pretrain_seconds": round(pretrain_seconds, 1),
        "dev_f1_before": before,
        "dev_f1_after": after,
    }
    print(json.dumps(result, indent=2))
    (args.work / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
